"""lineage: OpenLineage ingest (``POST /api/v1/lineage``) at 16 connections, beside the
catalogue's other writes measured in the same run on the same catalogue process.

The event is a recorded one: the COMPLETE event ``dbt-ol`` sent for a dbt model in the
integration test (``tests/data/openlineage/dbt_model_complete.json``: one input, one output,
schema and column-lineage facets, 4.5 KiB). wrk posts it at 16 connections (``-t2 -c16``) with a
Lua script that gives every request a run id of its own, so each request is a new event: the
dataset and job assets are found (unchanged), two edges, two facets, a run and the event's key
are written, durably, before the answer. A second wrk run posts the same event (one run id)
over and over: the duplicate path, answered once the event's key is found.

References in the same run, on the same catalogue:
- ``PUT /api/v1/assets/{id}`` of one asset per request at the same 16 connections (wrk, a new
  id per request): the catalogue's per-request write path;
- bulk ingest (``POST /api/v1/assets/bulk``, batches of 1,000 generated assets, one
  connection, bodies encoded before the clock starts): the catalogue's bulk path, in assets/s.

Server CPU per request is the catalogue process's user + system time over a wrk run divided by
the requests it served. wrk and the catalogue share the machine's cores.

Run: ``python -m benchmarks.bench_lineage [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

from benchmarks.bench_search import WRK_CONNECTIONS, WRK_DONE, WRK_THREADS, WrkFigures, run_wrk
from benchmarks.common import (
    CatalogueProcess,
    Section,
    Sizes,
    command_line,
    load_average,
    table,
    write_section,
)
from benchmarks.gen_tree import make_assets

RECORDED = Path(__file__).resolve().parent.parent / "tests/data/openlineage/dbt_model_complete.json"
RUN_ID = "01a236f6-4b15-73a3-8ae8-293dd2cb6963"  # the recorded event's run id
BULK_BATCH = 1000
FULL_SECONDS, QUICK_SECONDS = 10, 3
FULL_BULK, QUICK_BULK = 50_000, 5_000

# The body, and per wrk thread its number (``tid``) and a request counter (``i``): what makes
# each request's run id or asset name new.
_NUMBERED_LUA = """\
local body = [==[%(body)s]==]
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local i = 0
"""
# Each request a new run id: the thread's number and a counter, in UUID form.
_EVENTS_LUA = (
    _NUMBERED_LUA
    + """\
function request()
  i = i + 1
  local run = string.format("%%08x-0000-4000-8000-%%012x", tid or 0, i)
  local event = body:gsub("%(run)s", run)
  return wrk.format("POST", "/api/v1/lineage", {["Content-Type"] = "application/json"}, event)
end
"""
    + WRK_DONE
)
_SAME_LUA = (
    """\
local body = [==[%(body)s]==]
function request()
  return wrk.format("POST", "/api/v1/lineage", {["Content-Type"] = "application/json"}, body)
end
"""
    + WRK_DONE
)
_PUT_LUA = (
    _NUMBERED_LUA
    + """\
function request()
  i = i + 1
  local path = string.format("/api/v1/assets/bench-put-%%d-%%d", tid or 0, i)
  local asset = body:gsub("BENCH_NAME", string.format("bench_put_%%d_%%d", tid or 0, i))
  return wrk.format("PUT", path, {["Content-Type"] = "application/json"}, asset)
end
"""
    + WRK_DONE
)


@dataclass(slots=True)
class Bulk:
    assets: int
    seconds: float
    failed: int

    @property
    def rate(self) -> float:
        return self.assets / self.seconds if self.seconds else 0.0


def recorded_event() -> bytes:
    """The recorded event, compact, with its run id left as the Lua script's placeholder."""
    event = orjson.loads(RECORDED.read_bytes())
    return orjson.dumps(event).replace(RUN_ID.encode(), b"RUN_ID_PLACEHOLDER")


def lua(template: str, body: bytes) -> str:
    text = body.decode()
    if "]==]" in text:
        raise ValueError("the body cannot sit in a Lua long string")
    return template % {"body": text, "run": "RUN_ID_PLACEHOLDER"}


def bulk_ingest(url: str, count: int) -> Bulk:
    assets = make_assets(count)
    bodies = [orjson.dumps(assets[i : i + BULK_BATCH]) for i in range(0, len(assets), BULK_BATCH)]
    failed = 0
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=600) as client:
        started = time.perf_counter()
        for body in bodies:
            answer = client.post("/api/v1/assets/bulk", content=body, headers=headers)
            answer.raise_for_status()
            failed += int(answer.json()["failed"])
        seconds = time.perf_counter() - started
    return Bulk(assets=count, seconds=seconds, failed=failed)


def run(quick: bool, command: str) -> bool:
    seconds = QUICK_SECONDS if quick else FULL_SECONDS
    bulk_count = QUICK_BULK if quick else FULL_BULK
    event = recorded_event()
    asset = orjson.dumps(
        {
            "name": "BENCH_NAME",
            "type": "dataset",
            "tags": ["bench"],
            "schema": [{"name": f"c{i}", "type": "int64"} for i in range(8)],
        }
    )
    load_before = load_average()
    with CatalogueProcess("lineage") as catalogue:
        # A second of each first: the assets of the event exist and the code paths are warm.
        run_wrk(catalogue, lua(_EVENTS_LUA, event), 1, "lineage-warm")
        events = run_wrk(catalogue, lua(_EVENTS_LUA, event), seconds, "lineage-events")
        original = event.replace(b"RUN_ID_PLACEHOLDER", RUN_ID.encode())
        same = run_wrk(catalogue, lua(_SAME_LUA, original), seconds, "lineage-duplicates")
        run_wrk(catalogue, lua(_PUT_LUA, asset), 1, "lineage-put-warm")
        puts = run_wrk(catalogue, lua(_PUT_LUA, asset), seconds, "lineage-put")
        bulk = bulk_ingest(catalogue.url, bulk_count)
    load_after = load_average()

    ok = events.errors == 0 and same.errors == 0 and puts.errors == 0 and bulk.failed == 0
    rows = [
        _row("OpenLineage RunEvent, a new run each", events, "events/s"),
        _row("OpenLineage RunEvent, the same one (duplicates)", same, "events/s"),
        _row("PUT /api/v1/assets/{id}, one asset each", puts, "assets/s"),
    ]
    section = Section(
        "lineage",
        "lineage: OpenLineage ingest beside the catalogue's asset writes",
        command,
        Sizes(files=0, manifests=0, assets=bulk_count, quick=quick),
    )
    section.add(
        f"Load average before / after the run: {load_before} / {load_after} (other work shares "
        "this machine; ratios measured in the same run are the figures to compare).",
        "",
        *table(
            ["Requests (16 connections, wrk)", "Rate", "p50 / p99", "Errors", "Server CPU / req"],
            rows,
        ),
        *table(
            ["Bulk ingest (1 connection, batches of 1,000)", "Assets", "Rate", "Failed"],
            [
                [
                    "POST /api/v1/assets/bulk",
                    f"{bulk.assets:,}",
                    f"{bulk.rate:,.0f} assets/s",
                    bulk.failed,
                ]
            ],
        ),
        f"- OpenLineage events/s ÷ single-asset PUTs/s: **{_ratio(events.rps, puts.rps)}**; "
        f"÷ bulk-ingested assets/s: **{_ratio(events.rps, bulk.rate)}**.",
        f"- wrk `-t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{seconds}s`; the event is the recorded "
        "dbt model COMPLETE event (one input, one output, schema and column lineage), given a "
        "new run id per request by the Lua script; every write is durable (SQLite, "
        "`synchronous=FULL`) before its answer.",
        "- No target in DESIGN section 7; errors must be zero.",
    )
    write_section(section)
    return ok


def _row(title: str, figures: WrkFigures, unit: str) -> list[object]:
    return [
        title,
        f"{figures.rps:,.0f} {unit}",
        f"{figures.p50_ms:.1f} / {figures.p99_ms:.1f} ms",
        figures.errors,
        f"{figures.server_cpu_s / max(figures.requests, 1) * 1000:.2f} ms",
    ]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s wrk runs, 5,000 bulk assets")
    args = parser.parse_args(argv)
    ok = run(args.quick, command_line("benchmarks.bench_lineage", argv))
    print(f"lineage benchmark written to benchmarks/RESULTS.md; no errors: {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""ingest (DESIGN section 7): bulk upsert of generated assets into a fresh catalogue.

One client sends ``POST /api/v1/assets/bulk`` batches of 5,000 one after the other; request
bodies are encoded before the clock starts, so the figure is the catalogue's rate, not the
client's JSON encoding. Target >= 10,000 assets/s on the embedded (SQLite) backend. The
catalogue's peak resident set (VmHWM) is read after the ingest for the footprint.

Run alone: ``python -m benchmarks.bench_ingest [--quick] [--assets N]``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from benchmarks.common import (
    CatalogueProcess,
    Section,
    Sizes,
    parse_sizes,
    table,
    verdict,
    write_section,
)
from benchmarks.gen_tree import make_assets

BATCH = 5000
REQUEST_TIMEOUT_S = 600  # one 5,000-item batch takes about a second; this catches a hang


@dataclass(slots=True)
class IngestFigures:
    assets: int
    seconds: float = 0.0
    created: int = 0
    failed: int = 0
    batch_seconds: list[float] = field(default_factory=list)
    request_bytes: int = 0
    server_cpu_s: float = 0.0
    memory_kb: dict[str, int] = field(default_factory=dict)
    db_bytes: int = 0
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.assets / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.created == self.assets and self.failed == 0


def encode_batches(assets: list[dict[str, Any]], size: int = BATCH) -> list[bytes]:
    return [orjson.dumps(assets[i : i + size]) for i in range(0, len(assets), size)]


def load(catalogue: CatalogueProcess, assets: list[dict[str, Any]]) -> IngestFigures:
    """Bulk-loads ``assets`` into an empty catalogue and times it."""
    bodies = encode_batches(assets)
    figures = IngestFigures(assets=len(assets), request_bytes=sum(len(b) for b in bodies))
    cpu_before = catalogue.cpu_seconds()
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=catalogue.url, timeout=REQUEST_TIMEOUT_S) as client:
        start = time.perf_counter()
        for body in bodies:
            t0 = time.perf_counter()
            response = client.post("/api/v1/assets/bulk", content=body, headers=headers)
            figures.batch_seconds.append(time.perf_counter() - t0)
            if response.status_code != 200:
                figures.error = f"HTTP {response.status_code}: {response.text[:500]}"
                break
            result = response.json()
            figures.created += result["created"]
            figures.failed += result["failed"]
            if result["failed"] and figures.error is None:
                bad = next(r for r in result["results"] if r["status"] == "error")
                figures.error = f"item {bad['index']} of a batch failed: {bad.get('error')}"
        figures.seconds = time.perf_counter() - start
    figures.server_cpu_s = catalogue.cpu_seconds() - cpu_before
    figures.memory_kb = catalogue.memory_kb()
    figures.db_bytes = sum(
        p.stat().st_size for p in catalogue.data_dir.glob("catalogue.db*") if p.is_file()
    )
    return figures


def write(figures: IngestFigures, sizes: Sizes, command: str) -> None:
    section = Section("ingest", "ingest", command, sizes)
    batches = figures.batch_seconds
    detail = (
        f"{figures.assets:,} assets in {len(batches)} batches of up to {BATCH:,} "
        f"({figures.request_bytes / figures.assets:.0f} bytes of JSON per asset) in "
        f"{figures.seconds:.2f} s; {figures.created:,} created, {figures.failed:,} failed"
    )
    section.add(
        *table(
            ["benchmark", "measured", "result", "target", "met"],
            [
                [
                    "ingest",
                    detail,
                    f"{figures.rate:,.0f} assets/s",
                    ">= 10,000 assets/s",
                    verdict(figures.ok and figures.rate >= 10_000),
                ]
            ],
        ),
        f"- Batch times (s): min {min(batches, default=0):.3f}, "
        f"max {max(batches, default=0):.3f}, last {batches[-1] if batches else 0:.3f} "
        "(a growing last batch means the write cost grows with the table).",
        f"- Catalogue CPU during the ingest: {figures.server_cpu_s:.2f} s "
        f"({figures.server_cpu_s / figures.seconds if figures.seconds else 0:.2f} cores); "
        f"database files afterwards (db + WAL + shm, before any checkpoint at shutdown): "
        f"{figures.db_bytes / 1e6:.1f} MB.",
        f"- Catalogue memory after the ingest: VmHWM {figures.memory_kb.get('VmHWM', 0) / 1024:.0f}"
        f" MiB, VmRSS {figures.memory_kb.get('VmRSS', 0) / 1024:.0f} MiB.",
        "- One client, one uvicorn worker, loopback; the client and the catalogue share the "
        "machine's cores. `PRAGMA synchronous=FULL`: each batch is one committed transaction.",
    )
    if figures.error:
        section.add(f"- Error: `{figures.error}`")
    write_section(section)


def run(
    sizes: Sizes,
    command: str,
    catalogue: CatalogueProcess | None = None,
    assets: list[dict[str, Any]] | None = None,
) -> IngestFigures:
    """Ingests into ``catalogue`` (a fresh one of its own when None) and writes the section."""
    assets = assets if assets is not None else make_assets(sizes.assets)
    if catalogue is None:
        with CatalogueProcess("ingest") as own:
            figures = load(own, assets)
    else:
        figures = load(catalogue, assets)
    write(figures, sizes, command)
    return figures


def main(argv: list[str] | None = None) -> int:
    sizes, command = parse_sizes(__doc__, "benchmarks.bench_ingest", argv)
    figures = run(sizes, command)
    print(
        f"ingest: {figures.rate:,.0f} assets/s ({figures.assets:,} in {figures.seconds:.2f} s); "
        "written to benchmarks/RESULTS.md"
    )
    if figures.error:
        print(f"error: {figures.error}", file=sys.stderr)
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""footprint (DESIGN section 7): resident memory of every process ``cairn up`` runs, at N
assets, after a search load and after a large Arrow GET.

``python -m cairn up --no-crawl`` serves the catalogue, the feature store and the UI on the
embedded backend from its own process (``cairn.colocate``); every process it runs counts (a
service found in a child process of its own, as in earlier layouts, is counted apart).
The benchmark then, one step after the other: bulk-loads N generated assets; sends name, tag
and text searches to the catalogue and search pages to the UI; uploads a wide table (1,000,000
x 20 as Parquet; ``--quick`` 100,000) to the feature store and reads it back twice as an Arrow
stream; waits for the feature store's background profile of that table. After each step it
reads, per process, VmRSS, VmHWM, PSS and the resident anonymous and file-backed memory
(``/proc/PID/status`` and ``smaps_rollup``), and the largest resident mappings
(``/proc/PID/smaps``), which say what dominates.

Target: the processes' VmRSS together <= 300 MB (10^6 bytes) after every step. RSS counts the
pages of shared libraries in every process that maps them; PSS splits them, so the PSS total
is shown beside it.

Run alone: ``python -m benchmarks.bench_footprint [--quick] [--assets N]``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_featureset import (
    FULL_ROWS,
    QUICK_ROWS,
    TABLE_NAME,
    fetch_arrow,
    write_table,
)
from benchmarks.bench_ingest import encode_batches
from benchmarks.common import (
    PYTHON,
    ROOT,
    WORK_DIR,
    Section,
    Sizes,
    bench_env,
    free_port,
    fresh_dir,
    parse_sizes,
    process_cpu_seconds,
    table,
    verdict,
    write_section,
)
from benchmarks.gen_tree import make_assets
from catalogue_service.service import TRIM_QUIET_S

TARGET_BYTES = 300 * 10**6
SERVICES = ("catalogue", "featurestore", "ui")
SEARCHES = 300  # per kind, sequential
UI_PAGES = 100
MIB = 1024 * 1024


@dataclass(slots=True)
class Memory:
    rss_kb: int
    hwm_kb: int
    pss_kb: int
    anon_kb: int
    file_kb: int
    top: list[tuple[str, int]]  # (mapping, resident kB), largest first
    cpu_s: float  # user + system so far


@dataclass(slots=True)
class Step:
    name: str
    memory: dict[str, Memory] = field(default_factory=dict)
    load: float = field(default_factory=lambda: os.getloadavg()[0])

    @property
    def cpu_s(self) -> float:
        return sum(m.cpu_s for m in self.memory.values())

    @property
    def rss_bytes(self) -> int:
        return sum(m.rss_kb for m in self.memory.values()) * 1024

    @property
    def pss_bytes(self) -> int:
        return sum(m.pss_kb for m in self.memory.values()) * 1024


def _kb_fields(path: Path, keys: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in keys:
            out[key] = int(rest.split()[0])
    return out


def _top_mappings(pid: int, count: int = 3) -> list[tuple[str, int]]:
    """Resident kB per mapped object (a library, ``[heap]``, ``[anon]``), largest first."""
    sizes: Counter[str] = Counter()
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if not head:
            continue
        if "-" in head[0] and not head[0].endswith(":"):
            name = os.path.basename(head[5]) if len(head) > 5 else "[anon]"
        elif head[0] == "Rss:":
            sizes[name] += int(head[1])
    return sizes.most_common(count)


def read_memory(pid: int) -> Memory:
    status = _kb_fields(Path(f"/proc/{pid}/status"), ("VmRSS", "VmHWM", "RssAnon", "RssFile"))
    rollup = _kb_fields(Path(f"/proc/{pid}/smaps_rollup"), ("Pss",))
    return Memory(
        rss_kb=status["VmRSS"],
        hwm_kb=status["VmHWM"],
        pss_kb=rollup["Pss"],
        anon_kb=status["RssAnon"],
        file_kb=status["RssFile"],
        top=_top_mappings(pid),
        cpu_s=process_cpu_seconds(pid),
    )


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def _service_of(pid: int) -> str | None:
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    for service in SERVICES:
        if service.encode() in argv:
            return service
    return None


class CairnUp:
    """``cairn up --no-crawl`` with a fresh data folder and free ports."""

    def __init__(self) -> None:
        self.data_dir = fresh_dir(WORK_DIR / "data" / "footprint")
        self.ports = {service: free_port() for service in SERVICES}
        self.urls = {s: f"http://127.0.0.1:{p}" for s, p in self.ports.items()}
        self.env = bench_env(
            self.data_dir,
            CAIRN_CATALOGUE_PORT=str(self.ports["catalogue"]),
            CAIRN_FEATURESTORE_PORT=str(self.ports["featurestore"]),
            CAIRN_UI_PORT=str(self.ports["ui"]),
        )
        self.log_path = WORK_DIR / "logs" / "footprint-up.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pids: dict[str, int] = {}

    def __enter__(self) -> CairnUp:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "cairn", "up", "--no-crawl"],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cairn up exited:\n{self.log_path.read_text()[-3000:]}")
            if "Cairn is up" in self.log_path.read_text(errors="replace"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"cairn up was not up in 180 s:\n{self.log_path.read_text()}")
        children = {}
        for child in _children(self.proc.pid):
            service = _service_of(child)
            if service is not None:
                children[service] = child
        serving = [s for s in SERVICES if s not in children]
        label = f"cairn up ({', '.join(serving)})" if serving else "cairn up (supervisor)"
        self.pids = {label: self.proc.pid, **children}
        for service in serving:
            # The services answer from the process that `cairn up` runs in.
            r = httpx.get(f"{self.urls[service]}/healthz", timeout=10)
            r.raise_for_status()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def step(self, name: str) -> Step:
        return Step(name, {k: read_memory(pid) for k, pid in self.pids.items()})


def load_assets(url: str, assets: list[dict[str, Any]]) -> None:
    with httpx.Client(base_url=url, timeout=600) as client:
        for body in encode_batches(assets):
            r = client.post(
                "/api/v1/assets/bulk", content=body, headers={"content-type": "application/json"}
            )
            if r.status_code != 200 or r.json()["failed"]:
                raise RuntimeError(f"bulk load failed: {r.status_code} {r.text[:300]}")


def search_load(urls: dict[str, str], assets: list[dict[str, Any]]) -> int:
    """Name, tag and text searches at the catalogue, search pages at the UI."""
    names = [a["name"].rsplit("_", 1)[0] + "_" for a in assets[:SEARCHES]]
    tags = [a["tags"][0] for a in assets[:SEARCHES] if a["tags"]]
    words = [a["description"].split()[-1].rstrip(".") for a in assets[:SEARCHES]]
    sent = 0
    with httpx.Client(base_url=urls["catalogue"], timeout=60) as client:
        for key, values in (("name", names), ("tag", tags), ("q", words)):
            for value in values:
                client.get("/api/v1/assets", params={key: value}).raise_for_status()
                sent += 1
    with httpx.Client(base_url=urls["ui"], timeout=60) as client:
        for value in words[:UI_PAGES]:
            client.get("/", params={"q": value}).raise_for_status()
            sent += 1
    return sent


def arrow_load(url: str, rows: int) -> int:
    path = WORK_DIR / "footprint-table.parquet"
    write_table(path, rows)
    with path.open("rb") as f:
        r = httpx.post(
            f"{url}/api/v1/featuresets/{TABLE_NAME}/versions",
            params={"description": "wide table (footprint benchmark)"},
            content=f.read(),
            headers={"content-type": "application/vnd.apache.parquet"},
            timeout=600,
        )
    if r.status_code != 201:
        raise RuntimeError(f"uploading the table failed: {r.status_code} {r.text[:300]}")
    received = 0
    with httpx.Client(base_url=url, timeout=600) as client:
        for _ in range(2):
            received, _, _ = fetch_arrow(client, keep=False)
    return received


def wait_for_profile(url: str, timeout: float = 600) -> None:
    """Until the feature store's background profile of the uploaded table is done (it reads
    the whole table once, so it runs beside the Arrow GETs)."""
    deadline = time.monotonic() + timeout
    path = f"{url}/api/v1/featuresets/{TABLE_NAME}/versions/1/profile"
    while time.monotonic() < deadline:
        r = httpx.get(path, timeout=60)
        if r.status_code == 200:
            return
        if r.status_code != 202:
            raise RuntimeError(f"the profile answered {r.status_code}: {r.text[:300]}")
        time.sleep(0.5)
    raise RuntimeError(f"the table's profile was not done in {timeout:.0f} s")


def _mib(kb: int) -> str:
    return f"{kb / 1024:.0f}"


def write(steps: list[Step], sizes: Sizes, command: str, rows: int, searches: int) -> bool:
    section = Section("footprint", "footprint", command, sizes)
    ok = all(s.rss_bytes <= TARGET_BYTES for s in steps)
    section.add(
        f"`cairn up --no-crawl` (catalogue, feature store and UI on the embedded backend, "
        f"served from the one `cairn up` process), then in turn: {sizes.assets:,} generated "
        f"assets bulk-loaded; {searches:,} searches (name prefix, tag, text at the catalogue, "
        f"search pages at the UI); a {rows:,} x 20 table uploaded as Parquet and read back "
        "twice as an Arrow stream; then the feature store's background profile of that "
        "table (it runs beside the GETs) is waited for. Memory is read after each step.",
        "",
        f"Target: all processes' VmRSS together <= 300 MB ({TARGET_BYTES / MIB:.0f} MiB) "
        f"after every step. Met: {verdict(ok)}.",
        "",
    )
    processes = list(steps[0].memory)
    rows_ = []
    before = 0.0
    for step in steps:
        cells = [step.name]
        cells += [
            f"{_mib(step.memory[p].rss_kb)} / {_mib(step.memory[p].hwm_kb)}" for p in processes
        ]
        cells += [
            f"**{step.rss_bytes / MIB:.0f}** ({verdict(step.rss_bytes <= TARGET_BYTES)})",
            f"{step.pss_bytes / MIB:.0f}",
            f"{step.cpu_s - before:.1f}",
            f"{step.load:.1f}",
        ]
        before = step.cpu_s
        rows_.append(cells)
    section.add(
        "VmRSS / VmHWM in MiB per process, after each step:",
        "",
        *table(
            [
                "after",
                *processes,
                "VmRSS total (MiB)",
                "PSS total (MiB)",
                "server CPU-s in step",
                "load (1 min)",
            ],
            rows_,
        ),
        "",
        "What dominates each process after the last step (resident MiB: anonymous, i.e. heap "
        "and pools, vs file-backed, i.e. code and shared libraries; largest mappings):",
        "",
    )
    last = steps[-1]
    detail = [
        [
            p,
            _mib(m.anon_kb),
            _mib(m.file_kb),
            ", ".join(f"{name} {kb / 1024:.0f}" for name, kb in m.top),
        ]
        for p, m in last.memory.items()
    ]
    section.add(*table(["process", "anonymous", "file-backed", "largest mappings"], detail))
    section.add(
        "",
        "- VmRSS counts a shared library's pages in each process that maps it; PSS divides "
        "shared pages between the processes that share them.",
        "- Before `cairn up` served everything from one process (four Python processes: the "
        "supervisor, catalogue, feature store and UI, each with its own interpreter and "
        "imports; 2026-12-02, load 10-17): 310 MiB at start (51 + 66 + 124 + 69), 419 MiB "
        "after the ingest and searches, 608 MiB after the Arrow GETs (feature store 313 MiB).",
        "- Before the last changes (same machine, 2026-12-02 21:05 UTC, load 1.6-2.1): 172, "
        "279, 284, **430**, **335**, 335 MiB. At the Arrow GETs the table's profile, still "
        "running, held 68-83 MiB of Arrow memory (pyarrow's Parquet reader decodes every "
        "column it reads side by side, with buffers and pages of its own) and had imported "
        "pandas through pyarrow (about 36 MiB kept for good); Arrow's decoding threads kept "
        "about 40 MiB of allocator pages after each stream. Now the profile reads one column "
        "at a time (5 MiB of Arrow memory) without pandas, a stream decodes on one thread, "
        "and SQLite hands its page caches back 2 s after the last write.",
        "- What the rest is (probes of 2026-12-02, `/proc/self/smaps`, `sys._debugmallocstats`, "
        "`mallinfo2`, `sqlite3_memory_used`, not rerun here): 88-111 MiB of the total is "
        "file-backed, the code of the libraries every service loads (pyarrow's alone 60 MiB, "
        "more where the page cache holds all of it: other processes using pyarrow). After "
        "the ingest, Python's small-object allocator holds 115-118 arenas (1 MiB each) "
        "against 42 at start, while its live blocks grew by only 2-3 MB: a 5,000-item bulk "
        "request builds about 110 MB of short-lived objects (parsed items, validated models, "
        "documents, side-table rows), and the few that outlive it (caches, free lists) keep "
        "an arena each from being given back. `PYTHONMALLOC=malloc` ended no lower (222 "
        "against 218 MiB in-process, with 30% more ingest CPU). What is kept follows the "
        "request's peak: the same 100,000 assets, each 5,000-item body handed to "
        "`Catalogue.bulk` in slices (one transaction each), ended at 165 MiB and 52 arenas "
        "with slices of 500, 172 and 58 with 1,000, 188 and 73 with 2,500, against 219 and "
        "100 whole (in-process, 2026-12-02 22:06 UTC, load 2.1-2.3; 10-30% more CPU there "
        "from the extra commits). Bulk requests are now validated and written 500 items at a "
        "time in one transaction (merged from the ingest work): 103 arenas after the ingest "
        "instead of 115-118. What still sets the floor is the whole body parsed at once "
        "(about 16 MB of Python objects for 5,000 items, alive until the request ends) and "
        "its 5,000 answers.",
    )
    write_section(section)
    return ok


def run(sizes: Sizes, command: str, rows: int) -> bool:
    assets = make_assets(sizes.assets)
    with CairnUp() as up:
        steps = [up.step("start")]
        print(f"footprint: loading {sizes.assets:,} assets ...", flush=True)
        load_assets(up.urls["catalogue"], assets)
        # The catalogue hands a bulk load's freed heap back once its big requests pause
        # (TRIM_QUIET_S): measured after that, as the other steps are measured at rest.
        time.sleep(TRIM_QUIET_S + 0.5)
        steps.append(up.step(f"ingest of {sizes.assets:,}"))
        searches = search_load(up.urls, assets)
        steps.append(up.step("searches"))
        print(f"footprint: Arrow GET of {rows:,} rows ...", flush=True)
        arrow_load(up.urls["featurestore"], rows)
        steps.append(up.step("Arrow GETs"))
        wait_for_profile(up.urls["featurestore"])
        steps.append(up.step("table's profile done"))
        time.sleep(2)
        steps.append(up.step("2 s later"))
    ok = write(steps, sizes, command, rows, searches)
    for step in steps:
        print(f"  {step.name}: VmRSS total {step.rss_bytes / MIB:.0f} MiB")
    return ok


def main(argv: list[str] | None = None) -> int:
    sizes, command = parse_sizes(__doc__ or "", "benchmarks.bench_footprint", argv)
    rows = QUICK_ROWS if sizes.quick else FULL_ROWS
    ok = run(sizes, command, rows)
    print(f"footprint written to benchmarks/RESULTS.md; target met: {ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

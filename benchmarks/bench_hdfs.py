"""hdfs-crawl: crawling a volume on a Hadoop minicluster over WebHDFS (issue 7).

- The generated volume (``gen_tree``, default 20,000 files / 2,000 manifests) is uploaded to a
  minicluster (one NameNode, one DataNode, ``tests/servers/minihdfs.py``) with WebHDFS CREATE
  from 8 threads.
- hdfs-walk: ``HdfsVolume.walk()`` (LISTSTATUS_BATCH, lazy) with 1, 4 and 16 folders listed at
  once (``CAIRN_CRAWL_LIST_CONCURRENCY``) against a plain WebHDFS walk in the same run: one
  LISTSTATUS per folder, one after another, over a keep-alive httpx client, no batching, no
  entries built; each 3 times after one untimed run of each, medians compared.
- hdfs-crawl: ``cairn crawl hdfs://... --json`` as a subprocess against a fresh catalogue, once
  per listing concurrency (1, 4, 16): files/s and manifests/s of the subprocess's wall time
  (start-up included), and the CPU seconds of the crawler, the minicluster's JVM and the
  catalogue during it; then the same command again on the unchanged volume (must write
  nothing), at the default concurrency.
- hdfs-reads: the crawl's read stage alone, in this process, on 200 manifests: the manifest
  and the schema of the data beside it, read as the crawler reads them; HTTP requests counted
  per server (NameNode, DataNode) where they leave this process, and CPU per manifest.

Run alone: ``python -m benchmarks.bench_hdfs [--quick] [--files N] [--manifests M]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from benchmarks.common import (
    PYTHON,
    ROOT,
    WORK_DIR,
    CatalogueProcess,
    Section,
    Sizes,
    add_size_args,
    bench_env,
    command_line,
    ensure_tree,
    fresh_dir,
    median,
    ms,
    table,
    write_section,
)
from benchmarks.walks import sizes_of

FULL_FILES, FULL_MANIFESTS = 20_000, 2_000
QUICK_FILES, QUICK_MANIFESTS = 2_000, 200
RUNS = 3
CONCURRENCY = (1, 4, 16)  # folders listed at once
USER = "cairn"
REMOTE_ROOT = "/bench"


@dataclass(slots=True)
class Figures:
    upload_s: float = 0.0
    startup_s: float = 0.0
    plain_s: list[float] = field(default_factory=list)
    walk_s: dict[int, list[float]] = field(default_factory=dict)  # concurrency -> runs
    plain_files: int = 0
    walk_files: int = 0
    walk_requests: int = 0
    plain_requests: int = 0
    crawls: dict[int, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    # concurrency -> CPU seconds (crawler, JVM, catalogue) during that crawl
    crawl_cpu: dict[int, tuple[float, float, float]] = field(default_factory=dict)
    reads: ReadStage | None = None
    recrawl_wall_s: float = 0.0
    recrawl: dict[str, Any] = field(default_factory=dict)
    loads: list[str] = field(default_factory=list)
    error: str = ""

    def ratio(self, concurrency: int) -> float:
        return median(self.walk_s[concurrency]) / median(self.plain_s)


@dataclass(slots=True)
class ReadStage:
    manifests: int
    data_files: int
    requests: Counter[str]  # "namenode" / "datanode" -> HTTP requests
    client_cpu_s: float
    jvm_cpu_s: float
    wall_s: float

    def per_manifest(self, server: str | None = None) -> float:
        count = self.requests[server] if server else sum(self.requests.values())
        return count / self.manifests


@contextmanager
def counted_http(namenode_port: int) -> Iterator[Counter[str]]:
    """Every HTTP request this process sends, by server, as it goes out: requests (urllib3)
    and http.client both start one with ``HTTPConnection.putrequest``, the connector's bare
    HTTP with ``http1.Connection.get``."""
    from connectors import http1

    counts: Counter[str] = Counter()
    lock = threading.Lock()
    real = http.client.HTTPConnection.putrequest
    real_get = http1.Connection.get

    def count(port: int) -> None:
        with lock:
            counts["namenode" if port == namenode_port else "datanode"] += 1

    def putrequest(self: http.client.HTTPConnection, *args: Any, **kwargs: Any) -> None:
        count(self.port)
        return real(self, *args, **kwargs)

    def get(self: http1.Connection, *args: Any, **kwargs: Any) -> http1.Answer:
        count(self.port)
        return real_get(self, *args, **kwargs)

    http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]
    http1.Connection.get = get  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        http.client.HTTPConnection.putrequest = real  # type: ignore[method-assign]
        http1.Connection.get = real_get  # type: ignore[method-assign]


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def read_stage(url: str, namenode_port: int, jvm_pid: int, sample: int = 200) -> ReadStage:
    """The crawler's read stage (``crawler.crawl._parse_one`` and ``_read_schema`` with the
    listed size) on the first ``sample`` manifests, one after another on a fresh volume."""
    from connectors.webhdfs import HdfsVolume
    from crawler.crawl import _guessed, _parse_one, _read_schema

    volume = HdfsVolume.from_url(url, user=USER)
    files: dict[str, list[Any]] = {}
    for entry in volume.walk():
        if not entry.is_dir:
            files.setdefault(entry.path.rpartition("/")[0], []).append(entry)
    manifests = sorted(
        (e for folder in files.values() for e in folder if e.name.endswith((".yaml", ".yml"))),
        key=lambda e: e.path,
    )[:sample]
    data = 0
    jvm0, cpu0, started = process_cpu(jvm_pid), time.thread_time(), time.perf_counter()
    with counted_http(namenode_port) as counts:
        for manifest in manifests:
            _parse_one(volume, manifest.path)
            siblings = files[manifest.path.rpartition("/")[0]]
            schema_file = _guessed(siblings)[1]
            if schema_file:
                size = next(f.size for f in siblings if f.path == schema_file)
                _read_schema(volume, schema_file, size)
                data += 1
    stage = ReadStage(
        len(manifests),
        data,
        Counter(counts),
        time.thread_time() - cpu0,
        process_cpu(jvm_pid) - jvm0,
        time.perf_counter() - started,
    )
    volume.close()
    return stage


def plain_walk(namenode: str, root: str) -> tuple[int, int]:
    """(files, requests) of a bare recursive LISTSTATUS walk: the reference."""
    files = requests = 0
    with httpx.Client(timeout=60) as http:
        stack = [root]
        while stack:
            path = stack.pop()
            response = http.get(
                f"{namenode}/webhdfs/v1{quote(path)}",
                params={"op": "LISTSTATUS", "user.name": USER},
            )
            requests += 1
            response.raise_for_status()
            for status in response.json()["FileStatuses"]["FileStatus"]:
                if status["type"] == "DIRECTORY":
                    stack.append(f"{path}/{status['pathSuffix']}")
                else:
                    files += 1
    return files, requests


def volume_walk(url: str, concurrency: int) -> tuple[int, int]:
    from connectors.webhdfs import HdfsVolume

    volume = HdfsVolume.from_url(url, user=USER, list_concurrency=concurrency)
    files = sum(1 for e in volume.walk() if not e.is_dir)
    volume.close()
    return files, volume.requests


def crawl_once(
    url: str, catalogue: CatalogueProcess, concurrency: int | None = None
) -> tuple[float, dict[str, Any]]:
    env = bench_env(catalogue.data_dir, CAIRN_HDFS_USER=USER)
    if concurrency is not None:
        env["CAIRN_CRAWL_LIST_CONCURRENCY"] = str(concurrency)
    started = time.perf_counter()
    proc = subprocess.run(
        [PYTHON, "-m", "cairn", "crawl", url, "--catalogue", catalogue.url, "--json"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.perf_counter() - started
    if not proc.stdout.strip():
        raise RuntimeError(f"cairn crawl printed nothing (exit {proc.returncode}): {proc.stderr}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def measure(sizes: Sizes) -> Figures:
    sys.path.insert(0, str(ROOT))
    from tests.servers.minihdfs import MiniHdfs

    figures = Figures()
    tree = ensure_tree(sizes.files, sizes.manifests)
    with MiniHdfs(fresh_dir(WORK_DIR / "minihdfs"), heap_mb=1536) as cluster:
        figures.startup_s = cluster.startup_s
        admin = cluster.admin()
        started = time.perf_counter()
        admin.upload_tree(tree, REMOTE_ROOT, threads=8)
        figures.upload_s = time.perf_counter() - started
        admin.close()
        url = f"hdfs://{cluster.authority}{REMOTE_ROOT}"
        print(f"   uploaded {sizes.files:,} files in {figures.upload_s:.1f} s", flush=True)

        plain_walk(cluster.active_url, REMOTE_ROOT)  # warm-up, untimed
        volume_walk(url, 1)
        figures.loads.append(load_average())
        # Alternating spreads any drift in machine load over every side evenly.
        for _ in range(RUNS):
            started = time.perf_counter()
            figures.plain_files, figures.plain_requests = plain_walk(
                cluster.active_url, REMOTE_ROOT
            )
            figures.plain_s.append(time.perf_counter() - started)
            for concurrency in CONCURRENCY:
                started = time.perf_counter()
                figures.walk_files, figures.walk_requests = volume_walk(url, concurrency)
                figures.walk_s.setdefault(concurrency, []).append(time.perf_counter() - started)
        figures.loads.append(load_average())

        assert cluster.proc is not None
        jvm = cluster.proc.pid
        namenode_port = int(cluster.active_url.rsplit(":", 1)[1])
        read_stage(url, namenode_port, jvm, sample=20)  # warm-up, untimed
        figures.reads = read_stage(url, namenode_port, jvm)
        for concurrency in CONCURRENCY:
            with CatalogueProcess(f"hdfs-{concurrency}") as catalogue:
                before = (children_cpu(), process_cpu(jvm), process_cpu(catalogue.pid))
                figures.crawls[concurrency] = crawl_once(url, catalogue, concurrency)
                after = (children_cpu(), process_cpu(jvm), process_cpu(catalogue.pid))
                figures.crawl_cpu[concurrency] = (
                    after[0] - before[0],
                    after[1] - before[1],
                    after[2] - before[2],
                )
                if concurrency == CONCURRENCY[-1]:
                    figures.recrawl_wall_s, figures.recrawl = crawl_once(url, catalogue)
            figures.loads.append(load_average())
    return figures


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def render(figures: Figures, sizes: Sizes, command: str) -> Section:
    section = Section(
        "hdfs", "hdfs-walk, hdfs-crawl (Hadoop minicluster over WebHDFS)", command, sizes
    )
    recrawl = figures.recrawl
    writes = sum(int(recrawl.get(k, 0)) for k in ("created", "updated", "deleted"))
    section.add(
        f"Volume: {sizes.files:,} files, {sizes.manifests:,} manifests (`benchmarks/gen_tree.py`), "
        f"uploaded to a minicluster (1 NameNode, 1 DataNode, Hadoop 3.4.1, started in "
        f"{figures.startup_s:.1f} s) in {figures.upload_s:.1f} s by 8 threads of WebHDFS CREATE.",
        "",
    )
    plain = median(figures.plain_s)
    rows: list[list[object]] = [
        [
            "hdfs-walk, plain (reference)",
            f"one LISTSTATUS per folder, one after another: median of {RUNS} "
            f"{ms(plain)} ({figures.plain_requests:,} calls, {figures.plain_files:,} files)",
            f"{figures.plain_files / plain:,.0f} files/s",
            "1.00x",
        ]
    ]
    for concurrency in CONCURRENCY:
        walk = median(figures.walk_s[concurrency])
        rows.append(
            [
                f"hdfs-walk, {concurrency} at once",
                f"`HdfsVolume.walk()` median of {RUNS}: {ms(walk)} "
                f"({figures.walk_requests:,} WebHDFS calls, {figures.walk_files:,} files)",
                f"{figures.walk_files / walk:,.0f} files/s",
                f"{plain / walk:.2f}x",
            ]
        )
    base_wall = figures.crawls[CONCURRENCY[0]][0]
    for concurrency in CONCURRENCY:
        wall, crawl = figures.crawls[concurrency]
        crawler_cpu, jvm_cpu, catalogue_cpu = figures.crawl_cpu[concurrency]
        files = int(crawl.get("files_seen", 0))
        manifests = int(crawl.get("manifests_found", 0))
        rows.append(
            [
                f"hdfs-crawl, {concurrency} at once",
                f"`cairn crawl hdfs://...` (cold): {files:,} files, {manifests:,} manifests "
                f"({crawl.get('created', 0):,} created, {len(crawl.get('errors', [])):,} "
                f"errors) in {wall:.2f} s wall (crawler's duration_s "
                f"{crawl.get('duration_s', 0):.2f} s); {manifests / wall:,.0f} manifests/s; "
                f"CPU s: crawler {crawler_cpu:.2f}, minicluster JVM {jvm_cpu:.2f}, "
                f"catalogue {catalogue_cpu:.2f}",
                f"{files / wall:,.0f} files/s",
                f"{base_wall / wall:.2f}x",
            ]
        )
    walk_default = median(figures.walk_s[CONCURRENCY[-1]])
    rows.append(
        [
            "hdfs-recrawl",
            f"unchanged volume, {CONCURRENCY[-1]} at once: {writes} writes, "
            f"{recrawl.get('unchanged', 0):,} unchanged, duration_s "
            f"{recrawl.get('duration_s', 0):.2f} s, {figures.recrawl_wall_s:.2f} s wall",
            f"{recrawl.get('duration_s', 0) / walk_default:.2f}x the walk",
            "",
        ]
    )
    section.add(*table(["benchmark", "measured", "result", "vs first row of its kind"], rows))
    reads = figures.reads
    if reads is not None:
        section.add(
            f"hdfs-reads: the crawl's read stage alone (`_parse_one` and `_read_schema` with the "
            f"listed size, one manifest after another, in the benchmark's process) on "
            f"{reads.manifests} manifests and the {reads.data_files} data files beside them:",
            "",
            *table(
                ["HTTP requests per manifest", "NameNode", "DataNode", "client CPU", "JVM CPU"],
                [
                    [
                        f"{reads.per_manifest():.2f}",
                        f"{reads.per_manifest('namenode'):.2f}",
                        f"{reads.per_manifest('datanode'):.2f}",
                        f"{1000 * reads.client_cpu_s / reads.manifests:.2f} ms/manifest",
                        f"{1000 * reads.jvm_cpu_s / reads.manifests:.2f} ms/manifest",
                    ]
                ],
            ),
        )
    walk_runs = "; ".join(
        f"{c} at once: {', '.join(f'{t:.3f}' for t in figures.walk_s[c])}" for c in CONCURRENCY
    )
    section.add(
        f"- Walk runs (s): {walk_runs}; plain walk runs (s): "
        f"{', '.join(f'{t:.3f}' for t in figures.plain_s)}.",
        f"- Load average before the walks, after them, and after each crawl: "
        f"{'; '.join(figures.loads)}.",
        "- The plain walk is the least a WebHDFS client can do one folder at a time: one "
        "LISTSTATUS per folder, nothing built from the answers. `HdfsVolume.walk()` lists "
        "folders with LISTSTATUS_BATCH (1,000 entries per call) so that huge folders stream, "
        "keeps up to N listings in flight on N threads, hands their entries out in the order "
        "they were asked for, and builds an entry per file.",
        "- The crawl reads each manifest and the schema of the data beside it (CSV head, or "
        "Parquet footer) on `CAIRN_CRAWL_READ_CONCURRENCY` threads (8), starting while the "
        "walk goes on: each is one OPEN, with the size the listing gave (no GETFILESTATUS). "
        "The first OPEN asks the NameNode (`noredirect=true`) where to read; later ones go "
        "straight to that DataNode, which reads the blocks wherever they are (a read it does "
        "not serve goes through the NameNode again). DataNodes close the connection after "
        "each answer, so each read is one new connection. Before this (commit b525cb4), a "
        "manifest cost 3 WebHDFS calls, 5 HTTP requests (OPEN at the NameNode, redirected "
        "to the DataNode; GETFILESTATUS; OPEN + redirect), about 6.1 per manifest with the "
        "listings, and 8.7 ms of crawler CPU per manifest (in-process probe, load 12).",
        "- Listings (on kept-alive connections) and DataNode reads are bare HTTP/1.1 GETs "
        "(`connectors/http1.py`); requests only sends the first OPEN and asks again what "
        "those did not get a plain answer to. Before this, through requests and http.client, "
        "the crawler took about 2.0 ms of CPU per manifest on this volume, 1.15 after.",
        "- The NameNode, the DataNode, the catalogue and the crawler share 2 cores; CPU "
        "seconds are user + system of each process during the crawl (the crawler's from "
        "`RUSAGE_CHILDREN`, the others from /proc).",
    )
    return section


def run(sizes: Sizes, command: str) -> bool:
    figures = measure(sizes)
    write_section(render(figures, sizes, command))
    for concurrency, (wall, crawl) in figures.crawls.items():
        print(
            f"   {concurrency} at once: walk {figures.ratio(concurrency):.2f}x plain; crawl "
            f"{int(crawl.get('files_seen', 0)) / wall:,.0f} files/s",
            flush=True,
        )
    writes = sum(int(figures.recrawl.get(k, 0)) for k in ("created", "updated", "deleted"))
    return writes == 0 and not any(crawl.get("errors") for _, crawl in figures.crawls.values())


def sizes_for(argv: Sequence[str] | None) -> Sizes:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_args(parser)
    args = parser.parse_args(argv)
    return sizes_of(args, (FULL_FILES, FULL_MANIFESTS), (QUICK_FILES, QUICK_MANIFESTS))


def main(argv: list[str] | None = None) -> int:
    sizes = sizes_for(argv)
    return 0 if run(sizes, command_line("benchmarks.bench_hdfs", argv)) else 1


if __name__ == "__main__":
    sys.exit(main())

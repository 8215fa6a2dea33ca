"""hdfs-crawl: crawling a volume on a Hadoop minicluster over WebHDFS (issue 7).

- The generated volume (``gen_tree``, default 20,000 files / 2,000 manifests) is uploaded to a
  minicluster (one NameNode, one DataNode, ``tests/servers/minihdfs.py``) with WebHDFS CREATE
  from 8 threads.
- hdfs-walk: ``HdfsVolume.walk()`` (LISTSTATUS_BATCH, lazy) against a plain WebHDFS walk in the
  same run: one LISTSTATUS per folder over a keep-alive httpx client, no batching, no entries
  built; each 3 times after one untimed run of each, medians compared.
- hdfs-crawl: ``cairn crawl hdfs://... --json`` as a subprocess against a fresh catalogue:
  files/s and manifests/s of the subprocess's wall time (start-up included), then the same
  command again on the unchanged volume (must write nothing).

Run alone: ``python -m benchmarks.bench_hdfs [--quick] [--files N] [--manifests M]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
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

FULL_FILES, FULL_MANIFESTS = 20_000, 2_000
QUICK_FILES, QUICK_MANIFESTS = 2_000, 200
RUNS = 3
USER = "cairn"
REMOTE_ROOT = "/bench"


@dataclass(slots=True)
class Figures:
    upload_s: float = 0.0
    startup_s: float = 0.0
    plain_s: list[float] = field(default_factory=list)
    walk_s: list[float] = field(default_factory=list)
    plain_files: int = 0
    walk_files: int = 0
    walk_requests: int = 0
    plain_requests: int = 0
    crawl_wall_s: float = 0.0
    crawl: dict[str, Any] = field(default_factory=dict)
    recrawl_wall_s: float = 0.0
    recrawl: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def ratio(self) -> float:
        return median(self.walk_s) / median(self.plain_s)


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


def volume_walk(url: str) -> tuple[int, int]:
    from connectors.webhdfs import HdfsVolume

    volume = HdfsVolume.from_url(url, user=USER)
    files = sum(1 for e in volume.walk() if not e.is_dir)
    volume.close()
    return files, volume.requests


def crawl_once(url: str, catalogue: CatalogueProcess) -> tuple[float, dict[str, Any]]:
    env = bench_env(catalogue.data_dir, CAIRN_HDFS_USER=USER)
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
        volume_walk(url)
        for _ in range(RUNS):
            started = time.perf_counter()
            figures.plain_files, figures.plain_requests = plain_walk(
                cluster.active_url, REMOTE_ROOT
            )
            figures.plain_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            figures.walk_files, figures.walk_requests = volume_walk(url)
            figures.walk_s.append(time.perf_counter() - started)

        with CatalogueProcess("hdfs") as catalogue:
            figures.crawl_wall_s, figures.crawl = crawl_once(url, catalogue)
            figures.recrawl_wall_s, figures.recrawl = crawl_once(url, catalogue)
    return figures


def render(figures: Figures, sizes: Sizes, command: str) -> Section:
    section = Section(
        "hdfs", "hdfs-walk, hdfs-crawl (Hadoop minicluster over WebHDFS)", command, sizes
    )
    crawl, recrawl = figures.crawl, figures.recrawl
    files = int(crawl.get("files_seen", 0))
    manifests = int(crawl.get("manifests_found", 0))
    writes = sum(int(recrawl.get(k, 0)) for k in ("created", "updated", "deleted"))
    section.add(
        f"Volume: {sizes.files:,} files, {sizes.manifests:,} manifests (`benchmarks/gen_tree.py`), "
        f"uploaded to a minicluster (1 NameNode, 1 DataNode, Hadoop 3.4.1, started in "
        f"{figures.startup_s:.1f} s) in {figures.upload_s:.1f} s by 8 threads of WebHDFS CREATE.",
        "",
    )
    section.add(
        *table(
            ["benchmark", "measured", "result"],
            [
                [
                    "hdfs-walk",
                    f"`HdfsVolume.walk()` median of {RUNS}: {ms(median(figures.walk_s))} "
                    f"({figures.walk_requests:,} WebHDFS calls); plain LISTSTATUS walk median: "
                    f"{ms(median(figures.plain_s))} ({figures.plain_requests:,} calls); "
                    f"{figures.walk_files:,} vs {figures.plain_files:,} files",
                    f"{figures.ratio:.2f}x the plain walk",
                ],
                [
                    "hdfs-crawl",
                    f"`cairn crawl hdfs://...`: {files:,} files, {manifests:,} manifests "
                    f"({crawl.get('created', 0):,} created, {len(crawl.get('errors', [])):,} "
                    f"errors) in {figures.crawl_wall_s:.2f} s wall (crawler's duration_s "
                    f"{crawl.get('duration_s', 0):.2f} s)",
                    f"{files / figures.crawl_wall_s:,.0f} files/s, "
                    f"{manifests / figures.crawl_wall_s:,.0f} manifests/s",
                ],
                [
                    "hdfs-recrawl",
                    f"unchanged volume: {writes} writes, {recrawl.get('unchanged', 0):,} "
                    f"unchanged, duration_s {recrawl.get('duration_s', 0):.2f} s, "
                    f"{figures.recrawl_wall_s:.2f} s wall",
                    f"{recrawl.get('duration_s', 0) / median(figures.walk_s):.2f}x the walk",
                ],
            ],
        )
    )
    section.add(
        f"- Walk runs (s): {', '.join(f'{t:.3f}' for t in figures.walk_s)}; plain walk runs "
        f"(s): {', '.join(f'{t:.3f}' for t in figures.plain_s)}.",
        "- The plain walk is the least a WebHDFS client can do: one LISTSTATUS per folder, "
        "nothing built from the answers. `HdfsVolume.walk()` lists each folder with "
        "LISTSTATUS_BATCH (1,000 entries per call) so that huge folders stream, and builds an "
        "entry per file.",
        "- The crawl reads each manifest (one OPEN through the NameNode, redirected to the "
        "DataNode) and the schema of the data beside it (CSV head, or Parquet footer by ranged "
        "reads); the NameNode, the DataNode, the catalogue and the crawler share 2 cores.",
    )
    return section


def run(sizes: Sizes, command: str) -> bool:
    figures = measure(sizes)
    write_section(render(figures, sizes, command))
    print(
        f"   hdfs-walk {figures.ratio:.2f}x plain; crawl "
        f"{int(figures.crawl.get('files_seen', 0)) / figures.crawl_wall_s:,.0f} files/s",
        flush=True,
    )
    writes = sum(int(figures.recrawl.get(k, 0)) for k in ("created", "updated", "deleted"))
    return writes == 0 and not figures.crawl.get("errors")


def sizes_for(argv: Sequence[str] | None) -> Sizes:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_args(parser)
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Sizes(
        files=args.files or (QUICK_FILES if quick else FULL_FILES),
        manifests=args.manifests or (QUICK_MANIFESTS if quick else FULL_MANIFESTS),
        assets=0,
        quick=quick,
    )


def main(argv: list[str] | None = None) -> int:
    sizes = sizes_for(argv)
    return 0 if run(sizes, command_line("benchmarks.bench_hdfs", argv)) else 1


if __name__ == "__main__":
    sys.exit(main())

"""s3-crawl: crawling an S3 volume on a local SeaweedFS (issue 15).

- The generated volume (``gen_tree``, default 100,000 files / 10,000 manifests) is uploaded to
  the tests' SeaweedFS (``tests/servers/seaweedfs.py``: master, volume server, filer and S3
  gateway in one process) with PutObject from 16 threads.
- s3-walk: ``S3Volume.walk()`` (ListObjectsV2 pages, entries built, folders derived) with 1, 4
  and 16 listings at once (``CAIRN_CRAWL_LIST_CONCURRENCY``; 1 is one flat listing, more cut
  it by prefix) against a plain ListObjectsV2 walk with the same boto3 client settings in the
  same run (the paginator, keys counted, nothing built); each 3 times after one untimed run of
  each, medians compared, in wall time, client CPU and server CPU (``benchmarks/walks.py``).
- s3-crawl: ``cairn crawl s3://... --json`` as a subprocess against a fresh catalogue:
  objects/s of the subprocess's wall time (start-up included), then again on the unchanged
  volume (must write nothing). Requests per crawl are counted by the server (its Prometheus
  counter of S3 requests, by type), so requests from every crawler process count.

Run alone: ``python -m benchmarks.bench_s3 [--quick] [--files N] [--manifests M] [--runs R]
[--walk-only]``; ``--walk-only`` skips the crawls and prints the walk figures without writing
RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import (
    PYTHON,
    ROOT,
    WORK_DIR,
    CatalogueProcess,
    Section,
    Sizes,
    bench_env,
    command_line,
    ensure_tree,
    fresh_dir,
    load_average,
    table,
    write_section,
)
from benchmarks.walks import (
    RUNS,
    WalkFigures,
    measure_walks,
    parser,
    print_walks,
    sizes_of,
    walk_rows,
)

UPLOAD_THREADS = 16
BUCKET = "bench"
PREFIX = "lake"


@dataclass(slots=True)
class Figures:
    objects: int = 0
    upload_s: float = 0.0
    startup_s: float = 0.0
    walks: WalkFigures = field(default_factory=WalkFigures)
    crawl_wall_s: float = 0.0
    crawl: dict[str, Any] = field(default_factory=dict)
    crawl_requests: dict[str, int] = field(default_factory=dict)
    recrawl_wall_s: float = 0.0
    recrawl: dict[str, Any] = field(default_factory=dict)
    recrawl_requests: dict[str, int] = field(default_factory=dict)
    load: str = ""


def upload(client: Any, tree: Path) -> int:
    paths = [p for p in tree.rglob("*") if p.is_file() and not p.name.startswith(".")]

    def put(path: Path) -> None:
        key = f"{PREFIX}/{path.relative_to(tree).as_posix()}"
        client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        for done, _ in enumerate(pool.map(put, paths), 1):
            if done % 10_000 == 0:
                print(f"   uploaded {done:,} / {len(paths):,} objects", flush=True)
    return len(paths)


def plain_walk(client: Any) -> tuple[int, int]:
    """(objects, requests) of a bare paginated ListObjectsV2: the reference."""
    objects = requests = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix=PREFIX + "/", PaginationConfig={"PageSize": 1000}
    ):
        requests += 1
        objects += page.get("KeyCount", 0)
    return objects, requests


def volume_walk(url: str, concurrency: int) -> tuple[int, int]:
    from connectors.s3 import S3Volume

    volume = S3Volume.from_url(url, list_concurrency=concurrency)
    before = volume.requests
    files = sum(1 for e in volume.walk() if not e.is_dir)
    volume.close()
    return files, volume.requests - before


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    out = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return {k: v for k, v in sorted(out.items()) if v}


def crawl_once(url: str, catalogue: CatalogueProcess, env: dict[str, str]) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run(
        [PYTHON, "-m", "cairn", "crawl", url, "--catalogue", catalogue.url, "--json"],
        env=bench_env(catalogue.data_dir, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    wall = time.perf_counter() - started
    if not proc.stdout.strip():
        raise RuntimeError(f"cairn crawl printed nothing (exit {proc.returncode}): {proc.stderr}")
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def measure(sizes: Sizes, runs: int = RUNS, crawls: bool = True) -> Figures:
    sys.path.insert(0, str(ROOT))
    from cairn.settings import get_settings
    from connectors.s3 import make_client
    from tests.servers.fixtures import S3Server
    from tests.servers.seaweedfs import SeaweedFS

    figures = Figures()
    tree = ensure_tree(sizes.files, sizes.manifests)
    server = SeaweedFS(fresh_dir(WORK_DIR / "seaweedfs"))
    server.start(timeout=300)
    try:
        figures.startup_s = server.startup_s
        s3 = S3Server(server)
        setup = s3.client()
        setup.create_bucket(Bucket=BUCKET)
        started = time.perf_counter()
        figures.objects = upload(setup, tree)
        figures.upload_s = time.perf_counter() - started
        print(f"   uploaded {figures.objects:,} objects in {figures.upload_s:.1f} s", flush=True)

        env = s3.env()
        os.environ.update(env)  # the in-process walks read the same settings as the crawler
        get_settings.cache_clear()
        client = make_client(get_settings())  # the connector's own client settings
        url = s3.url(BUCKET, PREFIX)
        assert server.proc is not None
        figures.walks = measure_walks(
            lambda: plain_walk(client),
            lambda concurrency: volume_walk(url, concurrency),
            server.proc.pid,
            runs,
        )
        print_walks(figures.walks, "s3-walk")
        if not crawls:
            return figures

        with CatalogueProcess("s3") as catalogue:
            before = server.request_counts()
            figures.crawl_wall_s, figures.crawl = crawl_once(url, catalogue, env)
            middle = server.request_counts()
            figures.recrawl_wall_s, figures.recrawl = crawl_once(url, catalogue, env)
            after = server.request_counts()
        figures.crawl_requests = diff(middle, before)
        figures.recrawl_requests = diff(after, middle)
        figures.load = load_average()
    finally:
        server.stop()
    return figures


def _requests(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{kind} {n:,}" for kind, n in counts.items())
    return f"{total:,} ({parts})" if parts else "0"


def render(figures: Figures, sizes: Sizes, command: str) -> Section:
    section = Section("s3", "s3-walk, s3-crawl (SeaweedFS's S3 gateway)", command, sizes)
    crawl, recrawl = figures.crawl, figures.recrawl
    files = int(crawl.get("files_seen", 0))
    manifests = int(crawl.get("manifests_found", 0))
    writes = sum(int(recrawl.get(k, 0)) for k in ("created", "updated", "deleted"))
    walk = figures.walks.walks[max(figures.walks.walks)].wall
    section.add(
        f"Volume: {sizes.files:,} files, {sizes.manifests:,} manifests (`benchmarks/gen_tree.py`)"
        f", {figures.objects:,} objects uploaded to SeaweedFS (`weed server -filer -s3`, one "
        f"process, started in {figures.startup_s:.1f} s) in {figures.upload_s:.1f} s by "
        f"{UPLOAD_THREADS} threads of PutObject ({figures.objects / figures.upload_s:,.0f}/s). "
        f"Load average after the measurements: {figures.load}.",
        "",
    )
    section.add(
        *table(
            ["benchmark", "measured", "result"],
            [
                *walk_rows(
                    figures.walks,
                    "s3-walk",
                    "`S3Volume.walk()` (files counted)",
                    "plain paginated ListObjectsV2 with the same client settings (objects)",
                ),
                [
                    "s3-crawl (cold)",
                    f"`cairn crawl s3://...`: {files:,} objects, {manifests:,} manifests "
                    f"({crawl.get('created', 0):,} created, {len(crawl.get('errors', [])):,} "
                    f"errors) in {figures.crawl_wall_s:.2f} s wall (crawler's duration_s "
                    f"{crawl.get('duration_s', 0):.2f} s); S3 requests: "
                    f"{_requests(figures.crawl_requests)}",
                    f"{files / figures.crawl_wall_s:,.0f} objects/s, "
                    f"{manifests / figures.crawl_wall_s:,.0f} manifests/s",
                ],
                [
                    "s3-crawl (unchanged)",
                    f"same volume again: {writes} writes, {recrawl.get('unchanged', 0):,} "
                    f"unchanged, duration_s {recrawl.get('duration_s', 0):.2f} s, "
                    f"{figures.recrawl_wall_s:.2f} s wall; S3 requests: "
                    f"{_requests(figures.recrawl_requests)}",
                    f"{files / figures.recrawl_wall_s:,.0f} objects/s; "
                    f"{recrawl.get('duration_s', 0) / walk:.2f}x the walk at "
                    f"{max(figures.walks.walks)} at once",
                ],
            ],
        )
    )
    runs = {n: t.wall_s for n, t in figures.walks.walks.items()}
    section.add(
        "- Walk runs (s wall): "
        + "; ".join(f"{n} at once: {', '.join(f'{t:.3f}' for t in w)}" for n, w in runs.items())
        + f"; plain listing: {', '.join(f'{t:.3f}' for t in figures.walks.plain.wall_s)}. "
        f"Load average after the walks: {figures.walks.load}.",
        "- Every listing asks for 1,000 keys per request and pays the gateway's filer scan and "
        "botocore's parsing of each XML page (about 0.1 ms of client CPU per key; obstore's is "
        "20x less, see `connectors/s3.py`); a listing's pages come one after another, so more "
        "at once overlap that parsing with the server's work. `S3Volume.walk()` adds an entry "
        "per object and per folder, and with more than one at once a delimiter listing of the "
        "root (and a level below while it has too few prefixes).",
        "- A cold crawl reads each manifest (HeadObject + GetObject) and the schema of the data "
        "beside it (a CSV head, or a Parquet footer by ranged GETs); an unchanged volume costs "
        "the listing only. SeaweedFS, the catalogue and the crawler share the machine's cores.",
    )
    return section


def run(sizes: Sizes, command: str, runs: int = RUNS, crawls: bool = True) -> bool:
    figures = measure(sizes, runs, crawls)
    if not crawls:
        return True
    write_section(render(figures, sizes, command))
    files = int(figures.crawl.get("files_seen", 0))
    print(
        f"   s3-crawl {files / figures.crawl_wall_s:,.0f} objects/s cold, "
        f"{files / figures.recrawl_wall_s:,.0f} unchanged",
        flush=True,
    )
    writes = sum(int(figures.recrawl.get(k, 0)) for k in ("created", "updated", "deleted"))
    return writes == 0 and not figures.crawl.get("errors")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    made = parser(__doc__)
    made.add_argument(
        "--walk-only",
        action="store_true",
        help="measure the walks only (no crawls) and print them, leaving RESULTS.md alone",
    )
    return made.parse_args(argv)


def sizes_for(argv: Sequence[str] | None) -> Sizes:
    return sizes_of(parse(argv))


def main(argv: list[str] | None = None) -> int:
    sizes = sizes_for(argv)
    args = parse(argv)
    command = command_line("benchmarks.bench_s3", argv)
    return 0 if run(sizes, command, max(1, args.runs), not args.walk_only) else 1


if __name__ == "__main__":
    sys.exit(main())

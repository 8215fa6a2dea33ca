"""blobs: Parquet upload and download throughput of the feature store's blob store on S3
(the tests' SeaweedFS) beside the local one, in the same run (issue 15).

- One Parquet file of random (incompressible) float columns, ``--mb`` MiB (default 64;
  ``--quick``: 8), written once.
- upload: ``BlobStore.put`` of that file under a fresh key, as the feature store stores a
  checked upload: on S3 a multipart upload of 8 MiB parts (``S3BlobStore``), locally a copy
  into the store's folder, fsync and rename (``LocalBlobStore``; the service itself renames
  its spooled upload into place, so its local uploads skip even that copy).
- download: what a reader gets before it can open the table: on S3 the read cache's fetch
  (ranged GETs of 8 MiB into a local file, ``ReadCache.checkout``), locally a read of the whole
  stored file (readers open it in place; the page cache is warm, as for a table just read).
- Each figure is the median of ``RUNS`` runs after one untimed run, S3 and local alternating;
  MB/s are MiB of the file per second. SeaweedFS, on the same 2 cores, runs its master, volume
  server, filer and S3 gateway in one process, so the ratio is a lower bound for a real S3.

Run alone: ``python -m benchmarks.bench_blobs [--quick] [--mb N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import (
    ROOT,
    WORK_DIR,
    Section,
    Sizes,
    command_line,
    fresh_dir,
    load_average,
    median,
    table,
    write_section,
)

RUNS = 3
FULL_MB, QUICK_MB = 64, 8
BUCKET = "bench-blobs"


@dataclass(slots=True)
class Figures:
    size: int = 0
    rows: int = 0
    upload_s: dict[str, list[float]] = field(default_factory=lambda: {"s3": [], "local": []})
    download_s: dict[str, list[float]] = field(default_factory=lambda: {"s3": [], "local": []})
    s3_requests_per_upload: int = 0
    load: str = ""

    def rate(self, seconds: list[float]) -> float:
        return self.size / 2**20 / median(seconds)


def make_parquet(path: Path, mib: int) -> int:
    """Random float64 columns, uncompressed-size ``mib``; returns the row count."""
    rng = np.random.default_rng(15)
    rows = mib * 2**20 // (8 * 8)
    table_ = pa.table({f"f{i}": rng.random(rows) for i in range(8)})
    pq.write_table(table_, path, compression="snappy", row_group_size=256 * 1024)
    return rows


def fresh_key() -> str:
    return f"{secrets.token_hex(32)}.parquet"


def timed_upload(store: object, source: Path) -> tuple[float, str]:
    key = fresh_key()
    with source.open("rb") as handle:
        started = time.perf_counter()
        created = store.put(key, handle)  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - started
    assert created, "a fresh key was already stored"
    return elapsed, key


def local_download(store: object, key: str) -> float:
    started = time.perf_counter()
    with store.open(key) as handle:  # type: ignore[attr-defined]
        while handle.read(8 * 2**20):
            pass
    return time.perf_counter() - started


def s3_download(store: object, key: str, cache_dir: Path) -> float:
    from featurestore_service.blobstore.cache import ReadCache

    cache = ReadCache(fresh_dir(cache_dir), 1 << 40)
    cache.open()

    async def fetch() -> float:
        started = time.perf_counter()
        lease = await cache.checkout(key, lambda: store.open(key))  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - started
        lease.release()
        return elapsed

    return asyncio.run(fetch())


def measure(mib: int) -> Figures:
    sys.path.insert(0, str(ROOT))
    from cairn.settings import get_settings
    from featurestore_service.blobstore import open_blob_store
    from featurestore_service.blobstore.local import LocalBlobStore
    from tests.servers.fixtures import S3Server
    from tests.servers.seaweedfs import SeaweedFS

    work = fresh_dir(WORK_DIR / "blobs")
    source = work / "table.parquet"
    figures = Figures()
    figures.rows = make_parquet(source, mib)
    figures.size = source.stat().st_size
    print(f"   {figures.size / 2**20:.1f} MiB Parquet file, {figures.rows:,} rows", flush=True)
    server = SeaweedFS(fresh_dir(WORK_DIR / "seaweedfs-blobs"))
    server.start(timeout=300)
    try:
        s3_server = S3Server(server)
        os.environ.update(s3_server.env())  # the store reads its settings like the service
        get_settings.cache_clear()
        stores = {
            "s3": open_blob_store(f"s3://{BUCKET}/blobs"),  # makes the bucket
            "local": LocalBlobStore(work / "local-store"),
        }
        downloads: dict[str, Callable[[str], float]] = {
            "s3": lambda key: s3_download(stores["s3"], key, work / "cache"),
            "local": lambda key: local_download(stores["local"], key),
        }
        for run in range(RUNS + 1):
            for name in ("s3", "local"):
                store = stores[name]
                before = getattr(getattr(store, "volume", None), "requests", 0)
                up, key = timed_upload(store, source)
                requests = getattr(getattr(store, "volume", None), "requests", 0) - before
                down = downloads[name](key)
                store.delete(key)
                if run == 0:
                    continue  # warm-up
                figures.upload_s[name].append(up)
                figures.download_s[name].append(down)
                if name == "s3":
                    figures.s3_requests_per_upload = requests
                print(
                    f"   {name}: upload {figures.size / 2**20 / up:,.0f} MB/s, "
                    f"download {figures.size / 2**20 / down:,.0f} MB/s",
                    flush=True,
                )
        for store in stores.values():
            store.close()
        figures.load = load_average()
    finally:
        server.stop()
    return figures


def render(figures: Figures, sizes: Sizes, command: str) -> Section:
    section = Section("blobs", "blobs (feature-store blob store: S3 vs local)", command, sizes)
    rows = []
    for what, runs in (("upload", figures.upload_s), ("download", figures.download_s)):
        s3, local = figures.rate(runs["s3"]), figures.rate(runs["local"])
        rows.append([what, f"{s3:,.0f} MB/s", f"{local:,.0f} MB/s", f"{s3 / local:.2f}"])
    section.add(
        f"One Parquet file of {figures.size / 2**20:.1f} MiB ({figures.rows:,} rows of 8 random "
        f"float64 columns); medians of {RUNS} runs after one untimed run, S3 and local "
        "alternating. S3 is the tests' SeaweedFS on loopback (`weed server -filer -s3`), "
        "sharing the machine's cores with this process. MB/s here are MiB (2^20 bytes) of "
        "the file per second.",
        "",
        *table(["", "S3 (SeaweedFS)", "local folder", "S3 / local"], rows),
        f"- S3 requests per upload: {figures.s3_requests_per_upload} (HEAD, then a multipart "
        "upload: create, one part per 8 MiB, complete).",
        "- upload: `BlobStore.put` of the file under a fresh key; locally a copy, fsync and "
        "rename (the service renames its spooled upload instead, so it skips this copy).",
        "- download: on S3 the read cache's fetch into a local file (what every reader waits "
        "for on a cache miss); locally a read of the stored file in place (warm page cache).",
        f"- Load average after the runs: {figures.load}. No target in DESIGN.md; the ratio is "
        "the figure to watch.",
    )
    return section


def run(mib: int, quick: bool, command: str) -> bool:
    figures = measure(mib)
    write_section(render(figures, Sizes(0, 0, 0, quick), command))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mb", type=int, help=f"size of the Parquet file in MiB (default {FULL_MB})"
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke run: a {QUICK_MB} MiB file")
    args = parser.parse_args(argv)
    mib = args.mb or (QUICK_MB if args.quick else FULL_MB)
    run(mib, args.quick, command_line("benchmarks.bench_blobs", argv))
    print("results written to benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

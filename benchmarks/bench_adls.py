"""adls-walk: walking an ADLS volume on the tests' Azurite (Blob API), by prefix or flat.

- The generated volume (``gen_tree``; ``--files``/``--manifests``, e.g. 20,000 / 2,000) is
  uploaded to a fresh Azurite (``tests/servers/azurite.py``: in memory, TLS) with Put Blob
  from 16 threads.
- adls-walk: ``AdlsVolume.walk()`` with 1, 4 and 16 listings at once
  (``CAIRN_CRAWL_LIST_CONCURRENCY``; 1 is one flat listing, more cut it by prefix) against a
  plain paginated ``list_blobs`` (5,000 a page, with metadata, as the walk asks) on the
  connector's own container client, in the same run; each 3 times after one untimed run of
  each, medians of wall time, client CPU and Azurite's CPU (``benchmarks/walks.py``, shared
  with bench_s3).

Azurite is one single-threaded Node process: listings at once cannot make it answer faster,
only overlap its work with the client's parsing of the pages already answered.

Run alone: ``python -m benchmarks.bench_adls [--quick] [--files N] [--manifests M] [--runs R]
[--print-only]``; ``--print-only`` leaves RESULTS.md alone.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.common import (
    ROOT,
    WORK_DIR,
    Section,
    Sizes,
    command_line,
    ensure_tree,
    fresh_dir,
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
PREFIX = "lake"


def upload(container: Any, tree: Path) -> int:
    paths = [p for p in tree.rglob("*") if p.is_file() and not p.name.startswith(".")]

    def put(path: Path) -> None:
        key = f"{PREFIX}/{path.relative_to(tree).as_posix()}"
        container.upload_blob(key, path.read_bytes(), overwrite=True)

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        for done, _ in enumerate(pool.map(put, paths), 1):
            if done % 10_000 == 0:
                print(f"   uploaded {done:,} / {len(paths):,} blobs", flush=True)
    return len(paths)


def plain_walk(container: Any) -> tuple[int, int]:
    """(blobs, requests) of a bare paginated list_blobs: the reference."""
    from connectors.adls import PAGE_SIZE

    blobs = requests = 0
    pages = container.list_blobs(
        name_starts_with=PREFIX + "/", include=["metadata"], results_per_page=PAGE_SIZE
    ).by_page()
    for page in pages:
        requests += 1
        blobs += sum(1 for _ in page)
    return blobs, requests


def volume_walk(url: str, concurrency: int) -> tuple[int, int]:
    from connectors.adls import AdlsVolume

    volume = AdlsVolume.from_url(url, list_concurrency=concurrency)
    before = volume.requests
    files = sum(1 for e in volume.walk() if not e.is_dir)
    volume.close()
    return files, volume.requests - before


def measure(sizes: Sizes, runs: int = RUNS) -> tuple[int, float, WalkFigures]:
    sys.path.insert(0, str(ROOT))
    from cairn.settings import get_settings
    from connectors.adls import AdlsVolume
    from tests.servers.azurite import ACCOUNT, KEY, Azurite

    tree = ensure_tree(sizes.files, sizes.manifests)
    server = Azurite(fresh_dir(WORK_DIR / "azurite"))
    server.start()
    try:
        service = server.service()
        service.create_container("bench")
        started = time.perf_counter()
        blobs = upload(service.get_container_client("bench"), tree)
        upload_s = time.perf_counter() - started
        print(f"   uploaded {blobs:,} blobs in {upload_s:.1f} s", flush=True)

        os.environ.update(
            {
                "CAIRN_AZURE_ENDPOINT": server.endpoint,
                "CAIRN_AZURE_ACCOUNT_KEY": KEY,
                "REQUESTS_CA_BUNDLE": str(server.ca_file),
            }
        )
        get_settings.cache_clear()
        url = f"abfss://bench@{ACCOUNT}.dfs.core.windows.net/{PREFIX}"
        container = AdlsVolume.from_url(url).container  # the connector's own client settings
        assert server.proc is not None
        figures = measure_walks(
            lambda: plain_walk(container),
            lambda concurrency: volume_walk(url, concurrency),
            server.proc.pid,
            runs,
        )
        print_walks(figures, "adls-walk")
    finally:
        server.stop()
    return blobs, upload_s, figures


def render(blobs: int, upload_s: float, figures: WalkFigures, sizes: Sizes, cmd: str) -> Section:
    section = Section("adls", "adls-walk (Azurite's Blob API)", cmd, sizes)
    section.add(
        f"Volume: {sizes.files:,} files, {sizes.manifests:,} manifests (`benchmarks/gen_tree.py`)"
        f", {blobs:,} blobs uploaded to Azurite (in memory, TLS) in {upload_s:.1f} s by "
        f"{UPLOAD_THREADS} threads. Load average after the walks: {figures.load}.",
        "",
        *table(
            ["benchmark", "measured", "result"],
            walk_rows(
                figures,
                "adls-walk",
                "`AdlsVolume.walk()` (files counted)",
                "plain paginated `list_blobs` with metadata on the connector's client (blobs)",
            ),
        ),
        "- Azurite is one single-threaded Node process: listings at once overlap its answers "
        "with the client's parsing of earlier pages, they cannot make it answer faster.",
    )
    return section


def run(sizes: Sizes, command: str, runs: int = RUNS, write: bool = True) -> bool:
    blobs, upload_s, figures = measure(sizes, runs)
    if write:
        write_section(render(blobs, upload_s, figures, sizes, command))
    return all(t.count == blobs for t in (figures.plain, *figures.walks.values()))


def main(argv: list[str] | None = None) -> int:
    made = parser(__doc__)
    made.add_argument("--print-only", action="store_true", help="leave RESULTS.md alone")
    args = made.parse_args(argv)
    command = command_line("benchmarks.bench_adls", argv)
    return 0 if run(sizes_of(args), command, max(1, args.runs), not args.print_only) else 1


if __name__ == "__main__":
    sys.exit(main())

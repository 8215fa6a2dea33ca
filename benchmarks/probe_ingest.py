"""How much of a bulk load's store work overlaps validation: the catalogue's bulk path
(parse, ``Catalogue.bulk``: validation on the event loop, the store's writer thread) run in
this process on ``bench_ingest``'s batches, into a fresh SQLite file, without HTTP.

Prints the process's CPU per asset, the event loop thread's share of it, the wall time and
the cores used (process CPU over wall). Other processes on the machine stretch the wall time
but not the CPU figures, so compare the CPU per asset, and cores used only within one run.

Run: ``python -m benchmarks.probe_ingest [--assets N] [--runs R] [--batch B]``. The same
assets at two batch sizes give the fixed CPU per request: the difference over the difference
in requests (the crawler pushes batches of 1,000, bench_ingest of 5,000).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from pathlib import Path

import orjson

from benchmarks.bench_ingest import BATCH, encode_batches
from benchmarks.common import WORK_DIR
from benchmarks.gen_tree import make_assets
from cairn.collector import collector_paused
from cairn.settings import Settings
from catalogue_service.backends.sqlite import SQLiteStore
from catalogue_service.service import Catalogue


async def _load(catalogue: Catalogue, bodies: list[bytes]) -> int:
    created = 0
    for body in bodies:
        # Parsed with the collector paused, as the route parses a request's body: parsing
        # outside the pause let it run about a hundred times a batch.
        with collector_paused():
            answer = await catalogue.bulk(orjson.loads(body))
        created += answer.created
    return created


def probe(bodies: list[bytes], assets: int) -> dict[str, float]:
    """One load of ``bodies`` into a fresh store; CPU and wall figures of it."""
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as folder:
        store = SQLiteStore(Path(folder) / "catalogue.db")
        store._open()
        catalogue = Catalogue(store, Settings(data_dir=Path(folder)))
        gc.collect()
        wall, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
        created = asyncio.run(_load(catalogue, bodies))
        loop_cpu = time.thread_time() - loop_cpu
        wall = time.perf_counter() - wall
        # The background checkpoint's CPU counts: closing waits for it.
        store.db.close()
        cpu = time.process_time() - cpu
    if created != assets:
        raise SystemExit(f"created {created} of {assets} assets")
    return {
        "cpu_us": cpu / assets * 1e6,
        "loop_us": loop_cpu / assets * 1e6,
        "other_us": (cpu - loop_cpu) / assets * 1e6,
        "wall_s": wall,
        "rate": assets / wall,
        "cores": cpu / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--batch", type=int, default=BATCH, help="assets per request")
    args = parser.parse_args()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    bodies = encode_batches(make_assets(args.assets), args.batch)
    for _ in range(args.runs):
        f = probe(bodies, args.assets)
        print(
            f"{f['cpu_us']:.1f} us CPU/asset (event loop {f['loop_us']:.1f}, other threads "
            f"{f['other_us']:.1f}); wall {f['wall_s']:.2f} s = {f['rate']:,.0f} assets/s; "
            f"{f['cores']:.2f} cores",
            flush=True,
        )


if __name__ == "__main__":
    main()

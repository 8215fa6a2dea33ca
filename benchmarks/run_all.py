"""Runs every benchmark in order and writes benchmarks/RESULTS.md.

crawl (walk, end to end, recrawl), then ingest and search on one catalogue process per
catalogue backend (sqlite, then mongo on FerretDB + Elasticsearch, started for the run), so the
footprint after the search is that of the process that took the whole ingest; the mixed
writes; OpenLineage ingest beside the asset writes; then the feature
store (featureset-get, featureset-arrow; online-features, materialize and historical
features beside Feast), the UI's search page, HDFS, S3 and the feature store's blob store
(S3 vs local).

``python -m benchmarks.run_all`` runs the full sizes (100,000 files / 10,000 manifests /
100,000 assets) on both backends; ``--backend sqlite|mongo|both`` picks the catalogue
backends of ingest and search (the other benchmarks run on the embedded one); ``--quick`` is
a small smoke run for development.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable

from benchmarks import (
    bench_adls,
    bench_blobs,
    bench_crawl,
    bench_featureset,
    bench_footprint,
    bench_hdfs,
    bench_historical,
    bench_ingest,
    bench_lineage,
    bench_online,
    bench_s3,
    bench_search,
    bench_ui,
    bench_writes,
)
from benchmarks.common import (
    BackendServers,
    Sizes,
    machine,
    parse_sizes,
)
from benchmarks.gen_tree import make_assets


def _step(name: str, fn: Callable[[], bool], failures: list[str]) -> None:
    # One benchmark failing must not hide the figures of the others.
    print(f"== {name}", flush=True)
    started = time.perf_counter()
    try:
        ok = fn()
    except Exception:
        traceback.print_exc()
        failures.append(f"{name}: raised (see the traceback above)")
        return
    print(
        f"   {name}: {'targets met' if ok else 'some targets missed'} "
        f"({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    if not ok:
        failures.append(f"{name}: some targets missed or not run (see RESULTS.md)")


def ingest_and_search(sizes: Sizes, command: str) -> bool:
    """Per backend: ingest into a fresh catalogue, then search it; both sections side by side."""
    assets = make_assets(sizes.assets)
    ingests: dict[str, bench_ingest.IngestFigures] = {}
    searches: dict[str, bench_search.SearchFigures] = {}
    with BackendServers() as servers:
        for backend in sizes.backends:
            figures, catalogue = bench_ingest.measure(
                backend, f"ingest-search-{backend}", servers, assets
            )
            ingests[backend] = figures
            print(f"   ingest on {backend}: {figures.rate:,.0f} assets/s", flush=True)
            if figures.error:
                print(f"   ingest on {backend}: {figures.error}", file=sys.stderr)
            try:
                searches[backend] = bench_search.search_loaded(
                    catalogue, figures, assets, sizes, servers
                )
            finally:
                if catalogue is not None:
                    catalogue.stop()
        bench_ingest.write(ingests, sizes, command)
        searched = bench_search.write(searches, sizes, command, own=False, servers=servers.mongo)
    sqlite = ingests.get("sqlite")
    ingest_ok = sqlite is None or (sqlite.ok and sqlite.rate >= 10_000)
    return ingest_ok and all(f.ok for f in ingests.values()) and searched


def sizes_args(sizes: Sizes) -> list[str]:
    args = ["--files", str(sizes.files), "--manifests", str(sizes.manifests)]
    return [*args, "--quick"] if sizes.quick else args


def main(argv: list[str] | None = None) -> int:
    sizes, command = parse_sizes(__doc__, "benchmarks.run_all", argv, backends=True)
    print(
        f"{command}\n{machine().describe()}\n"
        f"sizes: {sizes.files:,} files, {sizes.manifests:,} manifests, {sizes.assets:,} assets"
        f"{' (quick)' if sizes.quick else ''}; catalogue backends: {', '.join(sizes.backends)}",
        flush=True,
    )
    failures: list[str] = []
    _step("crawl", lambda: bench_crawl.run(sizes, command), failures)
    _step("ingest + search", lambda: ingest_and_search(sizes, command), failures)
    writes = bench_writes.QUICK_REQUESTS if sizes.quick else bench_writes.FULL_REQUESTS
    _step("writes", lambda: bench_writes.run(sizes, command, writes), failures)
    _step("lineage", lambda: bench_lineage.run(sizes.quick, command), failures)
    rows = bench_featureset.QUICK_ROWS if sizes.quick else bench_featureset.FULL_ROWS
    _step("featureset", lambda: bench_featureset.run(sizes, command, rows), failures)
    rows = bench_historical.QUICK_ROWS if sizes.quick else bench_historical.FULL_ROWS
    _step("historical", lambda: bench_historical.run(rows, sizes.quick, command), failures)
    entities = bench_online.QUICK_ENTITIES if sizes.quick else bench_online.FULL_ENTITIES
    _step("online", lambda: bench_online.run(entities, sizes.quick, command, None), failures)
    _step("ui", lambda: bench_ui.run(sizes, command), failures)
    rows = bench_featureset.QUICK_ROWS if sizes.quick else bench_featureset.FULL_ROWS
    _step("footprint", lambda: bench_footprint.run(sizes, command, rows), failures)
    # HDFS at its own sizes (20,000 files / 2,000 manifests; --quick: 2,000 / 200).
    hdfs_sizes = bench_hdfs.sizes_for(["--quick"] if sizes.quick else [])
    _step("hdfs", lambda: bench_hdfs.run(hdfs_sizes, command), failures)
    # S3 on the main sizes (100,000 objects; --quick: 5,000), on the tests' SeaweedFS.
    _step("s3", lambda: bench_s3.run(bench_s3.sizes_for(sizes_args(sizes)), command), failures)
    # ADLS walks on Azurite at HDFS's sizes (its uploads are slower than SeaweedFS's).
    adls_sizes = bench_hdfs.sizes_for(["--quick"] if sizes.quick else [])
    _step("adls", lambda: bench_adls.run(adls_sizes, command), failures)
    # The feature store's blob store: Parquet upload/download MB/s on S3 beside local.
    mib = bench_blobs.QUICK_MB if sizes.quick else bench_blobs.FULL_MB
    _step("blobs", lambda: bench_blobs.run(mib, sizes.quick, command), failures)
    print("results written to benchmarks/RESULTS.md")
    for failure in failures:
        print(f"  {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

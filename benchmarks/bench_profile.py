"""Profile benchmark (DESIGN 7, "profile"): column statistics of rows x 20 columns.

One Parquet file (10 numeric, 10 string columns of low to high cardinality) is profiled by
Cairn (``featurestore_service.metrics.profile.profile_parquet``: counts, nulls, NaN, HLL
distinct, min/max/mean/stddev, KLL quantiles and histogram, top values) and by whylogs
(``why.log(pandas.DataFrame)``, its standard profile: counts, types, HLL distinct, KLL
quantiles/histogram, frequent items), each in a fresh process pinned to one core
(``taskset -c 0``), Arrow limited to one thread. Reported: wall time, CPU time and peak RSS
(``ru_maxrss``, interpreter and imports included), best of ``--runs``.

whylogs runs in its own venv (``benchmarks/.work/whylogs-venv``, created when missing with
``pip install whylogs "pandas<2.3" "pyarrow<18" "numpy<2"``: whylogs 1.6 still uses NumPy 1
names), so Cairn's environment never carries it. Its time includes reading the file into
pandas (its input); that read is also reported on its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.common import (
    PYTHON,
    ROOT,
    WORK_DIR,
    CatalogueProcess,
    Section,
    Server,
    add_size_args,
    bench_env,
    command_line,
    ensure_tree,
    free_port,
    fresh_dir,
    sizes_from,
    table,
    verdict,
    write_section,
)

FULL_ROWS, QUICK_ROWS = 1_000_000, 100_000
WHYLOGS_VENV = WORK_DIR / "whylogs-venv"
TARGET_S = 2.0
TARGET_RATIO = 3.0

CAIRN_CHILD = """
import json, resource, sys, time
import pyarrow as pa
pa.set_cpu_count(1); pa.set_io_thread_count(1)
from featurestore_service.metrics.profile import profile_parquet
start, cpu = time.perf_counter(), time.process_time()
profile = profile_parquet(sys.argv[1])
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
assert profile["rows"] == int(sys.argv[2]), profile["rows"]
print(json.dumps({"wall": wall, "cpu": cpu,
                  "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

WHYLOGS_CHILD = """
import json, resource, sys, time
import pyarrow as pa
pa.set_cpu_count(1); pa.set_io_thread_count(1)
import pandas as pd
import whylogs as why
start, cpu = time.perf_counter(), time.process_time()
frame = pd.read_parquet(sys.argv[1])
read = time.perf_counter() - start
view = why.log(frame).view()
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
assert len(view.get_columns()) == 20
print(json.dumps({"wall": wall, "cpu": cpu, "read": read,
                  "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def write_file(path: Path, rows: int) -> None:
    rng = np.random.default_rng(42)
    columns: dict[str, pa.Array] = {}
    for i in range(5):
        values = rng.normal(i * 10, 1 + i, rows)
        values[rng.random(rows) < 0.05] = np.nan
        columns[f"f{i}"] = pa.array(values, mask=rng.random(rows) < 0.02)
        columns[f"i{i}"] = pa.array(rng.integers(0, 10 ** (i + 2), rows))
    for i, distinct in enumerate((10, 100, 1_000, 10_000, 100, 1_000, 50, 5, 20_000, 200)):
        codes = rng.integers(0, distinct, rows)
        words = pa.array([f"value-{i}-{n}" for n in range(distinct)])
        columns[f"s{i}"] = pa.DictionaryArray.from_arrays(
            pa.array(codes), words
        ).dictionary_decode()
    pq.write_table(pa.table(columns), path, row_group_size=128 * 1024)


def ensure_whylogs() -> tuple[Path, str]:
    python = WHYLOGS_VENV / "bin" / "python"
    probe = [str(python), "-c", "import whylogs; print(whylogs.__version__)"]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True)
        if found.returncode == 0:
            return python, found.stdout.strip()
    base = getattr(sys, "_base_executable", PYTHON)
    subprocess.run([base, "-m", "venv", "--clear", str(WHYLOGS_VENV)], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "whylogs",
            "pandas<2.3",
            "pyarrow<18",
            "numpy<2",
        ],
        check=True,
    )
    found = subprocess.run(probe, capture_output=True, text=True, check=True)
    return python, found.stdout.strip()


def run_child(python: str, code: str, *args: str) -> dict[str, float]:
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    done = subprocess.run(
        [*pin, python, "-c", code, *args], capture_output=True, text=True, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def best(python: str, code: str, runs: int, *args: str) -> dict[str, float]:
    results = [run_child(python, code, *args) for _ in range(runs)]
    return min(results, key=lambda r: r["wall"])


def crawl_seconds(root: Path, catalogue: str, featurestore: str | None) -> tuple[float, int]:
    """Wall time of one cold ``cairn crawl`` (with ``--profile`` when a metric store is given)
    and how many assets were profiled."""
    argv = [PYTHON, "-m", "cairn", "crawl", str(root), "--catalogue", catalogue, "--json"]
    env = bench_env(fresh_dir(WORK_DIR / "data" / "profile-crawler"))
    if featurestore is not None:
        argv.append("--profile")
        env["CAIRN_FEATURESTORE_URL"] = featurestore
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=3600)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 2):
        raise RuntimeError(done.stderr[-2000:])
    report = json.loads(done.stdout)
    return wall, int(report.get("manifests_found", 0))


def crawl_figures(files: int, manifests: int) -> list[str]:
    """crawl-e2e with profiling off and on, same generated volume, fresh catalogues."""
    root = ensure_tree(files, manifests)
    with CatalogueProcess("profile-off") as catalogue:
        off, found = crawl_seconds(root, catalogue.url, None)
    data = fresh_dir(WORK_DIR / "data" / "profile-metrics")
    port = free_port()
    argv = [PYTHON, "-m", "cairn", "serve", "featurestore", "--port", str(port)]
    with (
        CatalogueProcess("profile-on") as catalogue,
        Server("featurestore-profile", argv, port, bench_env(data)) as store,
    ):
        on, _ = crawl_seconds(root, catalogue.url, store.url)
        profiled = httpx.get(f"{store.url}/metrics", timeout=30).status_code == 200
    assert profiled
    return [
        f"crawl-e2e of the generated volume ({files:,} files, {found:,} manifests, each with a "
        "small Parquet or CSV file), cold, profiling off and on (`cairn crawl --profile`, metric "
        "store in a feature-store process):",
        "",
        *table(
            ["crawl", "wall", "manifests/s"],
            [
                ["profiling off", f"{off:.2f} s", f"{found / off:,.0f}"],
                ["profiling on", f"{on:.2f} s", f"{found / on:,.0f}"],
            ],
        ),
        f"Profiling costs {on / off:.1f}x the crawl's time here: each changed asset is one GET "
        "and one PUT to the metric store and one read of its data file, in the crawler's own "
        "process (not yet spread over the parsing pool).",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add_size_args(parser)
    parser.add_argument("--rows", type=int, help=f"rows (default {FULL_ROWS:,}; --quick 100k)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each tool (best is kept)")
    parser.add_argument(
        "--crawl-manifests",
        type=int,
        default=0,
        help="also time a cold crawl of a generated volume with this many manifests, "
        "profiling off and on (0: skip)",
    )
    args = parser.parse_args(argv)
    sizes = sizes_from(args)
    rows = args.rows or (QUICK_ROWS if sizes.quick else FULL_ROWS)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    path = WORK_DIR / f"profile-{rows}.parquet"
    if not path.exists():
        write_file(path, rows)
    cairn = best(PYTHON, CAIRN_CHILD, args.runs, str(path), str(rows))
    whylogs_python, whylogs_version = ensure_whylogs()
    why = best(str(whylogs_python), WHYLOGS_CHILD, args.runs, str(path))
    ratio = why["wall"] / cairn["wall"]
    full = rows == FULL_ROWS
    section = Section(
        "profile", "Profile (metric store)", command_line("benchmarks.bench_profile", argv), sizes
    )
    section.add(
        f"{rows:,} rows x 20 columns (10 numeric with NaN and nulls, 10 strings of 5 to 20,000 "
        f"distinct values), Parquet {path.stat().st_size / 2**20:.1f} MiB; each tool in a fresh "
        f"process on one core (`taskset -c 0`, Arrow one thread), best of {args.runs}.",
        "",
        *table(
            ["tool", "wall", "CPU", "peak RSS"],
            [
                [
                    "Cairn",
                    f"{cairn['wall']:.2f} s",
                    f"{cairn['cpu']:.2f} s",
                    f"{cairn['rss_kb'] / 1024:.0f} MiB",
                ],
                [
                    f"whylogs {whylogs_version} (read into pandas: {why['read']:.2f} s)",
                    f"{why['wall']:.2f} s",
                    f"{why['cpu']:.2f} s",
                    f"{why['rss_kb'] / 1024:.0f} MiB",
                ],
            ],
        ),
        *table(
            ["target", "measured", "met"],
            [
                [
                    f"<= {TARGET_S:.0f} s on one core at 1M rows",
                    f"{cairn['wall']:.2f} s",
                    verdict(cairn["wall"] <= TARGET_S) if full else "n/a (not 1M rows)",
                ],
                [
                    f">= {TARGET_RATIO:.0f}x faster than whylogs",
                    f"{ratio:.1f}x",
                    verdict(ratio >= TARGET_RATIO),
                ],
            ],
        ),
    )
    if args.crawl_manifests:
        section.add(*crawl_figures(args.crawl_manifests * 10, args.crawl_manifests))
    write_section(section)
    print(f"profile: Cairn {cairn['wall']:.2f} s, whylogs {why['wall']:.2f} s ({ratio:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

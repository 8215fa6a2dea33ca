"""Walk timings shared by bench_s3 and bench_adls: a flat-listing volume's ``walk()`` with 1, 4
and 16 listings at once (``CAIRN_CRAWL_LIST_CONCURRENCY``) beside a plain paginated listing
with the same client settings, in the same run.

Each run is timed in wall time, in this process's CPU (every thread: the listings' XML
parsing is client CPU) and in the server process's CPU, and the runs of the walks are
interleaved with the plain listing's, so load from other work on the machine falls on all of
them alike; the load average is read at the end.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmarks.common import (
    FULL_FILES,
    FULL_MANIFESTS,
    QUICK_FILES,
    QUICK_MANIFESTS,
    Sizes,
    add_size_args,
    load_average,
    median,
    own_cpu_seconds,
    process_cpu_seconds,
)

CONCURRENCIES = (1, 4, 16)
RUNS = 3

# (files or objects, requests) of one walk or listing
Counted = tuple[int, int]


@dataclass(slots=True)
class Timing:
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    server_cpu_s: list[float] = field(default_factory=list)
    count: int = 0
    requests: int = 0

    @property
    def wall(self) -> float:
        return median(self.wall_s)

    def describe(self) -> str:
        return (
            f"{self.wall:.3f} s wall, {median(self.cpu_s):.3f} s client CPU, "
            f"{median(self.server_cpu_s):.3f} s server CPU; {self.count:,} in "
            f"{self.requests:,} requests ({self.count / self.wall:,.0f}/s)"
        )


@dataclass(slots=True)
class WalkFigures:
    plain: Timing = field(default_factory=Timing)
    walks: dict[int, Timing] = field(default_factory=dict)
    load: str = ""


def _timed(fn: Callable[[], Counted], server_pid: int, timing: Timing) -> None:
    cpu, server = own_cpu_seconds(), process_cpu_seconds(server_pid)
    started = time.perf_counter()
    timing.count, timing.requests = fn()
    timing.wall_s.append(time.perf_counter() - started)
    timing.cpu_s.append(own_cpu_seconds() - cpu)
    timing.server_cpu_s.append(process_cpu_seconds(server_pid) - server)


def measure_walks(
    plain: Callable[[], Counted],
    walk: Callable[[int], Counted],
    server_pid: int,
    runs: int,
    concurrencies: Sequence[int] = CONCURRENCIES,
) -> WalkFigures:
    """``plain()`` and ``walk(concurrency)`` once each untimed, then ``runs`` timed rounds."""
    figures = WalkFigures(walks={n: Timing() for n in concurrencies})
    plain()
    for n in concurrencies:
        walk(n)
    for _ in range(runs):
        _timed(plain, server_pid, figures.plain)
        for n in concurrencies:
            _timed(functools.partial(walk, n), server_pid, figures.walks[n])
    figures.load = load_average()
    return figures


def walk_rows(figures: WalkFigures, name: str, walk: str, plain: str) -> list[list[str]]:
    """Table rows (benchmark, measured, result): one per concurrency, then the plain listing."""
    base = figures.plain.wall
    one = figures.walks[min(figures.walks)].wall
    rows = []
    for n, timing in figures.walks.items():
        rows.append(
            [
                f"{name} ({n} at once)",
                f"{walk}, median of {len(timing.wall_s)}: {timing.describe()}",
                f"{timing.wall / base:.2f}x the plain listing's wall time; "
                f"{one / timing.wall:.2f}x the speed of {min(figures.walks)} at once",
            ]
        )
    rows.append([f"{name} (plain)", f"{plain}: {figures.plain.describe()}", "reference"])
    return rows


def print_walks(figures: WalkFigures, name: str) -> None:
    print(f"   {name}: plain listing {figures.plain.describe()}", flush=True)
    for n, timing in figures.walks.items():
        print(f"   {name}: walk, {n:>2} at once: {timing.describe()}", flush=True)
        print(f"      runs (s wall): {', '.join(f'{t:.3f}' for t in timing.wall_s)}", flush=True)
    print(f"   load average after the runs: {figures.load}", flush=True)


def parser(doc: str) -> argparse.ArgumentParser:
    """The size options and ``--runs`` of bench_s3 and bench_adls."""
    made = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_size_args(made)
    made.add_argument(
        "--runs", type=int, default=RUNS, help=f"timed runs of each walk (default {RUNS})"
    )
    return made


def sizes_of(
    args: argparse.Namespace,
    full: tuple[int, int] = (FULL_FILES, FULL_MANIFESTS),
    quick_sizes: tuple[int, int] = (QUICK_FILES, QUICK_MANIFESTS),
) -> Sizes:
    """The volume's size from ``--files``/``--manifests``, else from the defaults (files,
    manifests) of a full or a ``--quick`` run."""
    quick = bool(args.quick)
    files, manifests = quick_sizes if quick else full
    return Sizes(
        files=args.files or files,
        manifests=args.manifests or manifests,
        assets=0,
        quick=quick,
    )

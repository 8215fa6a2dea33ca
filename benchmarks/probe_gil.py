"""Why the catalogue's SQLite writes do not get a core of their own beside request
validation: one process, one GIL.

SQLite steps a statement without the GIL, so in principle a writer thread could run its
statements on one core while the event loop validates the next chunk on the other. This probe
loads the same rows into an FTS5 table from a thread, once alone and once beside a thread busy
with Python (what validation is), at several GIL switch intervals, with ``executemany`` (one
step per row, as the store writes) and with multi-row INSERTs (one step per 500 rows).

After every step the writer needs the GIL back, and a thread busy with Python hands it over
only when the switch interval (5 ms by default) runs out. So each step waits for it: one
step per row crawls, and even 500 rows per step lose most of their overlap. A shorter
interval helps the multi-row form here. In the store itself, a prototype with the writer's
statements on a thread of their own (and a 0.2 ms interval) reached 1.24 cores: the writer's
own Python, the commit and the tag counts after the last chunk still run one after the other.

Run: ``python -m benchmarks.probe_gil [--rows N]``. Prints wall, writer CPU and cores per case.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from itertools import chain
from pathlib import Path

from benchmarks.common import WORK_DIR

ROWS_PER_STATEMENT = 500
INTERVALS_S = (0.005, 0.001, 0.0002)


def _rows(n: int) -> list[tuple[str, str]]:
    return [(f"orders_{i} daily sales{i % 97}", f"region {i % 13} revenue {i}") for i in range(n)]


def _one_per_row(conn: sqlite3.Connection, rows: list[tuple[str, str]]) -> None:
    conn.executemany("INSERT INTO f(a, b) VALUES (?, ?)", rows)


def _many_per_statement(conn: sqlite3.Connection, rows: list[tuple[str, str]]) -> None:
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        part = rows[start : start + ROWS_PER_STATEMENT]
        conn.execute(
            "INSERT INTO f(a, b) VALUES " + ", ".join(["(?, ?)"] * len(part)),
            list(chain.from_iterable(part)),
        )


def _spin(stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1


def _case(
    conn: sqlite3.Connection,
    load: Callable[[sqlite3.Connection, list[tuple[str, str]]], None],
    rows: list[tuple[str, str]],
    busy: bool,
) -> tuple[float, float, float]:
    """(wall s, writer CPU s, cores) of one load in a transaction, in a thread."""
    conn.execute("DELETE FROM f")
    writer_cpu = 0.0

    def write() -> None:
        nonlocal writer_cpu
        t = time.thread_time()
        conn.execute("BEGIN")
        load(conn, rows)
        conn.execute("COMMIT")
        writer_cpu = time.thread_time() - t

    stop = threading.Event()
    spinner = threading.Thread(target=_spin, args=(stop,))
    writer = threading.Thread(target=write)
    wall, cpu = time.perf_counter(), time.process_time()
    writer.start()
    if busy:
        spinner.start()
    writer.join()
    stop.set()
    if busy:
        spinner.join()
    wall = time.perf_counter() - wall
    return wall, writer_cpu, (time.process_time() - cpu) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    rows = _rows(args.rows)
    default = sys.getswitchinterval()
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as folder:
        conn = sqlite3.connect(
            Path(folder) / "gil.db", isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        # Without fsyncs: the wait for the disk would read as idle cores, not as the GIL.
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("CREATE VIRTUAL TABLE f USING fts5(a, b)")
        try:
            for name, load in (
                ("executemany, one step per row", _one_per_row),
                (f"multi-row INSERT, {ROWS_PER_STATEMENT} rows per step", _many_per_statement),
            ):
                wall, cpu, cores = _case(conn, load, rows, busy=False)
                print(f"{name}, alone: {wall:.2f} s wall, writer {cpu:.2f} s CPU", flush=True)
                for interval in INTERVALS_S:
                    sys.setswitchinterval(interval)
                    wall, cpu, cores = _case(conn, load, rows, busy=True)
                    print(
                        f"  beside a busy Python thread, switch interval {interval * 1000:g} ms:"
                        f" {wall:.2f} s wall, writer {cpu:.2f} s CPU, {cores:.2f} cores",
                        flush=True,
                    )
                sys.setswitchinterval(default)
        finally:
            sys.setswitchinterval(default)
            conn.close()


if __name__ == "__main__":
    main()

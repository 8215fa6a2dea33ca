"""cairn.memory: freed heap memory goes back to the system while a service runs."""

from __future__ import annotations

import asyncio
import ctypes
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cairn import memory
from cairn import sqlite as cairn_sqlite
from tests.servers.processes import patient

# In a child process: the test process's own heap (pytest, other tests) would blur the figures.
SCRIPT = textwrap.dedent(
    """
    import asyncio, re, threading
    from cairn.memory import free_heap_bytes, limit_arenas, trim_while_running

    def rss_mib():
        status = open("/proc/self/status").read()
        return int(re.search(r"VmRSS:\\s+(\\d+)", status).group(1)) // 1024

    limit_arenas()
    kept = []

    def work():
        # 200 MB of small blocks, one in 50 kept: the rest is free but stays in the heap.
        blocks = [bytes(2000) for _ in range(100_000)]
        kept.extend(blocks[::50])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    before = rss_mib()
    print("free", free_heap_bytes() // 2**20, "before", before, flush=True)

    async def main():
        trimming = asyncio.create_task(trim_while_running(every=0.05))
        for _ in range(200):
            await asyncio.sleep(0.05)
            if rss_mib() < before - 100:
                break
        trimming.cancel()
        print("after", rss_mib(), "kept", len(kept), flush=True)

    asyncio.run(main())
    """
)


def test_trim_while_running_hands_freed_heap_memory_back() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=patient(60)
    )
    assert result.returncode == 0, result.stderr
    numbers = dict(re.findall(r"(\w+) (\d+)", result.stdout))
    assert int(numbers["free"]) > 100, result.stdout  # the heap did hold the freed blocks
    assert int(numbers["after"]) < int(numbers["before"]) - 100, result.stdout
    assert numbers["kept"] == "2000"  # what was still in use stayed


def test_trim_while_running_stops_when_cancelled() -> None:
    from cairn.memory import trim_while_running

    async def run() -> bool:
        task = asyncio.create_task(trim_while_running(every=0.01))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return task.done()

    assert asyncio.run(run())


def _sqlite_memory_used() -> int:
    """Bytes the SQLite library behind the sqlite3 module has allocated (caches included)."""
    import _sqlite3

    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


def test_sqlite_page_caches_go_back_once_writes_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write burst fills the writer's page cache and reads fill the readers'; once writes
    have stopped for QUIET_SECONDS the caches are handed back, once per burst, and the file
    still reads and writes as before."""
    db = cairn_sqlite.SQLiteFile(tmp_path / "c.db")
    db.open("CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)", 1)
    assert db in set(memory._HOLDERS)
    with db.transaction() as conn:
        conn.executemany("INSERT INTO t(v) VALUES (?)", (("x" * 500,) for _ in range(20_000)))
    assert asyncio.run(db.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0])) == (
        20_000
    )
    # Just written: the burst may go on, nothing is released yet.
    assert db.release_idle_memory() is False
    monkeypatch.setattr(cairn_sqlite, "QUIET_SECONDS", 0.0)
    filled = _sqlite_memory_used()
    assert memory.release_idle() is True
    assert _sqlite_memory_used() < filled - 4 * 2**20
    # Nothing written since: nothing to release again.
    assert db.release_idle_memory() is False
    with db.transaction() as conn:
        conn.execute("UPDATE t SET v = 'y' WHERE k = 7")
    assert db.release_idle_memory() is True
    assert asyncio.run(
        db.read(lambda c: c.execute("SELECT v FROM t WHERE k = 7").fetchone()[0])
    ) == ("y")
    db.close()

"""Many narrow rows into a table with few statements: ``INSERT ... VALUES (...), (...)``.

``executemany`` steps and resets its statement once per row, taking the GIL back after each
step; a statement of many rows is bound in one go and stepped once. For the side tables'
rows of a bulk write (two or three short values each) that cost about a quarter less CPU per
row. Not for wide rows nor FTS5: a many-row statement cost more there (bench_ingest, the
assets' and FTS rows), so those stay with ``executemany``.

Rows go in groups of ``GROUP`` and the rest in halving groups (128, 64, ..., 1), so a table
needs at most nine statement texts, which the connection's statement cache keeps compiled.
The rows are inserted in the order given, as ``executemany`` inserts them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import cache
from itertools import chain
from typing import Any

__all__ = ["GROUP", "insert_rows"]

# Rows per statement: their parameters stay far below SQLite's limit of 32,766.
GROUP = 256


@cache
def _statement(head: str, width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * rows)}"


def insert_rows(
    conn: sqlite3.Connection,
    head: str,
    rows: Sequence[Sequence[Any]],
    width: int,
) -> None:
    """``conn.executemany(head + " VALUES (?, ...)", rows)`` in few statements.

    ``head``: the statement up to VALUES (``INSERT OR IGNORE INTO t(a, b)``); ``width``: the
    values per row.
    """
    start, total = 0, len(rows)
    size = GROUP
    while start < total:
        while total - start < size:
            size //= 2
        part = rows[start : start + size]
        conn.execute(_statement(head, width, size), list(chain.from_iterable(part)))
        start += size

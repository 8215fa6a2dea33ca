"""``insert_rows`` (many rows per statement) leaves a table as ``executemany`` would."""

from __future__ import annotations

import sqlite3

import pytest

from catalogue_service.backends.rows import GROUP, insert_rows


def _table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    # A rowid table shows the order rows went in; the unique key, what OR IGNORE drops.
    conn.execute("CREATE TABLE t (k TEXT NOT NULL, seq INTEGER NOT NULL, UNIQUE (k, seq))")
    return conn


@pytest.mark.parametrize("count", [0, 1, 2, 7, GROUP - 1, GROUP, GROUP + 1, 3 * GROUP + 77])
def test_same_rows_in_the_same_order_as_executemany(count: int) -> None:
    # Every fifth row repeats an earlier one: ignored by both, within a statement or across.
    rows = [(f"tag-{i % 13}", i if i % 5 else max(0, i - 5)) for i in range(count)]
    many, grouped = _table(), _table()
    many.executemany("INSERT OR IGNORE INTO t(k, seq) VALUES (?, ?)", rows)
    insert_rows(grouped, "INSERT OR IGNORE INTO t(k, seq)", rows, 2)
    query = "SELECT rowid, k, seq FROM t ORDER BY rowid"
    assert grouped.execute(query).fetchall() == many.execute(query).fetchall()


class _Recording:
    """A connection's ``execute``, noting each statement's text."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.texts: set[str] = set()

    def execute(self, sql: str, params: list[object]) -> sqlite3.Cursor:
        self.texts.add(sql)
        return self.conn.execute(sql, params)


def test_few_statement_texts() -> None:
    """Any number of rows takes groups of GROUP and halving groups: a handful of texts, so
    the connection's statement cache keeps them compiled."""
    recording = _Recording(_table())
    for count in range(1, 2 * GROUP + 3):
        rows = [("a", i) for i in range(count)]
        insert_rows(recording, "INSERT OR IGNORE INTO t(k, seq)", rows, 2)  # type: ignore[arg-type]
    assert len(recording.texts) == GROUP.bit_length()

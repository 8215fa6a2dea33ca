"""After big writes pause, the SQLite catalogue merges its full-text index's segments in a
background thread, in short transactions of their own: searches answer exactly as before, a
write meanwhile is not lost, and closing the store stops the work."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

import cairn.sqlite
import catalogue_service.service as service
from cairn.errors import Unavailable
from cairn.settings import Settings
from catalogue_service.backends import sqlite as backend
from catalogue_service.backends.base import SearchQuery
from catalogue_service.backends.sqlite import SQLiteStore
from catalogue_service.service import Catalogue

WORDS = ["alpha", "beta", "gamma", "delta", "omega"]


def _items(batch: int, count: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"t{batch}_{i}",
            "type": "dataset",
            "description": f"{WORDS[i % 5]} {WORDS[(i + batch) % 5]} row {i}",
            "tags": [WORDS[(i * 3) % 5]],
        }
        for i in range(count)
    ]


def _merge_work_left(path: Path) -> bool:
    """Whether a merge step would still find segments to merge (it writes, so on a copy)."""
    copy = path.with_name("copy.db")
    source = sqlite3.connect(path)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    try:
        return backend._merge_fts_segments(target)
    finally:
        target.close()
        copy.unlink()


def _search(store: SQLiteStore, q: str) -> tuple[int, list[str]]:
    hits = asyncio.run(store.search(SearchQuery(q=q, limit=50, facets=True)))
    return hits.total, [orjson.loads(d)["name"] for d in hits.docs]


def _bulk(catalogue: Catalogue, items: list[dict[str, Any]]) -> None:
    assert asyncio.run(catalogue.bulk(items)).created == len(items)


def _loaded_three_times(path: Path) -> tuple[SQLiteStore, Catalogue]:
    """A store at ``path`` after three bulk requests of 300 assets (900 in all)."""
    store = SQLiteStore(path)
    asyncio.run(store.open())
    catalogue = Catalogue(store, Settings())
    for batch in range(3):
        _bulk(catalogue, _items(batch, 300))
    return store, catalogue


def test_big_writes_leave_merge_work_to_a_background_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "WRITE_CHUNK", 100)  # 300 items: a big, chunked request
    monkeypatch.setattr(cairn.sqlite, "UPKEEP_QUIET_S", 3600.0)
    path = tmp_path / "c.db"
    store, _ = _loaded_three_times(path)
    try:
        # No pause yet: each request's commit left a segment of its own.
        assert not store.db.upkeep_idle.is_set()
        assert _merge_work_left(path)
        before = {q: _search(store, q) for q in ("alpha", "gam", "row 7", "delta omega")}
        monkeypatch.setattr(cairn.sqlite, "UPKEEP_QUIET_S", 0.05)
        store.db._upkeep.wake()  # type: ignore[union-attr]  # re-reads the shorter pause
        assert store.db.upkeep_idle.wait(30)
        assert not _merge_work_left(path)
        assert {q: _search(store, q) for q in before} == before
        assert before["alpha"][0] == 300
    finally:
        asyncio.run(store.close())


def test_a_write_after_big_ones_is_kept_and_close_stops_the_upkeep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "WRITE_CHUNK", 100)
    monkeypatch.setattr(cairn.sqlite, "UPKEEP_QUIET_S", 0.05)
    monkeypatch.setattr(backend, "FTS_MERGE_PAGES", 1)  # many small steps
    path = tmp_path / "c.db"
    store, catalogue = _loaded_three_times(path)
    time.sleep(0.1)  # past the pause: the upkeep's one-page steps are likely under way
    _bulk(catalogue, [{"name": "late", "type": "dataset", "description": "alpha late"}])
    asyncio.run(store.close())
    assert store.db.upkeep_idle.is_set()
    reopened = SQLiteStore(path)
    asyncio.run(reopened.open())
    try:
        total, names = _search(reopened, "late")
        assert (total, names) == (1, ["late"])
        assert _search(reopened, "alpha")[0] == 301
    finally:
        asyncio.run(reopened.close())


def test_files_get_the_merge_settings_once(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    for _ in range(2):
        store = SQLiteStore(path)
        asyncio.run(store.open())
        asyncio.run(store.close())
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT k, v FROM assets_fts_config WHERE k IN ('usermerge', 'automerge') ORDER BY k"
    ).fetchall()
    conn.close()
    assert rows == [("automerge", backend.FTS_AUTOMERGE), ("usermerge", backend.FTS_USERMERGE)]


def test_bulk_writes_merge_nothing_themselves_and_small_ones_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk write sets FTS5's automerge to BULK_FTS_AUTOMERGE for itself (the upkeep merges
    after it); the next small write sets it back, so small writes still merge as they go."""
    monkeypatch.setattr(service, "WRITE_CHUNK", 100)
    monkeypatch.setattr(cairn.sqlite, "UPKEEP_QUIET_S", 3600.0)
    path = tmp_path / "c.db"

    def automerge() -> int:
        conn = sqlite3.connect(path)
        try:
            (value,) = conn.execute(
                "SELECT v FROM assets_fts_config WHERE k = 'automerge'"
            ).fetchone()
        finally:
            conn.close()
        return int(value)

    store = SQLiteStore(path)
    asyncio.run(store.open())
    catalogue = Catalogue(store, Settings())
    try:
        assert automerge() == backend.FTS_AUTOMERGE
        _bulk(catalogue, _items(0, 300))  # a big, chunked request
        assert automerge() == backend.BULK_FTS_AUTOMERGE == 0
        _bulk(catalogue, _items(1, 1))  # one item: not a big write
        assert automerge() == backend.FTS_AUTOMERGE
        for batch in range(2, 8):
            _bulk(catalogue, _items(batch, 1))
        written = [_items(0, 300), *(_items(b, 1) for b in range(1, 8))]
        alpha = sum("alpha" in item["description"] for items in written for item in items)
        assert _search(store, "alpha")[0] == alpha
    finally:
        asyncio.run(store.close())
    # A file left at the bulk setting gets the default back when it is opened.
    store = SQLiteStore(path)
    asyncio.run(store.open())
    catalogue = Catalogue(store, Settings())
    try:
        _bulk(catalogue, _items(9, 300))
        assert automerge() == 0
    finally:
        asyncio.run(store.close())
    reopened = SQLiteStore(path)
    asyncio.run(reopened.open())
    asyncio.run(reopened.close())
    assert automerge() == backend.FTS_AUTOMERGE


def test_reindex_leaves_the_index_merged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "WRITE_CHUNK", 100)
    monkeypatch.setattr(cairn.sqlite, "UPKEEP_QUIET_S", 3600.0)  # only reindex's own merge
    monkeypatch.setattr(backend, "REINDEX_BATCH", 50)
    path = tmp_path / "c.db"
    store, _ = _loaded_three_times(path)
    try:
        before = {q: _search(store, q) for q in ("alpha", "gam", "row 7")}
        assert asyncio.run(store.reindex(lambda done, total: None)) == 900
        assert not _merge_work_left(path)
        assert {q: _search(store, q) for q in before} == before
    finally:
        asyncio.run(store.close())


def test_closing_during_a_reindex_stops_it_and_keeps_the_old_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C during `cairn reindex` cancels the command's task, whose finally closes the store
    # while the reindex still runs in a worker thread: the writer connection was closed under
    # it (SIGSEGV when inside a statement). The hook below holds the reindex between two
    # batches, inside its transaction, while close() runs; close() must wait for the write to
    # stop, and the rebuild must be rolled back.
    monkeypatch.setattr(cairn.sqlite, "UPKEEP_QUIET_S", 3600.0)
    monkeypatch.setattr(backend, "REINDEX_BATCH", 50)
    path = tmp_path / "c.db"
    store, _ = _loaded_three_times(path)
    before = {q: _search(store, q) for q in ("alpha", "gam", "row 7")}
    inside = threading.Event()
    failed: list[BaseException] = []

    def progress(done: int, total: int) -> None:
        if not inside.is_set():
            inside.set()
            time.sleep(0.5)  # close() is called meanwhile

    def reindex() -> None:
        try:
            store._reindex_sync(progress)
        except BaseException as exc:
            failed.append(exc)

    worker = threading.Thread(target=reindex)
    worker.start()
    assert inside.wait(30)
    asyncio.run(store.close())
    closed_while_running = worker.is_alive()
    worker.join(30)
    assert not closed_while_running, "close() returned while the reindex was still writing"
    assert len(failed) == 1 and isinstance(failed[0], Unavailable), failed
    reopened = SQLiteStore(path)
    asyncio.run(reopened.open())
    try:
        assert {q: _search(reopened, q) for q in before} == before
    finally:
        asyncio.run(reopened.close())


def _fts_layout(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'assets_fts'").fetchone()
        return str(sql)
    finally:
        conn.close()


def test_reindex_gives_an_older_file_the_current_index_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A file made with prefix indexes keeps them when opened (its searches answer the same),
    # and `cairn reindex` rebuilds the table as FTS_TABLE says, without them.
    tokenize = 'remove_diacritics 2"'
    older = backend.FTS_TABLE.replace(tokenize, tokenize + ", prefix = '2 3'")
    assert older != backend.FTS_TABLE
    monkeypatch.setattr(backend, "FTS_TABLE", older)
    path = tmp_path / "c.db"
    store, _ = _loaded_three_times(path)
    asyncio.run(store.close())
    monkeypatch.undo()
    store = SQLiteStore(path)
    with caplog.at_level(logging.INFO, logger="cairn.catalogue.sqlite"):
        asyncio.run(store.open())
    # Opening says what the older index costs and how to rebuild it.
    assert "`cairn reindex` rebuilds it" in caplog.text
    try:
        assert "'2 3'" in _fts_layout(path)
        queries = ("alpha", "gam", "ga", "row 7", "t1_2")
        before = {q: _search(store, q) for q in queries}
        assert before["ga"][0] > 0 and before["t1_2"][0] > 0
        assert asyncio.run(store.reindex(lambda done, total: None)) == 900
        assert "prefix" not in _fts_layout(path)
        assert {q: _search(store, q) for q in queries} == before
        # The rebuilt table takes writes and finds them, with the merge settings of a new file.
        _bulk(Catalogue(store, Settings()), _items(7, 5))
        assert _search(store, "t7_3")[1][0] == "t7_3"
        conn = sqlite3.connect(path)
        settings = dict(conn.execute("SELECT k, v FROM assets_fts_config").fetchall())
        conn.close()
        assert settings["usermerge"] == backend.FTS_USERMERGE
    finally:
        asyncio.run(store.close())
    caplog.clear()
    reopened = SQLiteStore(path)
    with caplog.at_level(logging.INFO, logger="cairn.catalogue.sqlite"):
        asyncio.run(reopened.open())
    asyncio.run(reopened.close())
    assert "cairn reindex" not in caplog.text


def test_a_failed_upkeep_step_is_tried_again_after_the_next_big_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cairn.sqlite, "UPKEEP_QUIET_S", 0.01)
    calls: list[int] = []

    def step(conn: sqlite3.Connection) -> bool:
        calls.append(len(calls))
        if len(calls) == 1:
            raise cairn.sqlite.InsufficientStorage("the disk is full")
        conn.execute("INSERT INTO t VALUES (?)", (len(calls),))
        return False

    db = cairn.sqlite.SQLiteFile(tmp_path / "u.db", upkeep=step)
    db.open("CREATE TABLE IF NOT EXISTS t (x INTEGER);", 1)
    try:
        for _ in range(2):
            with db.transaction(big=True) as conn:
                conn.execute("INSERT INTO t VALUES (0)")
            assert db.upkeep_idle.wait(30)
        assert calls == [0, 1]
        assert db.read_here(lambda c: c.execute("SELECT x FROM t").fetchall()) == [(0,), (0,), (2,)]
    finally:
        db.close()

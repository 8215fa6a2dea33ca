"""A big SQLite bulk write is validated and stored chunk by chunk, the two overlapping
(``WRITE_CHUNK`` items at a time, one transaction): its answer and everything it stores equal
those of the same request written in one piece, ids and names are checked across chunks, and a
failure while a later chunk is prepared leaves nothing of the earlier ones. The collector pause
around bulk requests nests."""

from __future__ import annotations

import asyncio
import gc
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

import cairn.sqlite
import catalogue_service.service as service
from cairn.collector import collector_paused
from cairn.models import check_labels, searchable_labels
from cairn.settings import Settings
from catalogue_service.backends.base import PreparedWrite
from catalogue_service.backends.sqlite import (
    BIG_WRITE_ITEMS,
    BULK_FTS_AUTOMERGE,
    FTS_AUTOMERGE,
    SCHEMA_VERSION,
    SQLiteStore,
)
from catalogue_service.service import Catalogue
from catalogue_service.spelling import sqlite as spelling

CHUNK = 4

TABLES = {
    "assets": "SELECT seq, id, name, name_lc, type, deleted, revision, hash, doc FROM assets",
    "asset_tags": "SELECT * FROM asset_tags",
    "asset_labels": "SELECT * FROM asset_labels",
    "asset_owners": "SELECT * FROM asset_owners",
    "asset_deps": "SELECT * FROM asset_deps",
    "tag_pairs": "SELECT * FROM tag_pairs",
    "tag_types": "SELECT * FROM tag_types",
    "tag_names": "SELECT * FROM tag_names",
    "search_terms": "SELECT * FROM search_terms",
    "fts": "SELECT rowid, name, tags, description, columns FROM assets_fts",
}
STAMP = re.compile(r'"updated_at":"[^"]*"')


def asset(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": fields.pop("type", "dataset"), **fields}


FIRST = [
    asset("kept", tags=["a", "b"], labels={"zone": "gold"}),
    asset("changed", tags=["a"], owners=["o@example.com"]),
    asset("to_delete", id="del-1", tags=["b"]),
    asset("late", tags=["a", "c"], labels={"zone": "gold", "tier": 1}, owners=["q@example.com"]),
]
# 17 items in 5 chunks of 4: conflicts reach across chunks.
MIXED = [
    asset("fresh_0", id="f-0", tags=["a", "c"], schema=[{"name": "x", "type": "int64"}]),
    asset("kept", tags=["a", "b"], labels={"zone": "gold"}),  # unchanged
    {"name": "bad", "type": "no-such-type"},  # invalid
    asset("changed", tags=["c"], description="now with words"),  # updated
    asset("fresh_4", id="f-4", depends_on=["fresh_0"], labels={"tier": 2, "pii": False}),
    asset("fresh_0", id="other-id"),  # name taken by item 0, two chunks before
    asset("to_delete", id="del-1", deleted=True),  # deleted
    asset("fresh_7", id="f-0"),  # id sent twice (item 0)
    ["not", "an", "object"],
    asset("fresh_9", id="f-9", tags=["d"] * 1 + ["e"], owners=["p@example.com"]),
    asset("to_delete", id="new-holder"),  # the name is free again (item 6 deleted it)
    asset("fresh_11", id="f-11", extra={"k": {"k": 1}}),
    asset("fresh_12", id="f-12", tags=["a"]),
    asset("fresh_9", id="f-13"),  # name held by item 9 of an earlier chunk
    asset("fresh_14", id="f-14", description="last chunk"),
    asset("fresh_15", id="f-15", tags=["c", "a"]),
    asset("fresh_16", id="f-16", type="table"),
    # Rewritten in the last chunk, after earlier chunks' new assets (whose side rows and tag
    # counts are not written yet) share its old and new tags.
    asset("late", tags=["c", "d"], labels={"zone": "silver"}, depends_on=["fresh_0"]),
]


def _open(path: Path) -> tuple[SQLiteStore, Catalogue]:
    store = SQLiteStore(path)
    asyncio.run(store.open())
    return store, Catalogue(store, Settings())


def _state(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        state = {}
        for table, sql in TABLES.items():
            rows = sorted(conn.execute(sql).fetchall(), key=repr)
            # Write times differ between runs; everything else must not.
            state[table] = [
                tuple(STAMP.sub("", v.decode()) if isinstance(v, bytes) else v for v in row)
                for row in rows
            ]
        return state
    finally:
        conn.close()


def _ingest(path: Path, chunk: int, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    monkeypatch.setattr(service, "WRITE_CHUNK", chunk)
    store, catalogue = _open(path)
    try:
        asyncio.run(catalogue.bulk(FIRST))
        answer = asyncio.run(catalogue.bulk(MIXED))
    finally:
        asyncio.run(store.close())
    return [r.model_dump(exclude={"revision"}) | {"rev": r.revision} for r in answer.results]


def test_chunked_bulk_equals_one_piece(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(MIXED) > CHUNK * 4
    chunked = _ingest(tmp_path / "chunked.db", CHUNK, monkeypatch)
    whole = _ingest(tmp_path / "whole.db", len(MIXED) + 1, monkeypatch)
    assert chunked == whole
    assert _state(tmp_path / "chunked.db") == _state(tmp_path / "whole.db")

    statuses = [r["status"] for r in chunked]
    assert statuses == [
        "created",
        "unchanged",
        "error",
        "updated",
        "created",
        "error",
        "deleted",
        "error",
        "error",
        "created",
        "created",
        "created",
        "created",
        "error",
        "created",
        "created",
        "created",
        "updated",
    ]
    # The conflicts were found across chunks, each naming the other item or asset.
    assert chunked[5]["conflict"] == "name" and "f-0" in chunked[5]["error"]
    assert "items 0 and 7" in chunked[7]["error"]
    assert chunked[13]["conflict"] == "name" and "f-9" in chunked[13]["error"]
    assert chunked[2]["error"].startswith("type: ")


def test_a_failure_in_a_later_chunk_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "WRITE_CHUNK", CHUNK)
    store, catalogue = _open(tmp_path / "c.db")
    plain = PreparedWrite.of

    seen: list[int] = []

    def failing(index: int, *args: Any) -> PreparedWrite:
        if index == 3 * CHUNK:  # the fourth chunk, after three were handed to the writer
            writer = store.db._writer
            assert writer is not None
            deadline = time.monotonic() + 10
            # Wait until the writer has applied them inside its open transaction.
            while writer.total_changes - before < 3 * CHUNK and time.monotonic() < deadline:
                time.sleep(0.01)
            seen.append(writer.total_changes - before)
            raise RuntimeError("prepare failed")
        return plain(index, *args)

    items = [asset(f"n{i}", id=f"i-{i}", tags=["t"]) for i in range(5 * CHUNK)]
    try:
        asyncio.run(catalogue.bulk([asset("before", id="b-0")]))
        assert store.db._writer is not None
        before = store.db._writer.total_changes
        monkeypatch.setattr(PreparedWrite, "of", staticmethod(failing))
        with pytest.raises(RuntimeError, match="prepare failed"):
            asyncio.run(catalogue.bulk(items))
        assert seen[0] >= 3 * CHUNK  # three chunks were written, uncommitted, then rolled back
        assert gc.isenabled()  # the pause ended with the request
        monkeypatch.setattr(PreparedWrite, "of", plain)
        # Nothing of the first chunks, and the writer is free for the next request.
        conn = sqlite3.connect(tmp_path / "c.db")
        assert conn.execute("SELECT id FROM assets").fetchall() == [("b-0",)]
        assert conn.execute("SELECT count(*) FROM asset_tags").fetchone() == (0,)
        conn.close()
        answer = asyncio.run(catalogue.bulk(items))
        assert answer.created == len(items)
    finally:
        asyncio.run(store.close())


def test_a_chunked_bulk_is_copied_into_the_file_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "WRITE_CHUNK", CHUNK)
    path = tmp_path / "c.db"
    store, catalogue = _open(path)
    try:
        items = [asset(f"n{i}", id=f"i-{i}", description="x" * 3000) for i in range(400)]
        answer = asyncio.run(catalogue.bulk(items))
        assert answer.created == len(items)
        checkpointer = store.db._checkpointer
        assert checkpointer is not None and checkpointer.idle.wait(30)
        # Every page is in the database file now, though nothing was committed or closed
        # since: the background thread copied the WAL (its commit left it uncopied).
        in_file, whole = _bytes_in_file(path)
        assert in_file == whole
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM assets").fetchone() == (len(items),)
        conn.close()
    finally:
        asyncio.run(store.close())
    assert not (tmp_path / "c.db-wal").exists()  # the last connection out removed it


def test_a_bulk_of_one_chunk_but_many_items_is_a_big_write(tmp_path: Path) -> None:
    """A request under WRITE_CHUNK items is written in one piece, yet its commit is hundreds
    of pages: it leaves the WAL's copy to the background thread and FTS merges to the upkeep,
    as a chunked one does (both were done inside its commit: at 250 assets a request, 8% more
    CPU per asset, benchmarks.probe_ingest); a small write still merges as it goes."""
    path = tmp_path / "c.db"
    store, catalogue = _open(path)
    try:
        assert BIG_WRITE_ITEMS < service.WRITE_CHUNK
        items = [asset(f"n{i}", id=f"i-{i}", tags=["t"]) for i in range(BIG_WRITE_ITEMS)]
        assert asyncio.run(catalogue.bulk(items)).created == len(items)
        checkpointer = store.db._checkpointer
        assert checkpointer is not None  # made by a big commit only
        assert store._automerge == BULK_FTS_AUTOMERGE
        assert asyncio.run(catalogue.bulk([asset("one", id="one")])).created == 1
        assert store._automerge == FTS_AUTOMERGE
        assert checkpointer.idle.wait(30)
        in_file, whole = _bytes_in_file(path)
        assert in_file == whole
    finally:
        asyncio.run(store.close())


def test_a_bulk_of_several_chunks_over_http(api: httpx.Client) -> None:
    """Both backends, at the real chunk size: conflicts between items chunks apart."""
    count = service.WRITE_CHUNK * 2 + 100
    items = [asset(f"many_{i}", id=f"m-{i}", tags=[f"t{i % 7}"]) for i in range(count)]
    items[-1] = asset("many_0", id="m-last")  # name of item 0, two chunks before
    items[-2] = asset("other", id="m-1")  # id of item 1
    body = api.post("/assets/bulk", json=items).json()
    assert body["created"] == count - 2 and body["failed"] == 2
    last, second = body["results"][-1], body["results"][-2]
    assert last["conflict"] == "name" and "m-0" in last["error"]
    assert "items 1 and" in second["error"]
    found = api.get("/assets", params={"tag": "t3", "limit": 1000}).json()
    assert found["total"] == len([i for i in range(count - 2) if i % 7 == 3])


def _bytes_in_file(path: Path) -> tuple[int, int]:
    """The database file's size, and the size of every page of the database (WAL included)."""
    conn = sqlite3.connect(path)
    try:
        pages, size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size")
        )
    finally:
        conn.close()
    return path.stat().st_size, pages * size


def _wal_sizes_after_bulks(catalogue: Catalogue, wal: Path, requests: int) -> list[int]:
    """Sends ``requests`` bulk requests of 200 new assets (about 1 MB of WAL each); the WAL
    file's size after each."""
    sizes = []
    for batch in range(requests):
        items = [
            asset(f"n{batch}_{i}", id=f"i-{batch}-{i}", description="x" * 2000) for i in range(200)
        ]
        assert asyncio.run(catalogue.bulk(items)).created == len(items)
        sizes.append(wal.stat().st_size)
    return sizes


def test_back_to_back_bulks_keep_the_wal_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past CHECKPOINT_AFTER_BYTES, the next big write waits for the copy of the WAL, so it
    starts over instead of growing with every request."""
    monkeypatch.setattr(service, "WRITE_CHUNK", 50)
    bound = 3_000_000
    monkeypatch.setattr(cairn.sqlite, "CHECKPOINT_AFTER_BYTES", bound)
    plain_connect = cairn.sqlite.connect

    class SlowCheckpoints:
        """The checkpointer's connection, slow enough that the next request always comes
        while it copies."""

        def __init__(self, conn: sqlite3.Connection) -> None:
            self.conn = conn

        def execute(self, sql: str, *args: Any) -> Any:
            if "wal_checkpoint" in sql:
                time.sleep(0.2)
            return self.conn.execute(sql, *args)

        def close(self) -> None:
            self.conn.close()

    def connect(path: Path, cache_kib: int) -> Any:
        conn = plain_connect(path, cache_kib)
        return SlowCheckpoints(conn) if cache_kib == cairn.sqlite.CHECKPOINT_CACHE_KIB else conn

    monkeypatch.setattr(cairn.sqlite, "connect", connect)
    path = tmp_path / "c.db"
    store, catalogue = _open(path)
    wal = tmp_path / "c.db-wal"
    try:
        sizes = _wal_sizes_after_bulks(catalogue, wal, 12)
        # Twelve requests appended would be over 12 MB; the WAL file ends at most one request
        # past the bound (the request that crossed it appends before the copy).
        assert max(sizes) < bound + 2 * sizes[0], sizes
    finally:
        asyncio.run(store.close())


def test_bulks_below_the_bound_are_copied_once_writes_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below the bound, back-to-back big writes append to the WAL without waiting for a copy,
    and a small write meanwhile copies nothing inside its commit; the copy comes once big
    writes pause, and every page is then in the database file."""
    monkeypatch.setattr(service, "WRITE_CHUNK", 50)
    monkeypatch.setattr(cairn.sqlite, "CHECKPOINT_QUIET_S", 3600.0)
    path = tmp_path / "c.db"
    store, catalogue = _open(path)
    wal = tmp_path / "c.db-wal"
    try:
        sizes = _wal_sizes_after_bulks(catalogue, wal, 3)
        assert sizes[0] < sizes[1] < sizes[2], sizes  # appended: no copy let the WAL restart
        # More than a thousand pages in the WAL, SQLite's own threshold: a small write's
        # commit would have copied them all, had it been allowed to.
        assert store.db._wal_bytes() > cairn.sqlite.AUTOCHECKPOINT_PAGES * 4096
        answer = asyncio.run(catalogue.bulk([asset("small")]))
        assert answer.created == 1
        in_file, whole = _bytes_in_file(path)
        assert in_file < whole  # the WAL still holds pages the file does not have
        checkpointer = store.db._checkpointer
        assert checkpointer is not None and not checkpointer.idle.is_set()
        monkeypatch.setattr(cairn.sqlite, "CHECKPOINT_QUIET_S", 0.0)
        checkpointer.wake()  # what the next look at the clock does after a real pause
        assert checkpointer.idle.wait(30)
        in_file, whole = _bytes_in_file(path)
        assert in_file == whole
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM assets").fetchone() == (601,)
        conn.close()
    finally:
        asyncio.run(store.close())
    assert not wal.exists()  # the last connection out removed it


def test_collector_pauses_nest_and_overlap() -> None:
    assert gc.isenabled()
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the second request is still running
    second.__exit__(None, None, None)
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # not enabled by a pause that found it off
    finally:
        gc.enable()


def test_a_version_three_file_gets_its_location_column(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store, catalogue = _open(path)
    lake = "file:///lake/"
    asyncio.run(
        catalogue.bulk(
            [
                asset("a", id="a-1", location=lake + "a"),
                asset("b", id="b-1", location=lake + "b"),
                asset("gone", id="g-1", location=lake + "a", deleted=True),
                asset("nowhere", id="n-1"),
            ]
        )
    )
    asyncio.run(store.close())
    # What a schema-3 file looks like: no column, an index on the documents' JSON instead.
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX assets_location")
    conn.execute("ALTER TABLE assets DROP COLUMN location")
    conn.execute(
        "CREATE INDEX assets_location ON assets(json_extract(CAST(doc AS TEXT), '$.location'))"
        " WHERE deleted = 0"
    )
    for table in ("asset_labels", "asset_owners", "asset_deps"):
        conn.execute(f"CREATE INDEX {table}_seq ON {table}(seq)")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    store, catalogue = _open(path)
    try:
        found = asyncio.run(store.by_location([lake + "a", lake + "b", lake + "c"]))
        assert {url: [a.id for a in assets] for url, assets in found.items()} == {
            lake + "a": ["a-1"],
            lake + "b": ["b-1"],
        }
        # A rewrite moves the asset; the lookup follows.
        asyncio.run(catalogue.bulk([asset("b", id="b-1", location=lake + "c")]))
        found = asyncio.run(store.by_location([lake + "b", lake + "c"]))
        assert [a.id for a in found[lake + "c"]] == ["b-1"] and lake + "b" not in found
        writer = store.db._writer
        assert writer is not None
        index_sql = writer.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'assets_location'"
        ).fetchone()[0]
        assert "json_extract" not in index_sql and "(location)" in index_sql
        plan = writer.execute(
            "EXPLAIN QUERY PLAN SELECT doc FROM assets WHERE deleted = 0 AND location IN (?)",
            (lake + "a",),
        ).fetchall()
        assert any("assets_location" in row[-1] for row in plan), plan
        left = writer.execute("SELECT name FROM sqlite_master WHERE name LIKE '%_seq'").fetchall()
        assert sorted(left) == [("asset_tags_seq",)]
        version = writer.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert int(version[0]) == SCHEMA_VERSION
    finally:
        asyncio.run(store.close())


def _text(value: Any) -> str | None:
    """A label value as a label filter matches it; None for a nested one (not searchable)."""
    if isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _rows(conn: sqlite3.Connection, sql: str) -> set[tuple[Any, ...]]:
    return set(conn.execute(sql).fetchall())


def test_a_rewrite_replaces_its_side_rows_exactly(tmp_path: Path) -> None:
    """Label, owner and dependency rows are deleted by their keys (no index by seq): after
    rewrites, crawled or not, each table holds exactly what the current documents say."""
    store, catalogue = _open(tmp_path / "c.db")
    lake = "file:///lake"
    first = {
        "labels": {"zone": "gold", "pii": True, "tier": 1, "nested": {"a": 1}, "none": None},
        "owners": ["a@example.com", "b@example.com"],
        "depends_on": ["x", "y"],
    }
    second = {"labels": {"zone": "silver", "pii": False}, "owners": ["b@example.com"]}
    try:
        for fields in (first, second, first, {}):
            answer = asyncio.run(
                catalogue.bulk(
                    [
                        asset("api_one", id="one", **fields),
                        asset("crawled", id="two", volume=lake, manifest_path="m.yaml", **fields),
                        asset("other", id="three", **first),  # unchanged after the first
                    ]
                )
            )
            assert all(r.status in ("created", "updated", "unchanged") for r in answer.results)
            writer = store.db._writer
            assert writer is not None
            seqs = dict(writer.execute("SELECT id, seq FROM assets").fetchall())
            want_labels, want_owners, want_deps = set(), set(), set()
            for asset_id, current in (("one", fields), ("two", fields), ("three", first)):
                seq = seqs[asset_id]
                labels = current.get("labels", {})
                want_labels |= {
                    (k, _text(v), seq) for k, v in labels.items() if _text(v) is not None
                }
                want_owners |= {(o, seq) for o in current.get("owners", [])}
                want_deps |= {(d, seq) for d in current.get("depends_on", [])}
            assert _rows(writer, "SELECT key, value, seq FROM asset_labels") == want_labels
            assert _rows(writer, "SELECT owner, seq FROM asset_owners") == want_owners
            assert _rows(writer, "SELECT dep, seq FROM asset_deps") == want_deps
    finally:
        asyncio.run(store.close())


def test_searchable_labels_are_the_scalars_as_label_filters_read_them() -> None:
    labels = {
        "zone": "gold",
        "pii": True,
        "open": False,
        "tier": 1,
        "ratio": 0.5,
        "none": None,
        "map": {"a": 1},
        "list": [1, 2],
    }
    assert searchable_labels(labels) == [
        (key, text) for key, value in labels.items() if (text := _text(value)) is not None
    ]
    assert searchable_labels(labels) == [
        ("zone", "gold"),
        ("pii", "true"),
        ("open", "false"),
        ("tier", "1"),
        ("ratio", "0.5"),
        ("none", ""),
    ]
    assert searchable_labels(None) == []


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"zone": "gold", "note": "a\x00b"}, "label 'note' must not contain control characters"),
        ({"zone": "x" * 1025}, "label 'zone' is 1025 characters long; the limit is 1024"),
        ({"tier": 2**63, "zone": "x" * 1025}, "label 'tier' is outside the 64-bit integer range"),
        ({"ok": 1.5, "ratio": float("inf")}, "label 'ratio' must be a finite number"),
        ({"zone": "x" * 1025, "tier": 2**63}, "label 'zone' is 1025 characters long"),
    ],
)
def test_a_bad_label_value_is_named_first_come_first_named(
    labels: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        check_labels(labels)


def test_plain_label_values_pass_as_they_are() -> None:
    labels = {"zone": "gold", "tier": 2**63 - 1, "ratio": -0.5, "pii": False, "none": None}
    assert check_labels({**labels, "map": {"a": [1]}}) == {**labels, "map": {"a": [1]}}


def test_word_counts_follow_writes_and_new_words_bump_the_version(tmp_path: Path) -> None:
    """Known words are counted without a new version of the word list; a new word makes one;
    after rewrites the counts equal those counted afresh from the full-text index."""
    path = tmp_path / "c.db"
    store, catalogue = _open(path)

    def version() -> str:
        conn = sqlite3.connect(path)
        (value,) = conn.execute(
            "SELECT value FROM meta WHERE key = 'vocabulary_version'"
        ).fetchone()
        conn.close()
        return str(value)

    def vocabulary(conn: sqlite3.Connection) -> list[tuple[str, int]]:
        return conn.execute("SELECT term, uses FROM search_terms ORDER BY term").fetchall()

    try:
        first = [asset(f"sales_{i}", id=f"s-{i}", description="daily revenue") for i in range(3)]
        asyncio.run(catalogue.bulk(first))
        start = version()
        known = [asset("revenue", id="k-1", description="daily sales")]
        asyncio.run(catalogue.bulk(known))
        assert version() == start
        fresh = [asset("churn", id="c-1", description="daily churn model")]
        asyncio.run(catalogue.bulk(fresh))
        assert version() != start
        # Rewrites take words out and put others (known and new) in.
        rewritten = [asset("sales_0", id="s-0", description="weekly churn"), fresh[0]]
        asyncio.run(catalogue.bulk(rewritten))
    finally:
        asyncio.run(store.close())
    conn = sqlite3.connect(path)
    kept = vocabulary(conn)
    assert ("daily", 4) in kept and ("weekly", 1) in kept and ("churn", 3) in kept
    conn.execute("DELETE FROM meta WHERE key = 'vocabulary_version'")
    conn.commit()
    spelling.fill_if_missing(conn)
    assert vocabulary(conn) == kept
    conn.close()


def test_big_bulks_trim_the_heap_once_they_pause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Back-to-back big requests leave their freed memory to each other; it is handed back
    once, when they pause (and again after a later request)."""
    monkeypatch.setattr(service, "TRIM_AFTER_ITEMS", 3)
    monkeypatch.setattr(service, "TRIM_QUIET_S", 0.2)
    trims: list[float] = []
    monkeypatch.setattr(service, "trim", lambda: trims.append(time.monotonic()))
    store, catalogue = _open(tmp_path / "c.db")

    async def load(first: int) -> None:
        before = len(trims)
        for batch in range(first, first + 3):
            items = [asset(f"n{batch}_{i}", id=f"i-{batch}-{i}") for i in range(3)]
            assert (await catalogue.bulk(items)).created == len(items)
            assert len(trims) == before  # not after each request
        ended = time.monotonic()
        await catalogue.bulk([asset("small", id="small")])  # below TRIM_AFTER_ITEMS
        await asyncio.sleep(0.5)
        assert trims and trims[-1] >= ended + 0.2

    try:
        asyncio.run(load(0))
        assert len(trims) == 1
        asyncio.run(load(3))  # a new event loop, as in a new process
        assert len(trims) == 2
    finally:
        asyncio.run(store.close())

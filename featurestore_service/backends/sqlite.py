"""Embedded feature store: its own SQLite file (WAL, ``synchronous=FULL``), FTS5 for text.

Each version is one row holding its JSON document (ready to send) and a summary for listings.
``UNIQUE(name, version)`` and ``BEGIN IMMEDIATE`` make version assignment safe across threads
and processes. ``latest`` points at the newest live version of each name, ``outbox`` holds the
catalogue registrations written in the same transaction as the versions they describe.
Tabular payloads live in content-addressed Parquet files (``featurestore_service.blobstore``);
rows here only name them.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import orjson

from cairn.errors import InvalidCursor
from cairn.paging import encode_cursor
from cairn.settings import Settings
from cairn.sqlite import SQLiteFile, fts_query, label_text
from featurestore_service.backends.base import (
    FeatureSetQuery,
    Hits,
    NewVersion,
    OutboxEntry,
    StoredVersion,
    check_expected,
    seal,
)

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    version      INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    created_us   INTEGER NOT NULL,
    deleted      INTEGER NOT NULL DEFAULT 0,
    blob         TEXT,
    content_hash TEXT NOT NULL,
    etag         TEXT NOT NULL,
    doc          BLOB NOT NULL,
    summary      BLOB NOT NULL,
    UNIQUE (name, version)
);
-- The blob sweeper's question: which of these files does a version name?
CREATE INDEX IF NOT EXISTS versions_blob ON versions(blob) WHERE blob IS NOT NULL;
CREATE TABLE IF NOT EXISTS latest (
    name    TEXT PRIMARY KEY,
    name_lc TEXT NOT NULL,
    id      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS latest_name_lc ON latest(name_lc);
CREATE TABLE IF NOT EXISTS version_labels (
    key TEXT NOT NULL, value TEXT NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY (key, value, id)) WITHOUT ROWID;
CREATE VIRTUAL TABLE IF NOT EXISTS versions_fts USING fts5(
    name, description, labels, features,
    tokenize = "unicode61 remove_diacritics 2",
    prefix = '2 3'
);
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    enqueued_at TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS outbox_name ON outbox(name);
"""

BM25 = "bm25(versions_fts, 10.0, 1.0, 3.0, 2.0)"
COLUMNS = "name, version, kind, deleted, etag, doc, content_hash, blob"


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


def _from_micros(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def _stored(row: tuple[Any, ...]) -> StoredVersion:
    name, version, kind, deleted, etag, doc, content_hash, blob = row
    return StoredVersion(
        name=name,
        version=version,
        kind=kind,
        deleted=bool(deleted),
        etag=etag,
        doc=doc,
        content_hash=content_hash,
        blob=blob,
    )


def _check_cursor(cursor: list[Any], *, text: bool) -> None:
    """A cursor is (relevance, id) for a text search and (name, id) for a listing. One of the
    other kind compares numbers with names (SQLite orders every number before any text), which
    read as an empty page or the first page again: refused, as the MongoDB backend does."""
    if len(cursor) == 2 and not any(isinstance(part, bool) for part in cursor):
        key, row = cursor
        numeric = isinstance(key, int | float)
        if numeric == text and (numeric or isinstance(key, str)) and isinstance(row, int):
            return
    raise InvalidCursor("The cursor does not belong to this kind of search.")


class SQLiteFeatureStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = SQLiteFile(self.path)
        self._probe: sqlite3.Connection | None = None

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open_sync)

    def _open_sync(self) -> None:
        self.db.open(SCHEMA, SCHEMA_VERSION)
        self._probe = self.db.new_reader()

    async def close(self) -> None:
        self._probe = None
        self.db.close()

    async def ping(self) -> None:
        def _ping(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM versions LIMIT 1").fetchall()

        await self.db.read(_ping)

    def generation(self) -> int:
        # data_version changes when another connection (the writer, or another process)
        # commits; it reads shared memory, so it is cheap enough for the event loop.
        assert self._probe is not None, "store not opened"
        return self._probe.execute("PRAGMA data_version").fetchone()[0]

    # --- writes -------------------------------------------------------------------------------

    async def create(self, new: NewVersion, now: datetime) -> StoredVersion:
        return await self.db.write(self._create, new, now)

    def _create(self, conn: sqlite3.Connection, new: NewVersion, now: datetime) -> StoredVersion:
        last, last_us = conn.execute(
            "SELECT max(version), max(created_us) FROM versions WHERE name = ?", (new.name,)
        ).fetchone()
        version = (last or 0) + 1
        check_expected(new.name, new.expected_version, last or 0, version)
        # created_at grows with the version even if the clock steps back, so as-of is exact.
        created_us = max(_micros(now), (last_us or 0) + 1)
        doc, summary, etag = seal(
            new.body, version=version, created_at=_from_micros(created_us), deleted_at=None
        )
        cursor = conn.execute(
            "INSERT INTO versions(name, version, kind, created_us, blob, content_hash, etag,"
            " doc, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new.name,
                version,
                new.kind,
                created_us,
                new.blob,
                new.content_hash,
                etag,
                doc,
                summary,
            ),
        )
        row_id = cursor.lastrowid
        labels = new.body.get("labels") or {}
        conn.executemany(
            "INSERT OR IGNORE INTO version_labels(key, value, id) VALUES (?, ?, ?)",
            [(k, label_text(v), row_id) for k, v in labels.items()],
        )
        label_words = " ".join(f"{k} {label_text(v)}" for k, v in labels.items())
        conn.execute(
            "INSERT INTO versions_fts(rowid, name, description, labels, features)"
            " VALUES (?, ?, ?, ?, ?)",
            (row_id, new.name, new.body.get("description") or "", label_words, new.search_text),
        )
        conn.execute(
            "INSERT INTO latest(name, name_lc, id) VALUES (?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET id = excluded.id",
            (new.name, new.name.lower(), row_id),
        )
        self._enqueue(conn, new.name, now)
        return StoredVersion(
            name=new.name,
            version=version,
            kind=new.kind,
            deleted=False,
            etag=etag,
            doc=doc,
            content_hash=new.content_hash,
            blob=new.blob,
        )

    @staticmethod
    def _enqueue(conn: sqlite3.Connection, name: str, now: datetime) -> None:
        conn.execute(
            "INSERT INTO outbox(name, enqueued_at, next_at) VALUES (?, ?, 0)",
            (name, now.isoformat()),
        )

    async def delete(self, name: str, version: int, now: datetime) -> StoredVersion | None:
        return await self.db.write(self._delete, name, version, now)

    def _delete(
        self, conn: sqlite3.Connection, name: str, version: int, now: datetime
    ) -> StoredVersion | None:
        row = conn.execute(
            "SELECT id, deleted, created_us, doc FROM versions WHERE name = ? AND version = ?",
            (name, version),
        ).fetchone()
        if row is None:
            return None
        row_id, deleted, created_us, doc = row
        if not deleted:
            body = orjson.loads(doc)
            doc, summary, etag = seal(
                body, version=version, created_at=_from_micros(created_us), deleted_at=now
            )
            conn.execute(
                "UPDATE versions SET deleted = 1, doc = ?, summary = ?, etag = ? WHERE id = ?",
                (doc, summary, etag, row_id),
            )
            live = conn.execute(
                "SELECT id FROM versions WHERE name = ? AND deleted = 0"
                " ORDER BY version DESC LIMIT 1",
                (name,),
            ).fetchone()
            if live is None:
                conn.execute("DELETE FROM latest WHERE name = ?", (name,))
            else:
                conn.execute("UPDATE latest SET id = ? WHERE name = ?", (live[0], name))
            self._enqueue(conn, name, now)
        found = conn.execute(f"SELECT {COLUMNS} FROM versions WHERE id = ?", (row_id,)).fetchone()
        return _stored(found)

    # --- reads --------------------------------------------------------------------------------

    async def _one(self, sql: str, *params: Any) -> StoredVersion | None:
        def run(conn: sqlite3.Connection) -> StoredVersion | None:
            row = conn.execute(sql, params).fetchone()
            return _stored(row) if row else None

        return await self.db.read(run)

    async def get(self, name: str, version: int) -> StoredVersion | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM versions WHERE name = ? AND version = ?", name, version
        )

    async def latest(self, name: str) -> StoredVersion | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM versions WHERE id = (SELECT id FROM latest WHERE name = ?)",
            name,
        )

    async def newest(self, name: str) -> StoredVersion | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM versions WHERE name = ? ORDER BY version DESC LIMIT 1", name
        )

    async def as_of(self, name: str, at: datetime) -> StoredVersion | None:
        return await self._one(
            f"SELECT {COLUMNS} FROM versions WHERE name = ? AND deleted = 0 AND created_us <= ?"
            " ORDER BY version DESC LIMIT 1",
            name,
            _micros(at),
        )

    async def versions(self, name: str, limit: int, before: int | None) -> Hits:
        def run(conn: sqlite3.Connection) -> Hits:
            total = conn.execute(
                "SELECT count(*) FROM versions WHERE name = ?", (name,)
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT version, summary FROM versions WHERE name = ? AND version < ?"
                " ORDER BY version DESC LIMIT ?",
                (name, before if before is not None else 2**62, limit + 1),
            ).fetchall()
            next_cursor = None
            if len(rows) > limit:
                rows = rows[:limit]
                next_cursor = encode_cursor([rows[-1][0]])
            return Hits(docs=[r[1] for r in rows], total=total, next_cursor=next_cursor)

        return await self.db.read(run)

    async def search(self, query: FeatureSetQuery) -> Hits:
        return await self.db.read(self._search, query)

    def _search(self, conn: sqlite3.Connection, query: FeatureSetQuery) -> Hits:
        where: list[str] = []
        params: list[Any] = []
        match = fts_query(query.q) if query.q else None
        if query.q and match is None:
            return Hits(docs=[], total=0)
        source = "versions_fts f JOIN versions v ON v.id = f.rowid" if match else "versions v"
        if query.all_versions:
            where.append("v.deleted = 0")
            name_col = "lower(v.name)"
        else:
            source += " JOIN latest l ON l.id = v.id"
            name_col = "l.name_lc"
        if query.name and query.name_exact:
            where.append("v.name = ?")
            params.append(query.name)
        elif query.name:
            prefix = query.name.lower()
            where.append(f"{name_col} >= ? AND {name_col} < ?")
            params += [prefix, prefix + "\U0010ffff"]
        for key, value in query.labels:
            where.append("v.id IN (SELECT id FROM version_labels WHERE key = ? AND value = ?)")
            params += [key, value]
        if match is not None:
            where.insert(0, "versions_fts MATCH ?")
            params.insert(0, match)
            key = BM25
        else:
            key = name_col
        filter_sql = " AND ".join(where) or "1"
        column = "v.doc" if query.full else "v.summary"
        inner = f"SELECT v.id AS id, {column} AS doc, {key} AS k1, v.version AS k2 FROM {source}"
        sql = f"SELECT id, doc, k1 FROM ({inner} WHERE {filter_sql})"
        page_params = list(params)
        if query.cursor is not None:
            _check_cursor(query.cursor, text=match is not None)
            sql += " WHERE (k1, id) > (?, ?)"
            page_params += list(query.cursor)
        # Latest versions are one per name, so (k1, id) is the keyset; Mastro's routes list
        # every version of a name together, newest first, and page by offset.
        order = "k1, k2 DESC, id" if query.all_versions else "k1, id"
        sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
        page_params += [query.limit + 1, query.offset]
        rows = conn.execute(sql, page_params).fetchall()
        next_cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            next_cursor = encode_cursor([rows[-1][2], rows[-1][0]])
        if not rows and query.cursor is None and query.offset == 0:
            total = 0
        else:
            total = conn.execute(
                f"SELECT count(*) FROM {source} WHERE {filter_sql}", params
            ).fetchone()[0]
        return Hits(docs=[r[1] for r in rows], total=total, next_cursor=next_cursor)

    # --- outbox -------------------------------------------------------------------------------

    async def named_blobs(self, blobs: list[str]) -> set[str]:
        def run(conn: sqlite3.Connection) -> set[str]:
            marks = ",".join("?" * len(blobs))
            sql = f"SELECT DISTINCT blob FROM versions WHERE blob IN ({marks})"
            return {row[0] for row in conn.execute(sql, blobs)}

        if not blobs:
            return set()
        return await self.db.read(run)

    async def outbox_enqueue(self, name: str, now: datetime) -> None:
        await self.db.write(self._enqueue, name, now)

    async def outbox_due(self, now: float, limit: int) -> list[OutboxEntry]:
        def run(conn: sqlite3.Connection) -> list[OutboxEntry]:
            rows = conn.execute(
                "SELECT name, max(seq), max(attempts) FROM outbox GROUP BY name"
                " HAVING min(next_at) <= ? ORDER BY min(seq) LIMIT ?",
                (now, limit),
            ).fetchall()
            return [OutboxEntry(name=n, seq=s, attempts=a) for n, s, a in rows]

        return await self.db.read(run)

    async def outbox_next_due(self) -> float | None:
        def run(conn: sqlite3.Connection) -> float | None:
            return conn.execute("SELECT min(next_at) FROM outbox").fetchone()[0]

        return await self.db.read(run)

    async def outbox_done(self, name: str, seq: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM outbox WHERE name = ? AND seq <= ?", (name, seq))

        await self.db.write(run)

    async def outbox_retry(self, name: str, attempts: int, next_at: float, error: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE name = ?",
                (attempts, next_at, error, name),
            )

        await self.db.write(run)

    async def outbox_pending(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute("SELECT count(DISTINCT name) FROM outbox").fetchone()[0]

        return await self.db.read(run)


def from_settings(settings: Settings) -> SQLiteFeatureStore:
    return SQLiteFeatureStore(settings.featurestore_db)

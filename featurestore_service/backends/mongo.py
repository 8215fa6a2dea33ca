"""MongoDB feature store: the same behaviour as the SQLite backend, built from inserts.

It must run on MongoDB-wire servers without multi-document transactions, and on FerretDB 1.x
(which the tests use) even an update of one document is not atomic: two concurrent updates of
a document can both read it and the second write back undoes the first (checked: ``$inc``,
``findAndModify`` and conditional updates all lose writes there). An insert under a unique
index is atomic everywhere, so everything that must not be lost is written by an insert, and
updates only touch bookkeeping whose loss causes a repeat, never a loss:

- A version is one document in ``featureset_versions``, never changed afterwards: the sealed
  JSON (and its summary) as bytes, ready to send, plus the fields queries use. Its number comes
  from reading the newest version and inserting newest + 1 under a unique (name, version)
  index; a writer that loses the race gets a duplicate key and tries the next number, so
  numbers have no gaps.
- A soft delete is one document in ``featureset_deletions`` (unique per name and version, so
  deleting twice is harmless) holding the version as it reads once deleted. Reads of a version
  look at both collections.
- The catalogue registration a write queues (the outbox) is the ``outbox`` field of the
  document that write inserts, so no crash can separate a version or a delete from it. Delivery
  only ever removes or reschedules it. A registration queued without a write (the metric
  store's flags changed) is a document of its own in ``featureset_registrations``, inserted
  too, and removed once delivered.
- Searches list the latest live version of each name. FerretDB's ``$group`` has no ``$first``
  or ``$max``, so ``featureset_latest`` holds a snapshot per name, derived from the two
  collections above and replaced by inserting a newer one (see ``_refresh_head``). Every write
  marks the document it inserts (``head_mark``) and then refreshes its name; a search first
  refreshes the names still marked, so it never misses a committed write, even one whose
  process died before the refresh.

Text search finds the words SQLite's FTS5 finds (its own tokenizer splits the text) and ranks
with FTS5's BM25 formula and column weights, so both backends answer a query alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cairn.errors import InvalidCursor, PayloadTooLarge, Unavailable
from cairn.models import label_text
from cairn.mongo import AsyncDatabase, PyMongoError, connect, literal, migrate, unavailable
from cairn.paging import encode_cursor
from cairn.settings import Settings
from featurestore_service.backends.base import (
    FeatureSetQuery,
    Hits,
    NewVersion,
    OutboxEntry,
    StoredVersion,
    check_expected,
    seal,
)

try:
    from pymongo import ASCENDING, DESCENDING, ReadPreference
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.errors import DocumentTooLarge, DuplicateKeyError, OperationFailure
except ImportError as exc:  # pragma: no cover - the registry turns this into a clear message
    raise ImportError(
        f"{exc}; the mongo backend needs pip install 'cairn-catalogue[mongo]'"
    ) from exc

log = logging.getLogger("cairn.featurestore.mongo")

VERSIONS = "featureset_versions"
DELETIONS = "featureset_deletions"
HEADS = "featureset_latest"
REGISTRATIONS = "featureset_registrations"

# 50 writers of one name in two processes need up to ~50 rounds; the backoff keeps the
# collisions few, the bound turns a pathological pile-up into a retryable 503.
CREATE_ATTEMPTS = 200
BACKOFF_CAP = 0.05
SETTLE_BATCH = 500
SETTLE_ROUNDS = 10
TOO_LARGE_CODES = frozenset({10334, 17419, 17420})

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STRING_MAX = "\U0010ffff"  # sorts after every character: the upper bound of a prefix range

# FTS5 columns of the SQLite backend, in order, with their bm25() weights.
COLUMNS = ("n", "d", "l", "f")  # name, description, labels, feature or column names
WEIGHTS = {"n": 10.0, "d": 1.0, "l": 3.0, "f": 2.0}
BM25_K1 = 1.2
BM25_B = 0.75
QUERY_CHUNK = re.compile(r"\w+", re.UNICODE)  # how cairn.sqlite.fts_query splits a query
QUERY_CHUNKS = 32

STORED_FIELDS = {
    "name": 1,
    "version": 1,
    "kind": 1,
    "etag": 1,
    "doc": 1,
    "content_hash": 1,
    "blob": 1,
}
HEAD_SOURCE = {"version": 1, "created_us": 1, "labels": 1, "terms": 1, "fts": 1, "ntok": 1}


async def _schema_v1(db: AsyncDatabase) -> None:
    versions = db.get_collection(VERSIONS)
    await versions.create_index(
        [("name", ASCENDING), ("version", ASCENDING)], unique=True, name="name_version"
    )
    await versions.create_index([("name_lc", ASCENDING), ("version", DESCENDING)], name="name_lc")
    await versions.create_index([("labels", ASCENDING)], name="labels")
    await versions.create_index([("terms", ASCENDING)], name="terms")
    await versions.create_index([("created_at", ASCENDING)], name="created_at")
    deletions = db.get_collection(DELETIONS)
    await deletions.create_index(
        [("name", ASCENDING), ("version", ASCENDING)], unique=True, name="name_version"
    )
    for queue in (versions, deletions):
        # Sparse: only queued registrations and unrefreshed heads are indexed, a handful.
        await queue.create_index([("outbox.next_at", ASCENDING)], name="outbox", sparse=True)
        await queue.create_index([("head_mark", ASCENDING)], name="head_mark", sparse=True)
    heads = db.get_collection(HEADS)
    await heads.create_index(
        [("name", ASCENDING), ("state", ASCENDING)], unique=True, name="name_state"
    )
    await heads.create_index(
        [("live", ASCENDING), ("name_lc", ASCENDING), ("created_us", ASCENDING)], name="name_lc"
    )
    await heads.create_index([("labels", ASCENDING)], name="labels")
    await heads.create_index([("terms", ASCENDING)], name="terms")


async def _schema_v2(db: AsyncDatabase) -> None:
    # The blob sweeper's question: which of these files does a version name?
    for collection in (VERSIONS, DELETIONS):
        await db.get_collection(collection).create_index(
            [("blob", ASCENDING)], name="blob", sparse=True
        )


async def _schema_v3(db: AsyncDatabase) -> None:
    await db.get_collection(REGISTRATIONS).create_index(
        [("outbox.next_at", ASCENDING)], name="outbox", sparse=True
    )


MIGRATIONS = {1: _schema_v1, 2: _schema_v2, 3: _schema_v3}


def _micros(moment: datetime) -> int:
    # Integer arithmetic: as-of compares microseconds exactly, which a float timestamp does not.
    return (moment - EPOCH) // timedelta(microseconds=1)


def _from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def _label_pairs(labels: Mapping[str, Any]) -> list[str]:
    # A label key may be "$where" or "a.b": as a field path it would be an operator or a nested
    # path, so labels are matched as encoded pairs; JSON keeps "a=b"/"c" apart from "a"/"b=c".
    return [_pair(key, label_text(value)) for key, value in labels.items()]


def _pair(key: str, value: str) -> str:
    return orjson.dumps([key, value]).decode()


def _key(name: str, version: int) -> str:
    """One string per version, so "not deleted" is one ``$nin`` over every listing."""
    return orjson.dumps([name, version]).decode()


def _stored(row: Mapping[str, Any], *, deleted: bool) -> StoredVersion:
    """A version from ``featureset_versions`` or, once deleted, ``featureset_deletions``."""
    return StoredVersion(
        name=row["name"],
        version=row["version"],
        kind=row["kind"],
        deleted=deleted,
        etag=row["etag"],
        doc=bytes(row["doc"]),
        content_hash=row["content_hash"],
        blob=row.get("blob"),
    )


class Words:
    """Splits text into the words SQLite's FTS5 finds (``unicode61 remove_diacritics 2``).

    The SQLite backend's index is the reference for what a text query matches; asking FTS5's own
    tokenizer (in an in-memory database that never keeps a row) makes both backends agree on
    case folding, diacritics and word boundaries in every script.
    """

    def __init__(self) -> None:
        self._conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._conn.execute(
            "CREATE VIRTUAL TABLE t USING fts5(n, d, l, f,"
            " tokenize = 'unicode61 remove_diacritics 2')"
        )
        self._conn.execute("CREATE VIRTUAL TABLE w USING fts5vocab(t, 'instance')")
        self._lock = threading.Lock()

    def split(
        self, name: str = "", description: str = "", labels: str = "", features: str = ""
    ) -> dict[str, list[str]]:
        """The words of each column, in order, keyed as in ``COLUMNS``."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.execute(
                    "INSERT INTO t(rowid, n, d, l, f) VALUES (1, ?, ?, ?, ?)",
                    (name, description, labels, features),
                )
                rows = self._conn.execute("SELECT col, offset, term FROM w").fetchall()
            finally:
                self._conn.execute("ROLLBACK")
        words: dict[str, list[str]] = {column: [] for column in COLUMNS}
        for column, _offset, term in sorted(rows, key=lambda r: (r[0], r[1])):
            words[column].append(term)
        return words

    def close(self) -> None:
        self._conn.close()


@dataclass(slots=True)
class Phrase:
    """One quoted term of an FTS5 query: consecutive words, the last maybe a prefix."""

    words: list[str]
    prefix: bool

    def filters(self) -> list[dict[str, Any]]:
        """Conditions on ``terms`` that every document holding the phrase meets."""
        exact = self.words[:-1] if self.prefix else self.words
        found: list[dict[str, Any]] = [{"terms": literal(word)} for word in exact]
        if self.prefix:
            # An anchored regex of escaped text: indexed on MongoDB, and right on FerretDB,
            # whose $elemMatch range lets two different elements meet the two bounds.
            found.append({"terms": {"$regex": "^" + re.escape(self.words[-1])}})
        return found

    def count_in(self, words: list[str]) -> int:
        """Occurrences in one column's words (FTS5 counts every starting position)."""
        size = len(self.words)
        hits = 0
        for start in range(len(words) - size + 1):
            if all(
                words[start + i] == word
                or (self.prefix and i == size - 1 and words[start + i].startswith(word))
                for i, word in enumerate(self.words)
            ):
                hits += 1
        return hits

    def frequency(self, fts: Mapping[str, list[str]]) -> float:
        return sum(WEIGHTS[c] * self.count_in(fts.get(c) or []) for c in COLUMNS)


def _after(keys: list[tuple[str, int]], values: list[Any]) -> dict[str, Any]:
    """The documents after ``values`` in the order ``keys`` (field, direction): a keyset page."""
    branches: list[dict[str, Any]] = []
    for i, (field, direction) in enumerate(keys):
        branch: dict[str, Any] = {
            f: literal(v) for (f, _), v in zip(keys[:i], values[:i], strict=True)
        }
        branch[field] = {"$gt" if direction == ASCENDING else "$lt": values[i]}
        branches.append(branch)
    return {"$or": branches}


def _directed(values: list[Any], order: list[tuple[str, int]]) -> tuple[Any, ...]:
    """Sort-key values that compare ascending in Python (descending numbers negated)."""
    return tuple(-v if d == DESCENDING else v for v, (_, d) in zip(values, order, strict=True))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _cursor_rest(rest: Any, all_versions: bool) -> list[Any]:
    """The tie-breaking part of a cursor, checked so no value is anything but a scalar."""
    shape: tuple[Callable[[Any], bool], ...] = (_is_int, lambda v: isinstance(v, str))
    if all_versions:
        shape = (_is_int, *shape)
    if (
        not isinstance(rest, list)
        or len(rest) != len(shape)
        or not all(check(v) for check, v in zip(shape, rest, strict=True))
    ):
        raise InvalidCursor("The cursor does not belong to this kind of search.")
    return rest


class MongoFeatureStore:
    def __init__(self, settings: Settings):
        self.client, self.db = connect(settings, "cairn-featurestore")
        self._versions: AsyncCollection = self.db.get_collection(VERSIONS)
        self._deletions: AsyncCollection = self.db.get_collection(DELETIONS)
        self._heads: AsyncCollection = self.db.get_collection(HEADS)
        self._registrations: AsyncCollection = self.db.get_collection(REGISTRATIONS)
        # The collections whose inserts carry an outbox entry and a head mark.
        self._journals = (self._versions, self._deletions)
        # Every collection whose documents carry an ``outbox`` field.
        self._queues = (*self._journals, self._registrations)
        self.words = Words()
        self._generations = itertools.count()

    # --- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        async with unavailable("start-up"):
            await migrate(self.db, "featurestore", MIGRATIONS)

    async def close(self) -> None:
        await self.client.close()
        self.words.close()

    async def ping(self) -> None:
        async with unavailable("the readiness check"):
            await self.db.command("ping")

    def generation(self) -> int:
        # Another process's commit cannot be seen without asking the server, and this must
        # answer without I/O. A value that changes on every call makes the service's latest-
        # version cache miss every time: always correct across processes, at the cost of one
        # indexed read per request. A counter plus a time-to-live would serve stale versions
        # for that long after another instance's write, which the API does not allow.
        return next(self._generations)

    # --- writes -------------------------------------------------------------------------------

    async def create(self, new: NewVersion, now: datetime) -> StoredVersion:
        async with unavailable("the write"):
            stored, mark = await self._insert(new, now)
            await self._settle_name(new.name, self._versions, mark)
        return stored

    async def _insert(self, new: NewVersion, now: datetime) -> tuple[StoredVersion, str]:
        labels = new.body.get("labels") or {}
        fts = self.words.split(
            name=new.name,
            description=new.body.get("description") or "",
            labels=" ".join(f"{k} {label_text(v)}" for k, v in labels.items()),
            features=new.search_text,
        )
        # Identifies this write, so a duplicate key caused by the driver re-sending an insert
        # that had landed is recognised as success rather than written again as a new version.
        write_id = secrets.token_hex(8)
        for attempt in range(CREATE_ATTEMPTS):
            last = await self._versions.find_one(
                {"name": literal(new.name)},
                {"version": 1, "created_us": 1},
                sort=[("version", DESCENDING)],
            )
            newest = last["version"] if last else 0
            version = newest + 1
            check_expected(new.name, new.expected_version, newest, version)
            # created_at grows with the version even if the clock steps back, so as-of is exact.
            created_us = max(_micros(now), (last["created_us"] if last else 0) + 1)
            created_at = _from_micros(created_us)
            doc, summary, etag = seal(
                new.body, version=version, created_at=created_at, deleted_at=None
            )
            mark = secrets.token_hex(8)
            row = {
                "name": new.name,
                "name_lc": new.name.lower(),
                "version": version,
                "vkey": _key(new.name, version),
                "kind": new.kind,
                "created_at": created_at,  # a BSON date for tools; as-of uses created_us
                "created_us": created_us,
                "blob": new.blob,
                "content_hash": new.content_hash,
                "etag": etag,
                "doc": doc,
                "summary": summary,
                "labels": _label_pairs(labels),
                "terms": sorted({w for words in fts.values() for w in words}),
                "fts": fts,
                "ntok": sum(len(words) for words in fts.values()),
                "write_id": write_id,
                "head_mark": mark,
                "outbox": self._queued(now),
            }
            try:
                await self._versions.insert_one(row)
            except DuplicateKeyError:
                landed = await self._versions.find_one(
                    {"name": literal(new.name), "version": version}, {"write_id": 1}
                )
                if landed is None or landed.get("write_id") != write_id:
                    await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, 0.001 * 2**attempt)))
                    continue
            except DocumentTooLarge as exc:
                raise self._too_large(new.name) from exc
            except OperationFailure as exc:
                if exc.code in TOO_LARGE_CODES:
                    raise self._too_large(new.name) from exc
                raise
            return _stored(row, deleted=False), mark
        raise Unavailable(
            f"Too many concurrent writers of feature set {new.name!r}; nothing was written. "
            "Retry the request."
        )

    @staticmethod
    def _too_large(name: str) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"Feature set {name!r} is too large for one MongoDB document (16 MiB with its "
            "index fields); store it as a Parquet table instead."
        )

    @staticmethod
    def _queued(now: datetime) -> dict[str, Any]:
        # Microseconds, not a BSON date: delivery goes in queueing order, and milliseconds tie.
        return {"at_us": _micros(now), "next_at": 0.0, "attempts": 0, "error": None, "claim": None}

    async def delete(self, name: str, version: int, now: datetime) -> StoredVersion | None:
        key = {"name": literal(name), "version": literal(version)}
        async with unavailable("the delete"):
            row, gone = await asyncio.gather(
                self._versions.find_one(key, {**STORED_FIELDS, "created_us": 1}),
                self._deletions.find_one(key, STORED_FIELDS),
            )
            if row is None:
                return None
            if gone is not None:
                return _stored(gone, deleted=True)
            doc, summary, etag = seal(
                orjson.loads(row["doc"]),
                version=version,
                created_at=_from_micros(row["created_us"]),
                deleted_at=now,
            )
            mark = secrets.token_hex(8)
            entry = {
                "name": name,
                "version": version,
                "vkey": _key(name, version),
                "kind": row["kind"],
                "blob": row.get("blob"),
                "content_hash": row["content_hash"],
                "deleted_at": now,
                "etag": etag,
                "doc": doc,
                "summary": summary,
                "head_mark": mark,
                "outbox": self._queued(now),
            }
            try:
                await self._deletions.insert_one(entry)
            except DuplicateKeyError:
                # Deleted concurrently (or our own insert, re-sent by the driver): one delete.
                gone = await self._deletions.find_one(key, STORED_FIELDS)
                assert gone is not None  # deletions are never removed
                return _stored(gone, deleted=True)
            await self._settle_name(name, self._deletions, mark)
        return _stored(entry, deleted=True)

    # --- the latest version of each name, for searches ------------------------------------------

    async def _settle_name(self, name: str, journal: AsyncCollection, mark: str) -> None:
        """Refreshes the head of ``name`` after a committed write; a failure is left to searches.

        The write is acknowledged by then, so an error here must not turn it into a 503: its
        ``head_mark`` stays, and the next search refreshes the head before it reads.
        """
        try:
            await self._refresh_head(name)
            await journal.update_many({"head_mark": literal(mark)}, {"$unset": {"head_mark": ""}})
        except PyMongoError as exc:
            log.warning("latest version of %s not refreshed yet (%s); searches will", name, exc)

    async def _settle_marked(self) -> None:
        """Refreshes the heads of names written since their last refresh (crashes included)."""
        for _ in range(SETTLE_ROUNDS):
            marked = [
                await journal.find({"head_mark": {"$exists": True}}, {"name": 1, "head_mark": 1})
                .limit(SETTLE_BATCH)
                .to_list()
                for journal in self._journals
            ]
            for name in dict.fromkeys(row["name"] for rows in marked for row in rows):
                await self._refresh_head(name)
            for journal, rows in zip(self._journals, marked, strict=True):
                if rows:
                    # Only the marks read above: a write marked since refreshes on its own.
                    await journal.update_many(
                        {"head_mark": {"$in": [row["head_mark"] for row in rows]}},
                        {"$unset": {"head_mark": ""}},
                    )
            if all(len(rows) < SETTLE_BATCH for rows in marked):
                return

    async def _refresh_head(self, name: str) -> None:
        # ``state`` counts the writes of a name (versions created + versions deleted), which
        # only grows. It is read before the latest version, so a snapshot is never older than
        # its state says. Snapshots are inserted, unique per (name, state), and then every
        # snapshot below the highest is removed: whatever order concurrent refreshes run in,
        # the one that read the latest state is the one left, and no update can be lost.
        by_name = {"name": literal(name)}
        created, deleted = await asyncio.gather(
            self._versions.count_documents(by_name), self._deletions.count_documents(by_name)
        )
        state = created + deleted
        live = await self._newest_live(name, by_name, HEAD_SOURCE)
        snapshot: dict[str, Any] = {
            "name": name,
            "name_lc": name.lower(),
            "state": state,
            "live": live is not None,
            "vid": live["_id"] if live else None,
            "version": live["version"] if live else None,
            "created_us": live["created_us"] if live else None,
            "labels": live["labels"] if live else [],
            "terms": live["terms"] if live else [],
            "fts": live["fts"] if live else {},
            "ntok": live["ntok"] if live else 0,
        }
        # A duplicate key: another refresh read this state and stored a snapshot at least as
        # new (content is read after the state), so this one has nothing to add.
        with contextlib.suppress(DuplicateKeyError):
            await self._heads.insert_one(snapshot)
        top = await self._heads.find_one(by_name, {"state": 1}, sort=[("state", DESCENDING)])
        if top is not None:
            await self._heads.delete_many({"name": literal(name), "state": {"$lt": top["state"]}})

    # --- reads --------------------------------------------------------------------------------

    async def _deleted(self, name: str) -> set[int]:
        return {
            row["version"]
            async for row in self._deletions.find({"name": literal(name)}, {"version": 1})
        }

    async def _newest_live(
        self, name: str, query: dict[str, Any], fields: Mapping[str, int]
    ) -> dict[str, Any] | None:
        """The newest version matching ``query`` that is not deleted."""
        newest = [("version", DESCENDING)]
        row, deleted = await asyncio.gather(
            self._versions.find_one(query, fields, sort=newest), self._deleted(name)
        )
        if row is None or row["version"] not in deleted:
            return row
        # Rarely reached (the newest version is deleted), so the common read stays one trip.
        return await self._versions.find_one(
            {"$and": [query, {"version": {"$nin": sorted(deleted)}}]}, fields, sort=newest
        )

    async def named_blobs(self, blobs: list[str]) -> set[str]:
        if not blobs:
            return set()
        query = {"blob": {"$in": [literal(b) for b in blobs]}}
        async with unavailable("the read"):
            found: set[str] = set()
            for collection in (self._versions, self._deletions):
                # From the primary whatever the URL's read preference: the blob sweeper
                # deletes on this answer, so it must see every version already acknowledged.
                primary = collection.with_options(read_preference=ReadPreference.PRIMARY)
                async for row in primary.find(query, {"blob": 1, "_id": 0}):
                    found.add(row["blob"])
        return found

    async def get(self, name: str, version: int) -> StoredVersion | None:
        key = {"name": literal(name), "version": literal(version)}
        async with unavailable("the read"):
            row, gone = await asyncio.gather(
                self._versions.find_one(key, STORED_FIELDS),
                self._deletions.find_one(key, STORED_FIELDS),
            )
        if gone is not None:
            return _stored(gone, deleted=True)
        return _stored(row, deleted=False) if row else None

    async def latest(self, name: str) -> StoredVersion | None:
        async with unavailable("the read"):
            row = await self._newest_live(name, {"name": literal(name)}, STORED_FIELDS)
        return _stored(row, deleted=False) if row else None

    async def newest(self, name: str) -> StoredVersion | None:
        async with unavailable("the read"):
            row = await self._versions.find_one(
                {"name": literal(name)}, {"version": 1}, sort=[("version", DESCENDING)]
            )
            if row is None:
                return None
            return await self.get(name, row["version"])

    async def as_of(self, name: str, at: datetime) -> StoredVersion | None:
        # Microseconds as an integer, not the BSON date (milliseconds): a time 1 µs before a
        # version must not find it.
        query = {"name": literal(name), "created_us": {"$lte": _micros(at)}}
        async with unavailable("the read"):
            row = await self._newest_live(name, query, STORED_FIELDS)
        return _stored(row, deleted=False) if row else None

    async def versions(self, name: str, limit: int, before: int | None) -> Hits:
        query: dict[str, Any] = {"name": literal(name)}
        async with unavailable("the read"):
            total = await self._versions.count_documents(query)
            if before is not None:
                query["version"] = {"$lt": int(before)}
            rows = (
                await self._versions.find(query, {"version": 1, "summary": 1})
                .sort("version", DESCENDING)
                .limit(limit + 1)
                .to_list()
            )
            next_cursor = None
            if len(rows) > limit:
                rows = rows[:limit]
                next_cursor = encode_cursor([rows[-1]["version"]])
            # Deleted versions are listed as they read now, deleted.
            numbers = {"$in": [row["version"] for row in rows]}
            gone = {
                row["version"]: row["summary"]
                async for row in self._deletions.find(
                    {"name": literal(name), "version": numbers}, {"version": 1, "summary": 1}
                )
            }
        docs = [bytes(gone.get(row["version"], row["summary"])) for row in rows]
        return Hits(docs=docs, total=total, next_cursor=next_cursor)

    # --- search -------------------------------------------------------------------------------

    async def search(self, query: FeatureSetQuery) -> Hits:
        phrases: list[Phrase] | None = None
        if query.q:
            phrases = self._phrases(query.q)
            if not phrases:
                return Hits(docs=[], total=0)
        if query.cursor is not None and len(query.cursor) != 2:
            raise InvalidCursor("The cursor does not belong to this kind of search.")
        async with unavailable("the search"):
            filters: list[dict[str, Any]]
            if query.all_versions:
                filters = [{"vkey": {"$nin": await self._deletions.distinct("vkey")}}]
            else:
                await self._settle_marked()
                filters = [{"live": True}]
            filters += self._filters(query)
            if phrases is not None:
                return await self._text_search(query, filters, phrases)
            return await self._listing(query, filters)

    @staticmethod
    def _filters(query: FeatureSetQuery) -> list[dict[str, Any]]:
        # Versions and head snapshots hold name, name_lc and labels under the same names.
        found: list[dict[str, Any]] = []
        if query.name and query.name_exact:
            found.append({"name": literal(query.name)})
        elif query.name:
            prefix = query.name.lower()
            found.append({"name_lc": {"$gte": prefix, "$lt": prefix + STRING_MAX}})
        found.extend({"labels": literal(_pair(key, value))} for key, value in query.labels)
        return found

    @staticmethod
    def _order(all_versions: bool) -> list[tuple[str, int]]:
        # The SQLite order: the sort key, then (every version of a name together) newest
        # first, then creation order; the name breaks the last ties deterministically.
        tail = [("created_us", ASCENDING), ("name", ASCENDING)]
        return [("version", DESCENDING), *tail] if all_versions else tail

    async def _listing(self, query: FeatureSetQuery, filters: list[dict[str, Any]]) -> Hits:
        order = [("name_lc", ASCENDING), *self._order(query.all_versions)]
        page = list(filters)
        if query.cursor is not None:
            first, rest = query.cursor
            if not isinstance(first, str):
                raise InvalidCursor("The cursor does not belong to this kind of search.")
            page.append(_after(order, [first, *_cursor_rest(rest, query.all_versions)]))
        column = "doc" if query.full else "summary"
        source = self._versions if query.all_versions else self._heads
        fields = {f: 1 for f, _ in order}
        fields |= {column: 1} if query.all_versions else {"vid": 1, "state": 1}
        rows = (
            await source.find({"$and": page}, fields)
            .sort(order)
            .skip(query.offset)
            .limit(query.limit + 1)
            .to_list()
        )
        if not query.all_versions:
            rows = _newest_snapshots(rows)
        next_cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            last = rows[-1]
            next_cursor = encode_cursor([last["name_lc"], [last[f] for f, _ in order[1:]]])
        if not rows and query.cursor is None and query.offset == 0:
            total = 0
        else:
            total = await source.count_documents({"$and": filters})
        if query.all_versions:
            docs = [bytes(r[column]) for r in rows]
        else:
            docs = await self._docs([r["vid"] for r in rows], column)
        return Hits(docs=docs, total=total, next_cursor=next_cursor)

    async def _docs(self, ids: list[Any], column: str) -> list[bytes]:
        """The stored documents (or summaries) of version ids, in the order given."""
        if not ids:
            return []
        found = {
            row["_id"]: bytes(row[column])
            async for row in self._versions.find({"_id": {"$in": ids}}, {column: 1})
        }
        return [found[i] for i in ids if i in found]

    def _phrases(self, text: str) -> list[Phrase]:
        """The phrases ``cairn.sqlite.fts_query`` makes of ``text``, split by FTS5's rules.

        Each word run becomes one quoted phrase and the last is a prefix; a run FTS5 finds no
        word in (an underscore) drops out of the query, and with it the prefix.
        """
        chunks = QUERY_CHUNK.findall(text)[:QUERY_CHUNKS]
        phrases: list[Phrase] = []
        for i, chunk in enumerate(chunks):
            words = self.words.split(name=chunk)["n"]
            if words:
                phrases.append(Phrase(words=words, prefix=i == len(chunks) - 1))
        return phrases

    async def _text_search(
        self, query: FeatureSetQuery, filters: list[dict[str, Any]], phrases: list[Phrase]
    ) -> Hits:
        for phrase in phrases:
            filters = [*filters, *phrase.filters()]
        source = self._versions if query.all_versions else self._heads
        order = self._order(query.all_versions)
        fields = {"fts": 1, "ntok": 1, "vid": 1, "state": 1} | {f: 1 for f, _ in order}
        # Every match is ranked here (the server has no BM25), so only small fields travel.
        candidates = [
            row
            async for row in source.find({"$and": filters}, fields)
            if all(phrase.frequency(row["fts"]) > 0 for phrase in phrases)
        ]
        if not query.all_versions:
            candidates = _newest_snapshots(candidates)
        if not candidates:
            return Hits(docs=[], total=0)
        idf, avgdl = await self._corpus(phrases)

        def sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
            return (row["score"], *_directed([row[f] for f, _ in order], order))

        for row in candidates:
            row["score"] = _bm25(phrases, idf, avgdl, row)
        candidates.sort(key=sort_key)
        total = len(candidates)
        if query.cursor is not None:
            first, rest = query.cursor
            if not isinstance(first, int | float) or isinstance(first, bool):
                raise InvalidCursor("The cursor does not belong to this kind of search.")
            after = (first, *_directed(_cursor_rest(rest, query.all_versions), order))
            candidates = [row for row in candidates if sort_key(row) > after]
        page = candidates[query.offset : query.offset + query.limit + 1]
        next_cursor = None
        if len(page) > query.limit:
            page = page[: query.limit]
            last = page[-1]
            next_cursor = encode_cursor([last["score"], [last[f] for f, _ in order]])
        column = "doc" if query.full else "summary"
        ids = [row["_id"] if query.all_versions else row["vid"] for row in page]
        return Hits(docs=await self._docs(ids, column), total=total, next_cursor=next_cursor)

    async def _corpus(self, phrases: list[Phrase]) -> tuple[list[float], float]:
        """IDF of each phrase and the mean words per version, over every version (FTS5's rows,
        deleted versions included, as the SQLite index keeps them)."""
        rows = await self._versions.estimated_document_count()
        summed = await (
            await self._versions.aggregate([{"$group": {"_id": None, "n": {"$sum": "$ntok"}}}])
        ).to_list()
        words = summed[0]["n"] if summed else 0
        avgdl = (words / rows if rows else 0.0) or 1.0
        idf: list[float] = []
        for phrase in phrases:
            match = {"$and": phrase.filters()}
            if len(phrase.words) == 1:
                hits = await self._versions.count_documents(match)
            else:  # words in order, next to each other: only the documents can tell
                hits = 0
                async for row in self._versions.find(match, {"fts": 1}):
                    hits += phrase.frequency(row["fts"]) > 0
            value = math.log((rows - hits + 0.5) / (hits + 0.5))
            idf.append(value if value > 0 else 1e-6)
        return idf, avgdl

    # --- outbox -------------------------------------------------------------------------------
    # A name's queued registrations are the ``outbox`` fields of the versions, deletions and
    # registration documents written for it. The ``seq`` handed to the registrar is a claim:
    # outbox_due stamps it on every queued registration of the names it returns before the
    # registrar reads what to send, so outbox_done drops only registrations that delivery
    # covered, and one queued later carries no claim and stays. A counter compared with "<="
    # would not do: without a transaction, a write that read the counter before a delivery
    # could commit after it with a smaller number and be dropped undelivered. A claim lost to a
    # concurrent update only means one more delivery.

    async def outbox_enqueue(self, name: str, now: datetime) -> None:
        async with unavailable("the outbox write"):
            # An insert, not an update of a queued entry: FerretDB could lose an update to a
            # concurrent outbox_done, and the registration with it. The driver sets _id before
            # sending, so a duplicate key is this insert, re-sent after it landed.
            with contextlib.suppress(DuplicateKeyError):
                await self._registrations.insert_one({"name": name, "outbox": self._queued(now)})

    async def outbox_due(self, now: float, limit: int) -> list[OutboxEntry]:
        async with unavailable("the outbox read"):
            first_queued: dict[str, int] = {}
            for journal in self._queues:
                seen: set[str] = set()
                cursor = journal.find(
                    {"outbox.next_at": {"$lte": now}}, {"name": 1, "outbox.at_us": 1}
                ).sort([("outbox.at_us", ASCENDING), ("_id", ASCENDING)])
                try:
                    async for row in cursor:
                        at = row["outbox"]["at_us"]
                        if row["name"] not in first_queued or at < first_queued[row["name"]]:
                            first_queued[row["name"]] = at
                        seen.add(row["name"])
                        if len(seen) >= limit:
                            break
                finally:
                    # An open cursor pins a server connection (FerretDB: an SQLite reader).
                    await cursor.close()
            names = sorted(first_queued, key=lambda n: (first_queued[n], n))[:limit]
            if not names:
                return []
            claim = secrets.randbits(62)
            queued = {
                "$and": [
                    {"$or": [{"name": literal(name)} for name in names]},
                    {"outbox.next_at": {"$exists": True}},
                ]
            }
            attempts = dict.fromkeys(names, 0)
            for journal in self._queues:
                await journal.update_many(queued, {"$set": {"outbox.claim": claim}})
                async for row in journal.find(queued, {"name": 1, "outbox.attempts": 1}):
                    attempts[row["name"]] = max(attempts[row["name"]], row["outbox"]["attempts"])
        return [OutboxEntry(name=n, seq=claim, attempts=a) for n, a in attempts.items()]

    async def outbox_next_due(self) -> float | None:
        queued = {"outbox.next_at": {"$exists": True}}
        async with unavailable("the outbox read"):
            rows = [
                await journal.find_one(
                    queued, {"outbox.next_at": 1}, sort=[("outbox.next_at", ASCENDING)]
                )
                for journal in self._queues
            ]
        due = [float(row["outbox"]["next_at"]) for row in rows if row is not None]
        return min(due, default=None)

    async def outbox_done(self, name: str, seq: int) -> None:
        covered = {"name": literal(name), "outbox.claim": literal(seq)}
        async with unavailable("the outbox update"):
            for journal in self._journals:
                await journal.update_many(covered, {"$unset": {"outbox": ""}})
            # A registration document holds nothing but its outbox entry.
            await self._registrations.delete_many(covered)

    async def outbox_retry(self, name: str, attempts: int, next_at: float, error: str) -> None:
        retry = {"outbox.attempts": attempts, "outbox.next_at": next_at, "outbox.error": error}
        async with unavailable("the outbox update"):
            for journal in self._queues:
                await journal.update_many(
                    {"name": literal(name), "outbox.next_at": {"$exists": True}}, {"$set": retry}
                )

    async def outbox_pending(self) -> int:
        queued = {"outbox.next_at": {"$exists": True}}
        async with unavailable("the outbox read"):
            names = [set(await journal.distinct("name", queued)) for journal in self._queues]
        return len(set().union(*names))


def _newest_snapshots(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keeps one head snapshot per name, the newest: an older one lingers only while the
    refresh that replaces it is running."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        held = best.get(row["name"])
        if held is None or row["state"] > held["state"]:
            best[row["name"]] = row
    return [row for row in rows if best[row["name"]] is row]


def _bm25(phrases: list[Phrase], idf: list[float], avgdl: float, row: Mapping[str, Any]) -> float:
    # FTS5's bm25(), term for term: negative, lower is better, so an ascending sort ranks.
    size = float(row["ntok"])
    score = 0.0
    for phrase, weight in zip(phrases, idf, strict=True):
        freq = phrase.frequency(row["fts"])
        score += weight * (
            (freq * (BM25_K1 + 1.0)) / (freq + BM25_K1 * (1 - BM25_B + BM25_B * size / avgdl))
        )
    return -1.0 * score


def from_settings(settings: Settings) -> MongoFeatureStore:
    return MongoFeatureStore(settings)

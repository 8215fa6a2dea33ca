"""Production catalogue store: MongoDB is the source of truth, Elasticsearch the search index.

A write is acknowledged once MongoDB has it (majority write concern, journaled). Before the
assets are written, an intent per asset goes into the ``asset_outbox`` collection: "this asset
may have changed, index its current state". The write path then indexes the batch at once (so
a search right after a write sees it) and clears the intents; if Elasticsearch is down, or the
process dies anywhere in between, the intents stay, and a background indexer in every catalogue
process indexes the assets' current state from MongoDB when it can. Indexing reads the asset,
not the intent, so a stale or repeated intent is harmless and no transaction is needed.
Documents go into Elasticsearch with their revision as an external version, so a late or
repeated indexing never replaces a newer revision.

Names are unique among live assets. Not every MongoDB-wire server has partial unique indexes,
so each live name is claimed by a small ``asset_names`` document; a claim left behind by a
crash is taken over once its asset no longer holds the name (or never came to exist).

New assets are inserted in bulk; a changed asset is replaced only if its revision is still the
one the change was computed from, so concurrent writers never lose an update.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cairn.errors import Conflict, Unavailable
from cairn.models import (
    Asset,
    BulkItemResult,
    BulkStatus,
    EdgeOrigin,
    JobRun,
    ReportedEdge,
    ReportedFacet,
    searchable_labels,
)
from cairn.mongo import (
    PyMongoError,
    busy,
    connect,
    literal,
    migrate,
    unavailable,
)
from cairn.retry import backoff_delay
from cairn.settings import Settings
from cairn.tasks import stop
from catalogue_service.backends.base import (
    LineageReport,
    PreparedWrite,
    SearchHits,
    SearchQuery,
    located_order,
    name_taken,
    origin,
    owner_conflict,
    stale_revision,
    stamp,
)
from catalogue_service.backends.es_index import Indexed, SearchIndex
from catalogue_service.backends.index_generation import IndexGeneration
from catalogue_service.backends.page_cache import PageCache
from catalogue_service.spelling.elasticsearch import ElasticSpeller

try:
    from bson import ObjectId
    from pymongo import ASCENDING, DESCENDING, ReadPreference
    from pymongo.asynchronous.database import AsyncDatabase
    from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
except ImportError as exc:  # pragma: no cover
    raise ImportError(
        f"{exc}; the mongo backend needs pip install 'cairn-catalogue[mongo]'"
    ) from exc

log = logging.getLogger("cairn.catalogue.mongo")

INDEX_BATCH = 1000
POLL_SECONDS = 1.0
MAX_BACKOFF = 10.0
# The readiness check waits this long for Elasticsearch: probes time out in a second or two.
READY_SEARCH_S = 1.0
WRITE_ATTEMPTS = 8
# Attempts of a whole write that the database refused as busy (FerretDB: SQLITE_BUSY).
BUSY_ATTEMPTS = 6
# Buckets of the aggregation that lists the asset types (``type_counts``): more than any
# catalogue has types, well under Elasticsearch's own bound (search.max_buckets, 65,536).
ALL_TYPES = 10_000
# The fields a write compares against.
HEAD = {"hash": 1, "revision": 1, "deleted": 1, "name": 1, "updated_at": 1, "drift": 1}
# A write being applied: (the write, the state it was computed from, the row to store).
Pending = tuple[PreparedWrite, dict[str, Any] | None, dict[str, Any]]
# A name claim whose asset does not exist yet is honoured this long (its write may be
# in flight); after that it is a crash's leftover and may be taken over.
CLAIM_GRACE = timedelta(seconds=60)
# How old an index intent must be before the background indexer takes it (the request that
# wrote it indexes inline within its own timeout).
INTENT_GRACE = timedelta(seconds=15)


async def _schema_v1(db: AsyncDatabase) -> None:
    assets = db.get_collection("assets")
    await assets.create_index([("name", ASCENDING)], name="name")
    await assets.create_index([("name_lc", ASCENDING)], name="name_lc")
    await assets.create_index([("tags", ASCENDING)], name="tags")
    await assets.create_index([("labels", ASCENDING)], name="labels")
    await assets.create_index([("owners", ASCENDING)], name="owners")
    await assets.create_index([("depends_on", ASCENDING)], name="depends_on")
    await assets.create_index([("updated_at", DESCENDING)], name="updated_at")
    await db.get_collection("asset_outbox").create_index([("asset", ASCENDING)], name="asset")


async def _schema_v2(db: AsyncDatabase) -> None:
    """Lineage reported from outside the manifests, and assets found by location."""
    assets = db.get_collection("assets")
    await assets.create_index([("location", ASCENDING)], name="location")
    # Rows written before this step lack the top-level location: copy it from the document.
    async for row in assets.find({"location": {"$exists": False}}, {"doc": 1}):
        location = orjson.loads(row["doc"]).get("location")
        await assets.update_one({"_id": row["_id"]}, {"$set": {"location": location}})
    edges = db.get_collection("reported_edges")
    await edges.create_index([("upstream", ASCENDING)], name="upstream")
    await edges.create_index([("downstream", ASCENDING)], name="downstream")
    runs = db.get_collection("job_runs")
    await runs.create_index([("job_id", ASCENDING), ("updated_at", DESCENDING)], name="recent")
    await db.get_collection("reported_facets").create_index(
        [("asset_id", ASCENDING)], name="asset_id"
    )


async def _schema_v3(db: AsyncDatabase) -> None:
    """Tags are indexed in lower case, as searches now match them: every asset is queued for
    the outbox indexer, so an index written before finds ``tag=sales`` on ``Sales`` too without
    a ``cairn reindex``. The intents are dated before ``INTENT_GRACE`` (no request indexes
    these inline), so the indexer takes them at once; a second process running this step
    queues each asset twice, which indexes it twice, no more."""
    outbox = db.get_collection("asset_outbox")
    settled = int((datetime.now(UTC) - INTENT_GRACE).timestamp()) - 1
    batch: list[dict[str, Any]] = []
    async for row in db.get_collection("assets").find({}, {"_id": 1}):
        # An ObjectId's first four bytes are its time; the rest only has to be unique.
        intent = ObjectId(settled.to_bytes(4, "big") + os.urandom(8))
        batch.append({"_id": intent, "asset": row["_id"]})
        if len(batch) == 1000:
            await outbox.insert_many(batch)
            batch = []
    if batch:
        await outbox.insert_many(batch)


MIGRATIONS = {1: _schema_v1, 2: _schema_v2, 3: _schema_v3}


def _row(doc: dict[str, Any], content_hash: str) -> dict[str, Any]:
    """The MongoDB document of an asset: the JSON as stored plus the fields queries use."""
    return {
        "_id": doc["id"],
        "name": doc["name"],
        "name_lc": doc["name"].lower(),
        "type": doc["type"],
        "deleted": bool(doc.get("deleted")),
        "revision": doc["revision"],
        "hash": content_hash,
        "updated_at": doc["updated_at"],
        "tags": doc.get("tags") or [],
        "labels": [f"{k}={v}" for k, v in searchable_labels(doc.get("labels"))],
        "owners": doc.get("owners") or [],
        "depends_on": doc.get("depends_on") or [],
        "location": doc.get("location"),
        "drift": doc.get("drift"),
        # The JSON bytes, so label keys like "$where" or "a.b" are data, never field paths.
        "doc": orjson.dumps(doc),
    }


def _head(writes: list[PreparedWrite]) -> dict[str, int]:
    """What a write reads of the current state; crawled writes also read the owner."""
    return {**HEAD, "doc": 1} if any(w.doc.get("volume") for w in writes) else HEAD


def _result(write: PreparedWrite, status: BulkStatus, **fields: Any) -> BulkItemResult:
    return BulkItemResult(
        index=write.index, id=write.doc["id"], name=write.doc["name"], status=status, **fields
    )


def _refusal(write: PreparedWrite, current: dict[str, Any] | None) -> BulkItemResult | None:
    """Why ``write`` may not be applied on top of ``current`` (a HEAD row), if it may not."""
    expected = write.expect_revision
    if expected is not None and (current is None or current["revision"] != expected):
        found = None if current is None else current["revision"]
        error = stale_revision(write.doc["id"], expected, found)
        return _result(write, "error", error=error, conflict="revision")
    if current is not None and current["hash"] != write.content_hash and write.doc.get("volume"):
        taken = owner_conflict(write.doc, orjson.loads(current["doc"]))
        if taken is not None:
            return _result(write, "error", error=taken, conflict="owner")
    return None


async def _insert_unordered(collection: Any, docs: list[dict[str, Any]]) -> set[int]:
    """Inserts ``docs``, unordered; returns the positions refused because their ``_id``
    exists (any other error is raised)."""
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if any(e.get("code") != 11000 for e in errors):
            raise
        return {e["index"] for e in errors}
    return set()


def _log_refusals(outcome: list[Indexed]) -> None:
    for item in [item for item in outcome if not item.ok][:5]:
        log.error("Elasticsearch refused asset %s: %s", item.id, item.error)


INSTANCE_KEY = "instance:catalogue"  # in cairn_meta, beside the schema versions


def _asset(row: dict[str, Any]) -> Asset:
    return Asset.model_validate_json(row["doc"])


class MongoStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.client, self.db = connect(settings, "cairn-catalogue")
        self.assets = self.db.get_collection("assets")
        self.names = self.db.get_collection("asset_names")
        self.outbox = self.db.get_collection("asset_outbox")
        self.edges = self.db.get_collection("reported_edges")
        self.runs = self.db.get_collection("job_runs")
        self.facets = self.db.get_collection("reported_facets")
        self.events = self.db.get_collection("lineage_events")
        # Short: a write waits for its inline indexing at most this long before the
        # background indexer takes over.
        self.index = SearchIndex(
            settings.es_url, settings.es_index, timeout=min(settings.http_timeout, 10.0)
        )
        self._wake = asyncio.Event()
        self._indexer: asyncio.Task[None] | None = None
        # Whole search answers and spelling lookups, kept while the index holds what they
        # were computed from. The counter is read from the primary, whatever the URL's read
        # preference: a secondary's may lag.
        meta = self.db.get_collection("cairn_meta", read_preference=ReadPreference.PRIMARY)
        self.generation = IndexGeneration(meta)
        self._pages = PageCache(max_bytes=settings.search_cache_mib << 20)
        self.speller = ElasticSpeller(self.index, self._kept_generation)
        self.index_lag_error: str | None = None

    # --- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        async with unavailable("start-up"):
            await migrate(self.db, "catalogue", MIGRATIONS)
            await self._instance_id()
        try:
            await self.index.ensure()
        except Exception as exc:  # the indexer retries; writes must not wait for the index
            log.warning("Elasticsearch index not ready at start-up: %s", exc)
        self._indexer = asyncio.create_task(self._index_forever(), name="cairn-es-indexer")
        self.generation.start()

    async def close(self) -> None:
        await self.generation.stop()
        if self._indexer is not None:
            await stop(self._indexer)
        await self.index.close()
        await self.client.close()

    async def ping(self) -> str | None:
        async with unavailable("the readiness check"):
            await self.db.command("ping")
        # Elasticsearch down is not "not ready": MongoDB, the source of truth, still takes
        # writes and answers reads by id (the outbox indexer catches up), which a load
        # balancer would cut off. The answer says what does not work meanwhile.
        try:
            async with asyncio.timeout(READY_SEARCH_S):
                await self.index.ping()
        except Unavailable as exc:
            return exc.detail
        except TimeoutError:
            return (
                f"Elasticsearch did not answer within {READY_SEARCH_S:g} s, so searches may "
                "fail or be slow; writes are still accepted."
            )
        return None

    async def instance_id(self) -> str:
        async with unavailable("reading the catalogue's instance id"):
            return await self._instance_id()

    async def _instance_id(self) -> str:
        # Read, not cached: a database dropped while we run must get a new identity.
        meta = self.db.get_collection("cairn_meta")
        found = await meta.find_one({"_id": INSTANCE_KEY})
        if found is None:
            # Insert-if-absent: of two processes starting at once, the first one wins.
            with contextlib.suppress(DuplicateKeyError):
                await meta.insert_one({"_id": INSTANCE_KEY, "id": uuid.uuid4().hex})
            found = await meta.find_one({"_id": INSTANCE_KEY})
        assert found is not None
        return str(found["id"])

    # --- writes -------------------------------------------------------------------------------

    async def upsert_chunks(
        self, chunks: Iterator[list[PreparedWrite]], now: datetime
    ) -> list[BulkItemResult]:
        writes = [write for chunk in chunks for write in chunk]
        return await self.upsert(writes, now) if writes else []

    async def upsert(self, writes: list[PreparedWrite], now: datetime) -> list[BulkItemResult]:
        stamp = now.isoformat().replace("+00:00", "Z")
        async with unavailable("the write"):
            for attempt in range(BUSY_ATTEMPTS):
                try:
                    results, rows, intents = await self._write(writes, now, stamp)
                    break
                except OperationFailure as exc:
                    # Nothing of the failed command was written; what earlier commands of
                    # this write did is read back by the next attempt (as "unchanged").
                    if not busy(exc) or attempt == BUSY_ATTEMPTS - 1:
                        raise
                    await asyncio.sleep(backoff_delay(attempt, base=0.02, cap=1.0))
        if rows:
            await self._index_now(rows, intents)
        return results

    async def _write(
        self, writes: list[PreparedWrite], now: datetime, stamp: str
    ) -> tuple[list[BulkItemResult], list[dict[str, Any]], list[Any]]:
        results: dict[int, BulkItemResult] = {}
        rows, intents, rest = await self._insert_new(writes, now, stamp, results)
        if rest:
            more_rows, more_intents = await self._write_existing(rest, now, stamp, results)
            rows += more_rows
            intents += more_intents
        return [results[i] for i in sorted(results)], rows, intents

    async def _insert_new(
        self,
        writes: list[PreparedWrite],
        now: datetime,
        stamp: str,
        results: dict[int, BulkItemResult],
    ) -> tuple[list[dict[str, Any]], list[Any], list[PreparedWrite]]:
        """Inserts the writes that look new without reading anything first; returns the rows
        and intents written and the writes left for ``_write_existing``.

        Most bulk writes create assets (a first crawl, an ingest). Reading the batch's ids
        first cost one ``_id $in`` query per batch, which a server without an index on it
        for ``$in`` (FerretDB on SQLite) answers by scanning the whole collection. Here a
        write is simply tried: its name claim and then its row are inserted, unordered, and
        only the items either insert refuses (the name or the id exists already) go the way
        of ``_write_existing``, which reads just those. Conditional writes, deletes and names
        that occur twice in the batch always go that way.
        """
        counts: dict[str, int] = {}
        for w in writes:
            counts[w.doc["name"]] = counts.get(w.doc["name"], 0) + 1
        tried = [
            w
            for w in writes
            if w.expect_revision is None and not w.doc.get("deleted") and counts[w.doc["name"]] == 1
        ]
        if not tried:
            return [], [], writes
        rest = {w.doc["id"]: w for w in writes}
        taken = await _insert_unordered(
            self.names, [{"_id": w.doc["name"], "asset": w.doc["id"], "at": now} for w in tried]
        )
        claimed = [w for i, w in enumerate(tried) if i not in taken]
        if not claimed:
            return [], [], writes
        rows = [
            _row({**w.doc, "revision": 1, "updated_at": stamp}, w.content_hash) for w in claimed
        ]
        # The intents first: whatever happens next, the indexer will look at these assets.
        intents = (
            await self.outbox.insert_many([{"asset": row["_id"]} for row in rows])
        ).inserted_ids
        exists = await _insert_unordered(self.assets, rows)
        kept_rows, kept_intents, dropped = [], [], []
        for i, (write, row) in enumerate(zip(claimed, rows, strict=True)):
            if i in exists:  # the id is stored already: an update (its name claim is its own)
                dropped.append(intents[i])
                continue
            del rest[row["_id"]]
            write.stored = {**write.doc, "revision": 1, "updated_at": stamp}
            results[write.index] = _result(write, "created", revision=1)
            kept_rows.append(row)
            kept_intents.append(intents[i])
        if dropped:
            await self.outbox.delete_many({"_id": {"$in": dropped}})
        return kept_rows, kept_intents, list(rest.values())

    async def _write_existing(
        self,
        writes: list[PreparedWrite],
        now: datetime,
        stamp: str,
        results: dict[int, BulkItemResult],
    ) -> tuple[list[dict[str, Any]], list[Any]]:
        ids = [w.doc["id"] for w in writes]
        fields = _head(writes)
        current = {row["_id"]: row async for row in self.assets.find({"_id": {"$in": ids}}, fields)}
        changed: list[PreparedWrite] = []
        for write in writes:
            old = current.get(write.doc["id"])
            refused = _refusal(write, old)
            if refused is not None:
                results[write.index] = refused
            elif old is not None and old["hash"] == write.content_hash:
                write.stored = {
                    **write.doc,
                    "revision": old["revision"],
                    "updated_at": old.get("updated_at"),
                }
                results[write.index] = _result(write, "unchanged", revision=old["revision"])
            else:
                changed.append(write)
        clashes = await self._claim_all(
            [(w.doc["name"], w.doc["id"], w.doc) for w in changed if not w.doc.get("deleted")],
            now,
        )
        pending: list[Pending] = []
        for write in changed:
            if (clash := clashes.get(write.doc["id"])) is not None:
                results[write.index] = _result(write, "error", error=clash, conflict="name")
                continue
            old = current.get(write.doc["id"])
            revision = 1 if old is None else old["revision"] + 1
            stored = {**write.doc, "revision": revision, "updated_at": stamp}
            if old is not None and old.get("drift") is not None:
                # The drift verdict describes the data, not the manifest: a rewrite keeps it.
                stored["drift"] = old["drift"]
            pending.append((write, old, _row(stored, write.content_hash)))
        if not pending:
            return [], []

        # The intents first: whatever happens next, the indexer will look at these assets.
        intents = (
            await self.outbox.insert_many([{"asset": row["_id"]} for _, _, row in pending])
        ).inserted_ids
        written, refusals = await self._store(pending)
        rows: list[dict[str, Any]] = []
        for write, _, _ in pending:
            doc = write.doc
            if (refused := refusals.get(doc["id"])) is not None:
                results[write.index] = refused
                continue
            final = written.get(doc["id"])
            if final is None:  # another writer won every attempt; report, do not guess
                results[write.index] = _result(
                    write, "error", error="the asset changed concurrently; retry"
                )
                continue
            row, was = final
            status: BulkStatus
            if was is None:
                status = "deleted" if row["deleted"] else "created"
            else:
                status = "deleted" if row["deleted"] and not was["deleted"] else "updated"
            write.stored = {**doc, "revision": row["revision"], "updated_at": row["updated_at"]}
            results[write.index] = _result(write, status, revision=row["revision"])
            # Free the names this asset no longer holds (a rename, a delete).
            released = {was["name"]} if was is not None and was["name"] != row["name"] else set()
            if row["deleted"]:
                released.add(row["name"])
            for name in released:
                await self.names.delete_one({"_id": literal(name), "asset": literal(row["_id"])})
            rows.append(row)
        return rows, intents

    async def _store(
        self, pending: list[Pending]
    ) -> tuple[dict[str, tuple[dict[str, Any], dict[str, Any] | None]], dict[str, BulkItemResult]]:
        """Inserts new assets in bulk and replaces changed ones if their revision still holds.

        A row whose asset changed in between (another writer) is checked again against the
        newer revision (its owner, the revision a conditional write expects) and, if still
        allowed, recomputed on top of it and tried again. Returns the rows written (with the
        state each replaced) and the items refused on the way.
        """
        done: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {}
        refused: dict[str, BulkItemResult] = {}
        todo = pending
        for attempt in range(WRITE_ATTEMPTS):
            retry: list[Pending] = []
            fresh = [item for item in todo if item[1] is None]
            if fresh:
                taken: set[int] = set()
                try:
                    await self.assets.insert_many([row for _, _, row in fresh], ordered=False)
                except BulkWriteError as exc:
                    errors = exc.details.get("writeErrors", [])
                    if any(e.get("code") != 11000 for e in errors):
                        raise
                    taken = {e["index"] for e in errors}
                for position, (write, old, row) in enumerate(fresh):
                    if position in taken:  # created meanwhile by another writer
                        retry.append((write, old, row))
                    else:
                        done[row["_id"]] = (row, old)
            for write, old, row in todo:
                if old is None:
                    continue
                answer = await self.assets.replace_one(
                    {"_id": literal(row["_id"]), "revision": literal(old["revision"])}, row
                )
                if answer.matched_count:
                    done[row["_id"]] = (row, old)
                else:
                    retry.append((write, old, row))
            if not retry:
                break
            todo = []
            for write, _, row in retry:
                now = await self.assets.find_one({"_id": literal(row["_id"])}, _head([write]))
                refusal = _refusal(write, now)
                if refusal is not None:
                    refused[row["_id"]] = refusal
                    continue
                if now is not None and now["hash"] == row["hash"]:
                    # Another writer stored the same content: that is this write, done.
                    done[row["_id"]] = ({**row, "revision": now["revision"]}, now)
                    continue
                doc = orjson.loads(row["doc"])
                doc["revision"] = 1 if now is None else now["revision"] + 1
                todo.append((write, now, _row(doc, row["hash"])))
            if not todo:
                break
            await asyncio.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        return done, refused

    async def _claim_all(
        self, wanted: list[tuple[str, str, dict[str, Any]]], now: datetime
    ) -> dict[str, str]:
        """Claims each (name, asset id, its document) in order; returns {asset id: why not}
        for refusals."""
        refused: dict[str, str] = {}
        first: dict[str, tuple[str, dict[str, Any]]] = {}
        fresh: list[tuple[str, str, dict[str, Any]]] = []
        for name, asset_id, doc in wanted:
            if name in first and first[name][0] != asset_id:
                holder, theirs = first[name]
                where = f"{origin(theirs)}, earlier in this request"
                refused[asset_id] = name_taken(name, holder, where, doc)
            else:
                first[name] = (asset_id, doc)
                fresh.append((name, asset_id, doc))
        if not fresh:
            return refused
        taken: set[int] = set()
        try:
            await self.names.insert_many(
                [{"_id": name, "asset": asset_id, "at": now} for name, asset_id, _ in fresh],
                ordered=False,
            )
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            taken = {e["index"] for e in errors}
        for position in sorted(taken):
            name, asset_id, doc = fresh[position]
            clash = await self._claim(name, asset_id, now, doc)
            if clash is not None:
                refused[asset_id] = clash
        return refused

    async def _claim(
        self, name: str, asset_id: str, now: datetime, doc: dict[str, Any]
    ) -> str | None:
        """Claims ``name`` for ``asset_id`` (whose document is ``doc``) when it is held
        already; returns why not."""
        for _ in range(WRITE_ATTEMPTS):
            claim = await self.names.find_one({"_id": literal(name)})
            if claim is None:
                try:
                    await self.names.insert_one({"_id": name, "asset": asset_id, "at": now})
                    return None
                except DuplicateKeyError:
                    continue
            holder = claim["asset"]
            if holder == asset_id:
                return None
            other = await self.assets.find_one({"_id": literal(holder)})
            if other is not None and other["name"] == name and not other["deleted"]:
                theirs = orjson.loads(other["doc"])
                where = origin(theirs)
                return name_taken(name, holder, where, doc)
            if other is None and now - claim["at"] < CLAIM_GRACE:
                # Its asset may be being written right now by another request.
                return f"name {name!r} is being claimed by another request; retry"
            # A claim left by a crash or a rename: take it over unless someone else just did.
            await self.names.update_one(
                {"_id": literal(name), "asset": literal(holder)},
                {"$set": {"asset": asset_id, "at": now}},
            )
        return f"name {name!r} is being claimed concurrently; retry"

    async def set_drift(self, asset_id: str, flag: dict[str, Any]) -> Asset | None:
        """Sets the flag on the revision it read (a write in between is read again), then
        indexes the asset; the revision stays, so Elasticsearch takes the same version."""
        async with unavailable("the write"):
            for _ in range(WRITE_ATTEMPTS):
                row = await self.assets.find_one({"_id": literal(asset_id)})
                if row is None:
                    return None
                doc = orjson.loads(row["doc"])
                if doc.get("drift") == flag:
                    return Asset.model_validate(doc)
                doc["drift"] = flag
                intent = (await self.outbox.insert_one({"asset": asset_id})).inserted_id
                answer = await self.assets.update_one(
                    {"_id": literal(asset_id), "revision": literal(row["revision"])},
                    {"$set": {"doc": orjson.dumps(doc), "drift": flag}},
                )
                if answer.matched_count:
                    await self._index_now([{**row, "doc": orjson.dumps(doc)}], [intent])
                    return Asset.model_validate(doc)
        raise Conflict(f"asset {asset_id} kept changing while its drift flag was set; retry")

    # --- the index outbox ---------------------------------------------------------------------

    async def _index_now(self, rows: list[dict[str, Any]], intents: list[Any]) -> None:
        """Indexes what was just written, so the writer can search it at once; on failure
        the intents stay and the background indexer takes over."""
        outcome: list[Indexed] | None = None
        try:
            outcome = await self.index.bulk([orjson.loads(r["doc"]) for r in rows], refresh=True)
        except Exception as exc:
            log.warning("Elasticsearch indexing deferred (%d assets): %s", len(rows), exc)
            # It may land later still (a timeout): answers kept meanwhile are dropped then.
            await self.generation.moved(again_after=2 * self.index.timeout)
        else:
            if any(item.ok for item in outcome):
                await self.generation.moved()
        if outcome is not None and all(item.ok for item in outcome):
            try:
                await self.outbox.delete_many({"_id": {"$in": intents}})
                return
            except Exception as exc:  # the write is done; the indexer clears them later
                log.warning("index intents of %d assets left to the indexer: %s", len(rows), exc)
        elif outcome is not None:
            _log_refusals(outcome)
        self._wake.set()

    async def index_pending(self, limit: int = INDEX_BATCH) -> int:
        """Indexes the current state of one batch of assets with intents; returns the batch size.

        Intents of assets that Elasticsearch refused stay, so they are retried (and logged).
        """
        # Intents younger than the grace belong to requests still indexing inline; taking
        # them too would index the same assets twice.
        settled = ObjectId.from_datetime(datetime.now(UTC) - INTENT_GRACE)
        intents = await self.outbox.find({"_id": {"$lt": settled}}).limit(limit).to_list()
        if not intents:
            return 0
        ids = list({i["asset"] for i in intents})
        docs = [
            orjson.loads(r["doc"])
            async for r in self.assets.find({"_id": {"$in": ids}}, {"doc": 1})
        ]
        try:
            outcome = await self.index.bulk(docs, refresh=True)
        except Exception:
            await self.generation.moved(again_after=2 * self.index.timeout)
            raise
        # Moved only when something was indexed: an asset Elasticsearch refuses for good is
        # retried every poll, and would drop every process's kept answers each time.
        if any(item.ok for item in outcome):
            await self.generation.moved()
        _log_refusals(outcome)
        indexed = {item.id for item in outcome if item.ok}
        # An intent whose asset is not there yet may belong to a write still in flight; only
        # after CLAIM_GRACE is it a crashed write's leftover.
        abandoned = ObjectId.from_datetime(datetime.now(UTC) - CLAIM_GRACE)
        found = {doc["id"] for doc in docs}
        done = [
            i["_id"]
            for i in intents
            if i["asset"] in indexed or (i["asset"] not in found and i["_id"] < abandoned)
        ]
        if done:
            await self.outbox.delete_many({"_id": {"$in": done}})
        return len(intents)

    async def _index_forever(self) -> None:
        backoff = 1.0
        ensured = False
        while True:
            try:
                if not ensured:
                    await self.index.ensure()
                    ensured = True
                    # It may have just made the index afresh (one lost with Elasticsearch's
                    # data): answers kept from the old one are no longer true.
                    await self.generation.moved()
                while await self.index_pending() == INDEX_BATCH:
                    pass
                if self.index_lag_error is not None:
                    log.info("Elasticsearch is back; the index has caught up")
                self.index_lag_error = None
                backoff = 1.0
                # asyncio.timeout, not wait_for: on 3.11, wait_for can swallow a cancel that
                # arrives as the event is set, and close() would then wait forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL_SECONDS):
                        await self._wake.wait()
                self._wake.clear()
            except asyncio.CancelledError:
                raise
            except (Exception, PyMongoError) as exc:
                if self.index_lag_error is None:
                    log.warning("search index catch-up failed, retrying: %s", exc)
                self.index_lag_error = str(exc)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def reindex(self, progress: Callable[[int, int], None]) -> int:
        """Builds a new index from MongoDB, then points the alias at it in one step."""
        await self.index.ensure()
        existing = await self.index.current_indexes()
        numbers = [int(n.rsplit("-v", 1)[1]) for n in existing if n.rsplit("-v", 1)[1].isdigit()]
        target = await self.index.create_generation(max(numbers, default=0) + 1)
        total = await self.assets.count_documents({})
        done = 0
        started = time.monotonic()
        since = (datetime.now(UTC) - CLAIM_GRACE).isoformat().replace("+00:00", "Z")
        batch: list[dict[str, Any]] = []
        async for row in self.assets.find({}, {"doc": 1}).batch_size(INDEX_BATCH):
            batch.append(orjson.loads(row["doc"]))
            if len(batch) == INDEX_BATCH:
                await self._reindex_batch(batch, target)
                done += len(batch)
                progress(done, total)
                batch = []
        if batch:
            await self._reindex_batch(batch, target)
            done += len(batch)
            progress(done, total)
        try:
            old = await self.index.swap(target)
        finally:
            await self.generation.moved()
        await self.index.drop(old)
        # Writes during the rebuild were indexed into the old index: index them again.
        recent = [r["_id"] async for r in self.assets.find({"updated_at": {"$gte": since}}, {})]
        if recent:
            await self.outbox.insert_many([{"asset": asset_id} for asset_id in recent])
            self._wake.set()
        log.info("reindexed %d assets into %s in %.1fs", done, target, time.monotonic() - started)
        return done

    async def _reindex_batch(self, docs: list[dict[str, Any]], target: str) -> None:
        outcome = await self.index.bulk(docs, index=target)
        bad = [item for item in outcome if not item.ok]
        if bad:
            raise RuntimeError(f"Elasticsearch refused asset {bad[0].id}: {bad[0].error}")

    # --- reads --------------------------------------------------------------------------------

    async def get(self, asset_id: str) -> Asset | None:
        async with unavailable("the read"):
            row = await self.assets.find_one({"_id": literal(asset_id)}, {"doc": 1})
        return _asset(row) if row else None

    async def get_by_name(self, name: str) -> Asset | None:
        async with unavailable("the read"):
            rows = (
                await self.assets.find(
                    {"name": literal(name)}, {"doc": 1, "deleted": 1, "updated_at": 1}
                )
                .sort([("deleted", ASCENDING), ("updated_at", DESCENDING)])
                .limit(1)
                .to_list()
            )
        return _asset(rows[0]) if rows else None

    async def resolve(self, keys: list[str], deleted_names: bool = False) -> dict[str, Asset]:
        if not keys:
            return {}
        found: dict[str, Asset] = {}
        async with unavailable("the read"):
            async for row in self.assets.find({"_id": {"$in": keys}}, {"doc": 1}):
                asset = _asset(row)
                found[asset.id] = asset
            rest = [k for k in keys if k not in found]
            if rest:
                named: dict[str, Any] = {"name": {"$in": rest}}
                if not deleted_names:
                    named["deleted"] = False
                # The first document of a name wins: its live asset, else the latest deleted.
                order = [("deleted", 1), ("updated_at", -1)]
                async for row in self.assets.find(named, {"doc": 1}, sort=order):
                    asset = _asset(row)
                    found.setdefault(asset.name, asset)
        return found

    async def dependents(self, keys: list[str], include_deleted: bool) -> list[Asset]:
        if not keys:
            return []
        query: dict[str, Any] = {"depends_on": {"$in": keys}}
        if not include_deleted:
            query["deleted"] = False
        async with unavailable("the read"):
            return [_asset(row) async for row in self.assets.find(query, {"doc": 1})]

    def _kept_generation(self) -> tuple[int, str, int] | None:
        """What searches and lookups are kept under; None with the cache off (no polls)."""
        return self.generation.current() if self._pages.max_bytes else None

    async def search(self, query: SearchQuery) -> SearchHits:
        return await self._pages.answer(query, self._kept_generation(), self.index.search)

    async def tag_counts(self, limit: int) -> dict[str, int]:
        return await self.index.counts("tags", limit)

    async def type_counts(self) -> dict[str, int]:
        # Every type, as the embedded store answers: types are a short list (Mastro's and
        # CAIRN_EXTRA_TYPES', and those of assets written before a type was dropped), which
        # one terms aggregation counts whole; 100 left the rarest out.
        return await self.index.counts("type", ALL_TYPES)

    # --- reported lineage ---------------------------------------------------------------------

    async def by_location(self, locations: list[str]) -> dict[str, list[Asset]]:
        if not locations:
            return {}
        found: dict[str, list[Asset]] = {}
        async with unavailable("the read"):
            query = {"location": {"$in": locations}, "deleted": False}
            async for row in self.assets.find(query, {"doc": 1}):
                asset = _asset(row)
                found.setdefault(asset.location or "", []).append(asset)
        return {url: located_order(assets) for url, assets in found.items()}

    async def record_lineage(self, report: LineageReport) -> bool:
        """No transaction: each part is an upsert that keeps the latest report, so a crash
        half-way is repaired by the client's retry, which records the event whole; the event's
        key goes in last."""
        async with unavailable("the write"):
            key = report.event_key
            if key is not None and await self.events.find_one({"_id": literal(key)}, {"_id": 1}):
                return False
            for edge in report.edges:
                key = f"{edge.origin}\n{edge.upstream}\n{edge.downstream}"
                await self._latest(
                    self.edges,
                    key,
                    {
                        "upstream": edge.upstream,
                        "downstream": edge.downstream,
                        "origin": edge.origin,
                        "run_id": edge.run_id,
                    },
                    stamp(edge.reported_at),
                )
            for downstream, edge_origin in report.replaces:
                # After the upserts: a crash between the two leaves extra edges, which the
                # client's retry removes, never missing ones.
                kept = [
                    f"{e.origin}\n{e.upstream}\n{e.downstream}"
                    for e in report.edges
                    if (e.downstream, e.origin) == (downstream, edge_origin)
                ]
                await self.edges.delete_many(
                    {
                        "downstream": literal(downstream),
                        "origin": literal(edge_origin),
                        "_id": {"$nin": kept},
                    }
                )
            for facet in report.facets:
                await self._latest(
                    self.facets,
                    f"{facet.asset_id}\n{facet.kind}",
                    {
                        "asset_id": facet.asset_id,
                        "kind": facet.kind,
                        "value": orjson.dumps(facet.value),
                        "run_id": facet.run_id,
                    },
                    stamp(facet.reported_at),
                )
            if (run := report.run) is not None:
                at = stamp(run.event_time)
                change: dict[str, Any] = {
                    "$max": {f"events.{run.event_type}": at, "updated_at": at},
                    "$setOnInsert": {"job_id": run.job_id, "run_id": run.run_id},
                }
                if run.error:
                    change["$set"] = {"error": run.error}
                key = f"{run.job_id}\n{run.run_id}"
                for attempt in range(2):
                    try:
                        await self.runs.update_one({"_id": literal(key)}, change, upsert=True)
                        break
                    except DuplicateKeyError:  # two upserts raced to insert: update now
                        if attempt:
                            raise
            if report.event_key is not None:
                with contextlib.suppress(DuplicateKeyError):
                    await self.events.insert_one(
                        {"_id": report.event_key, "at": stamp(datetime.now(UTC))}
                    )
        return True

    @staticmethod
    async def _latest(collection: Any, key: str, fields: dict[str, Any], at: str) -> None:
        """Stores ``fields`` under ``key`` unless a later report is stored there already."""
        answer = await collection.update_one(
            {"_id": literal(key), "reported_at": {"$lte": at}},
            {"$set": {**fields, "reported_at": at}},
        )
        if answer.matched_count:
            return
        # Absent, or held by a later report (then the insert fails, as it should).
        with contextlib.suppress(DuplicateKeyError):
            await collection.insert_one({"_id": key, **fields, "reported_at": at})

    async def reported_edges(
        self, ids: list[str], direction: str, origins: list[EdgeOrigin] | None = None
    ) -> list[ReportedEdge]:
        if not ids:
            return []
        column = "downstream" if direction == "up" else "upstream"
        query: dict[str, Any] = {column: {"$in": ids}}
        if origins:
            query["origin"] = {"$in": list(origins)}
        async with unavailable("the read"):
            return [
                ReportedEdge(
                    upstream=row["upstream"],
                    downstream=row["downstream"],
                    origin=row["origin"],
                    run_id=row.get("run_id"),
                    reported_at=row["reported_at"],
                )
                async for row in self.edges.find(query)
            ]

    async def job_runs(self, job_id: str, limit: int) -> list[JobRun]:
        async with unavailable("the read"):
            rows = (
                await self.runs.find({"job_id": literal(job_id)})
                .sort([("updated_at", DESCENDING), ("run_id", ASCENDING)])
                .limit(limit)
                .to_list()
            )
        return [JobRun.of(job_id, r["run_id"], r["events"], r.get("error")) for r in rows]

    async def reported_facets(self, asset_id: str) -> list[ReportedFacet]:
        async with unavailable("the read"):
            rows = await self.facets.find({"asset_id": literal(asset_id)}).to_list()
        return [
            ReportedFacet(
                asset_id=asset_id,
                kind=r["kind"],
                value=orjson.loads(r["value"]),
                run_id=r.get("run_id"),
                reported_at=r["reported_at"],
            )
            for r in rows
        ]


def from_settings(settings: Settings) -> MongoStore:
    return MongoStore(settings)

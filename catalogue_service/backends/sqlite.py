"""Embedded catalogue store: one SQLite file in WAL mode, FTS5 for text search.

The full asset is kept as a JSON document; tags, labels, owners and lineage links are also
kept in narrow tables so filters and facets are exact counts off an index. Connections come
from ``cairn.sqlite.SQLiteFile``: one writer under a lock, a bounded pool of readers that WAL
lets run beside it.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import queue
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import orjson
from pydantic import TypeAdapter

from cairn.errors import InvalidCursor
from cairn.models import (
    Asset,
    BulkItemResult,
    BulkStatus,
    EdgeOrigin,
    Facets,
    JobRun,
    ReportedEdge,
    ReportedFacet,
    searchable_labels,
)
from cairn.settings import Settings
from cairn.sqlite import READERS, SQLiteFile, fts_query
from catalogue_service.backends import page_cache
from catalogue_service.backends.base import (
    LineageReport,
    PreparedWrite,
    SearchHits,
    SearchQuery,
    encode_cursor,
    located_order,
    name_taken,
    origin,
    owner_conflict,
    stale_revision,
    stamp,
    tag_keys,
)
from catalogue_service.backends.generations import PerGeneration
from catalogue_service.backends.page_cache import PageCache
from catalogue_service.backends.rows import insert_rows
from catalogue_service.backends.tag_facets import TagFacets, counted, tag_count
from catalogue_service.backends.words import words
from catalogue_service.spelling import sqlite as vocabulary
from catalogue_service.spelling.base import is_term

# 2: tag_pairs and tag_types (built from the side tables when a version-1 file is opened).
# 3: tag_names (built the same way from a version-1 or -2 file).
# 4: assets.location, a column filled from the documents (it replaces an index on an
#    expression that parsed every inserted document's JSON again); no (seq) indexes on the
#    label, owner and dependency tables (a rewrite deletes its old rows by their keys).
# 5: tags in the side tables in lower case (``tag_keys``), rewritten from those of a file
#    from before, which kept them as written.
SCHEMA_VERSION = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assets (
    seq        INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    name_lc    TEXT NOT NULL,
    type       TEXT NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    revision   INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    doc        BLOB NOT NULL,
    location   TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS assets_live_name ON assets(name) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS assets_name_lc ON assets(name_lc);
CREATE INDEX IF NOT EXISTS assets_type ON assets(type);
-- What a search needs of an asset besides its document, found by seq without reading the
-- row (a row holds the whole document: one random page of the file per asset). A tag or text
-- match ranks and counts its hundreds of assets off this index and reads only a page of rows.
CREATE INDEX IF NOT EXISTS assets_seq_key ON assets(seq, deleted, name_lc, type);
-- The soft-deleted assets, which a text search leaves out of its matches: few in a catalogue,
-- so listing them costs less than looking up every match's row (built when a file without it
-- is opened).
CREATE INDEX IF NOT EXISTS assets_deleted ON assets(seq) WHERE deleted = 1;
CREATE TABLE IF NOT EXISTS asset_tags (
    tag TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (tag, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS asset_tags_seq ON asset_tags(seq, tag);
CREATE TABLE IF NOT EXISTS asset_labels (
    key TEXT NOT NULL, value TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (key, value, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS asset_owners (
    owner TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (owner, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS asset_deps (
    dep TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (dep, seq)) WITHOUT ROWID;
-- Lineage reported from outside the manifests (OpenLineage, metastores): kept apart from
-- the assets, so rewriting an asset (a crawl) never touches it.
CREATE TABLE IF NOT EXISTS reported_edges (
    upstream TEXT NOT NULL, downstream TEXT NOT NULL, origin TEXT NOT NULL, run_id TEXT,
    reported_at TEXT NOT NULL, PRIMARY KEY (upstream, downstream, origin)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reported_edges_down ON reported_edges(downstream);
CREATE TABLE IF NOT EXISTS job_runs (
    job_id TEXT NOT NULL, run_id TEXT NOT NULL, events BLOB NOT NULL, error TEXT,
    updated_at TEXT NOT NULL, PRIMARY KEY (job_id, run_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_runs_recent ON job_runs(job_id, updated_at);
CREATE TABLE IF NOT EXISTS reported_facets (
    asset_id TEXT NOT NULL, kind TEXT NOT NULL, value BLOB NOT NULL, run_id TEXT,
    reported_at TEXT NOT NULL, PRIMARY KEY (asset_id, kind)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lineage_events (key TEXT PRIMARY KEY, at TEXT NOT NULL) WITHOUT ROWID;
-- Drift verdicts of crawled datasets (DriftFlag), one per asset; kept across rewrites.
CREATE TABLE IF NOT EXISTS asset_drift (
    seq INTEGER PRIMARY KEY, drifted INTEGER NOT NULL, flag BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS asset_drift_drifted ON asset_drift(drifted, seq);
-- Live assets per (tag, other tag) and per (tag, type), kept current by every write, so a
-- one-tag search reads its total and facets instead of counting them (tag_facets.py).
CREATE TABLE IF NOT EXISTS tag_pairs (
    tag TEXT NOT NULL, other TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (tag, other)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tag_types (
    tag TEXT NOT NULL, type TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (tag, type)) WITHOUT ROWID;
-- Live assets under each of their tags in search order, so a one-tag search pages a range.
CREATE TABLE IF NOT EXISTS tag_names (
    tag TEXT NOT NULL, name_lc TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (tag, name_lc, seq)) WITHOUT ROWID;
"""
# No prefix index: the last word of a query matches as a prefix, and FTS5 reads that word's
# range of the main index. An index of two- and three-letter prefixes made a query whose last
# word is that short cheaper (at 100k assets, "<word> sa" 0.6 against 4.3 ms, "<word> sal" 0.4
# against 2.0 ms; longer words gain nothing) and cost every write 6.4 us and the background
# merge 2.6 us an asset (benchmarks.probe_fts, layouts current and prefix-2-3). A file made
# before keeps its index until `cairn reindex` rebuilds the table; both answer the same.
FTS_TABLE = """
CREATE VIRTUAL TABLE IF NOT EXISTS assets_fts USING fts5(
    name, tags, description, columns,
    tokenize = "unicode61 remove_diacritics 2"
);
"""

# bm25 weights per FTS column: a hit in the name counts most, then tags, columns, description.
# Created once the column exists (a version-3 file gets it when opened).
LOCATION_INDEX = "CREATE INDEX IF NOT EXISTS assets_location ON assets(location) WHERE deleted = 0"
BM25 = "bm25(assets_fts, 10.0, 5.0, 1.0, 2.0)"
# Exact name matches rank first whatever their text score.
EXACT_NAME_BOOST = 1000.0
FACET_LIMIT = 50
COUNT_CACHE_SIZE = 512
REINDEX_BATCH = 5000
DRIFT_FACET = {True: "drifted", False: "stable"}
# Above this share of assets, a tag filter walks the name index rather than the tag's list.
COMMON_SHARE = 0.02
BY_SEQ = "INDEXED BY assets_seq_key"
# Each side filter two ways: checked per asset (while walking the name index), or as the
# filter's list of assets (a driving set, or one probed per candidate).
TAG_PER_ASSET = "EXISTS (SELECT 1 FROM asset_tags t WHERE t.tag = ? AND t.seq = a.seq)"
TAG_LISTED = "a.seq IN (SELECT seq FROM asset_tags WHERE tag = ?)"
LABEL_PER_ASSET = (
    "EXISTS (SELECT 1 FROM asset_labels l WHERE l.key = ? AND l.value = ? AND l.seq = a.seq)"
)
LABEL_LISTED = "a.seq IN (SELECT seq FROM asset_labels WHERE key = ? AND value = ?)"
OWNER_PER_ASSET = "EXISTS (SELECT 1 FROM asset_owners o WHERE o.owner = ? AND o.seq = a.seq)"
OWNER_LISTED = "a.seq IN (SELECT seq FROM asset_owners WHERE owner = ?)"
DRIFT_PER_ASSET = "EXISTS (SELECT 1 FROM asset_drift f WHERE f.seq = a.seq AND f.drifted = ?)"
DRIFT_LISTED = "a.seq IN (SELECT seq FROM asset_drift WHERE drifted = ?)"
# A name prefix holding at most this many names drives a search that has one: its range of
# the name index is walked in page order and every other filter checked per asset. Left to
# itself, SQLite (which keeps no statistics here) drove `name=<prefix>&type=dataset` from the
# type index and `name=<prefix>&tag=<popular>` from the tag's whole list: 280 and 200 ms at
# 100k assets for a prefix of 76 names, against about 1 ms. A shorter prefix (one or two
# letters, thousands of names) is left to SQLite: another filter may well be narrower.
PREFIX_DRIVES = 2_000
# Soft-deleted assets (index assets_deleted), and assets of one lower-case name.
DELETED_SEQS = "SELECT seq FROM assets WHERE deleted = 1"
EXACT_SEQS = "SELECT seq FROM assets WHERE name_lc = ?"

# FTS5 keeps the index as segments, and a text query reads every one (about 3 us each per
# query term at 100k assets). A bulk load leaves about ten; after writes pause, a background
# thread merges every level holding two or more into one (at most one per level is left, so
# the work stays about n log n over a catalogue's life, unlike merging all into one each time)
# in steps of this many pages, each a short transaction of its own. bench_search, text kind.
FTS_USERMERGE = 2
FTS_MERGE_PAGES = 200
# FTS5 merges a little inside every write once a level holds this many segments (its default).
# Bulk writes merge nothing themselves (BULK_FTS_AUTOMERGE): the upkeep above merges what they
# leave once they pause. At 100k assets in requests of 5,000 (benchmarks.probe_fts): 10.6
# against 13.2 us of insert CPU per asset, and the same merge afterwards (4.1 us) and queries.
# Small writes keep merging as they go: no pause need come between them for the upkeep to run.
FTS_AUTOMERGE = 4
BULK_FTS_AUTOMERGE = 0
# A write of this many assets is big even in one piece (at most WRITE_CHUNK items): its commit
# dirties a page of each index per asset, hundreds of pages, and with SQLite's own
# autocheckpoint and FTS5's automerge it copied the WAL into the file and merged segments
# inside its request (benchmarks.probe_ingest, 20k assets in requests of 250: 121 against 132
# us of CPU per asset; of 500: 111 against 117).
BIG_WRITE_ITEMS = 100

# A search is run on the event loop when it is known to match at most this many assets.
HERE_MATCHES = 300
PREFIX_TERMS = 64
UNBOUNDED = 1 << 62

T = TypeVar("T")

log = logging.getLogger("cairn.catalogue.sqlite")


# A page row (seq, doc, key) sorts by its key, then seq: itemgetter, not a Python function
# called per row.
_PAGE_ORDER = operator.itemgetter(2, 0)


class _Unbounded(Exception):
    """A search asked to stay short found it would count over every match."""


class _Abort:
    """Handed to the writer of ``upsert_chunks`` instead of a chunk: roll back."""


_ABORT = _Abort()
# What the writer of ``upsert_chunks`` is handed: a chunk, the end (None), or _ABORT.
_Chunk = list[PreparedWrite] | _Abort | None


class _Aborted(Exception):
    """The writer rolled back because the request preparing its chunks failed."""


def _bounded_shape(query: SearchQuery) -> bool:
    """Whether the page of ``query`` is read as a range of an index in order (one tag alone:
    tag_names, from any cursor; a name prefix alone: the name index, first page only, as a
    cursor is applied while walking the prefix), so it costs the same at any size."""
    if query.q or query.offset or query.labels or query.owner or query.drifted is not None:
        return False
    if query.type:
        return False
    if query.name:
        return not query.tags and query.cursor is None
    return len(query.tags) == 1 and not query.include_deleted


def _few_names(conn: sqlite3.Connection, bounds: list[str]) -> bool:
    """Whether at most PREFIX_DRIVES names fall between ``bounds`` (an index walk that stops
    there: at most about 0.1 ms)."""
    (n,) = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM assets INDEXED BY assets_name_lc"
        " WHERE name_lc >= ? AND name_lc < ? LIMIT ?)",
        [*bounds, PREFIX_DRIVES + 1],
    ).fetchone()
    return bool(n <= PREFIX_DRIVES)


def _text_only(query: SearchQuery) -> bool:
    return bool(query.q) and not (
        query.name
        or query.tags
        or query.type
        or query.labels
        or query.owner
        or query.include_deleted
        or query.drifted is not None
    )


def _most_matches(conn: sqlite3.Connection, q: str) -> int:
    """About how many assets text ``q`` matches at most, from the spelling vocabulary's
    counts of what FTS holds: a word's uses bound the assets holding it, every word must
    match, and the last one matches as a prefix (of at most PREFIX_TERMS listed words).
    Words the vocabulary leaves out (with digits, over MAX_TERM letters) bound nothing, and
    may share the last word's prefix unseen: the figure decides where a search runs, never
    what it answers."""
    found = words(q)
    bound = UNBOUNDED
    for word in found[:-1]:
        if is_term(word):
            row = conn.execute("SELECT uses FROM search_terms WHERE term = ?", (word,)).fetchone()
            bound = min(bound, row[0] if row else 0)
    if found and is_term(found[-1]):
        last = found[-1]
        uses = [
            n
            for (n,) in conn.execute(
                "SELECT uses FROM search_terms WHERE term >= ? AND term < ? LIMIT ?",
                (last, last + "\U0010ffff", PREFIX_TERMS),
            )
        ]
        if len(uses) < PREFIX_TERMS:
            bound = min(bound, sum(uses))
    return bound


class _SideRows:
    """Rows of the narrow tables for a whole write batch, inserted with one call per table."""

    def __init__(self) -> None:
        self.tags: list[tuple[str, int]] = []
        self.labels: list[tuple[str, str, int]] = []
        self.owners: list[tuple[str, int]] = []
        self.deps: list[tuple[str, int]] = []
        self.fts: list[tuple[int, str, str, str, str]] = []
        self.facets = TagFacets()
        # New assets' rows, inserted with one executemany (``flush``) rather than one
        # statement each: their seq is given here, not taken from SQLite after each insert.
        self.new_rows: list[tuple[Any, ...]] = []

    def flush(self, conn: sqlite3.Connection) -> None:
        """Inserts the pending new rows, before anything reads the assets table."""
        if self.new_rows:
            # executemany, not ``insert_rows``: for these wide rows (a document each) and for
            # FTS5 rows, a statement of many rows cost about 3 and 5 µs more SQLite a row.
            conn.executemany(
                "INSERT INTO assets(name, name_lc, type, deleted, revision, hash, updated_at, doc,"
                " location, id, seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self.new_rows,
            )
            self.new_rows.clear()

    def add(self, seq: int, doc: dict[str, Any], tags: list[str] | None = None) -> None:
        """``tags``: the document's ``tag_keys``, when the caller has them already."""
        if tags is None:
            tags = tag_keys(doc.get("tags") or [])
        self.tags += [(t, seq) for t in tags]
        if labels := doc.get("labels"):
            self.labels += [(k, v, seq) for k, v in searchable_labels(labels)]
        if owners := doc.get("owners"):
            self.owners += [(o, seq) for o in owners]
        if deps := doc.get("depends_on"):
            self.deps += [(d, seq) for d in deps]
        columns = " ".join([f["name"] for f in doc.get("schema") or ()])
        self.fts.append((seq, doc["name"], " ".join(tags), doc.get("description") or "", columns))

    def insert(self, conn: sqlite3.Connection) -> None:
        self.flush(conn)
        # In key order, each table's B-tree is walked once from left to right rather than
        # jumped about in: fewer pages touched and dirtied per batch. Sorted by the texts
        # alone, stably (new assets' rows come in seq order already): comparing whole tuples
        # cost twice the CPU, and the order only decides how fast the rows go in, not which.
        for rows in (self.tags, self.owners, self.deps):
            rows.sort(key=itemgetter(0))
        self.labels.sort(key=itemgetter(1))
        self.labels.sort(key=itemgetter(0))
        insert_rows(conn, "INSERT OR IGNORE INTO asset_tags(tag, seq)", self.tags, 2)
        insert_rows(conn, "INSERT OR IGNORE INTO asset_labels(key, value, seq)", self.labels, 3)
        insert_rows(conn, "INSERT OR IGNORE INTO asset_owners(owner, seq)", self.owners, 2)
        insert_rows(conn, "INSERT OR IGNORE INTO asset_deps(dep, seq)", self.deps, 2)
        conn.executemany(
            "INSERT INTO assets_fts(rowid, name, tags, description, columns)"
            " VALUES (?, ?, ?, ?, ?)",
            self.fts,
        )
        vocabulary.count_in(conn, self.fts)
        self.facets.apply(conn)


class _CountCache:
    """Totals and facets per filter for one write generation, least recently used out. The
    facets are kept encoded too (as ``splice_page`` would encode them), so an answer from
    the cache splices them in."""

    def __init__(self, size: int):
        self._kept: PerGeneration[tuple[Any, ...], tuple[bool, int, Facets, bytes | None]] = (
            PerGeneration(size)
        )

    def get(
        self, key: tuple[Any, ...], generation: int, facets: bool
    ) -> tuple[int, Facets, bytes | None] | None:
        entry = self._kept.get(key, generation)
        if entry is None or (facets and not entry[0]):
            return None
        return entry[1], entry[2], entry[3]

    def clear(self) -> None:
        self._kept.clear()

    def put(
        self, key: tuple[Any, ...], generation: int, facets: bool, total: int, counts: Facets
    ) -> None:
        encoded = orjson.dumps(counts.model_dump()) if facets else None
        self._kept.put(key, generation, (facets, total, counts, encoded))


# A write's results, made from their fields in one pydantic-core call rather than one model
# call per item (about 1 us an item less on a bulk write).
_RESULTS: TypeAdapter[list[BulkItemResult]] = TypeAdapter(list[BulkItemResult])

# (seq, hash, revision, deleted, updated_at, name, type) of an asset row.
_Row = tuple[int, str, int, int, str, str, str]


class _BatchState:
    """What the items of one write batch need to know of the stored rows, read with two
    queries for the whole batch (not three per item) and kept current as the batch writes:
    the rows of the batch's ids, and which id holds each of the batch's names (live only).

    It is loaded and used under the write lock, so nothing else changes those rows meanwhile.
    """

    def __init__(self, rows: dict[str, _Row], live_names: dict[str, str], next_seq: int = 1):
        self.rows = rows
        self.live_names = live_names
        # The seq the next new asset gets (SQLite's own choice for a rowid: one past the
        # largest), counted here so new rows can be inserted together.
        self.next_seq = next_seq
        # Tags of the assets this batch wrote (their side rows are inserted at the end).
        self.tags: dict[str, list[str]] = {}

    def tags_of(self, conn: sqlite3.Connection, asset_id: str, seq: int) -> list[str]:
        """The stored tags of an asset that has a row."""
        if asset_id in self.tags:
            return self.tags[asset_id]
        return [t for (t,) in conn.execute("SELECT tag FROM asset_tags WHERE seq = ?", (seq,))]

    @classmethod
    def load(cls, conn: sqlite3.Connection, writes: list[PreparedWrite]) -> _BatchState:
        ids = orjson.dumps([w.doc["id"] for w in writes]).decode()
        names = orjson.dumps(list({w.doc["name"] for w in writes})).decode()
        rows: dict[str, _Row] = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT id, seq, hash, revision, deleted, updated_at, name, type FROM assets"
                " WHERE id IN (SELECT value FROM json_each(?))",
                (ids,),
            )
        }
        live_names = dict(
            conn.execute(
                "SELECT name, id FROM assets WHERE deleted = 0"
                " AND name IN (SELECT value FROM json_each(?))",
                (names,),
            ).fetchall()
        )
        (top,) = conn.execute("SELECT coalesce(max(seq), 0) FROM assets").fetchone()
        return cls(rows, live_names, top + 1)

    def wrote(
        self,
        asset_id: str,
        seq: int,
        name: str,
        deleted: bool,
        revision: int,
        content_hash: str,
        stamp: str,
        before: _Row | None,
        doc_type: str,
        tags: list[str],
    ) -> None:
        if before is not None and not before[3] and self.live_names.get(before[5]) == asset_id:
            del self.live_names[before[5]]
        if not deleted:
            self.live_names[name] = asset_id
        self.rows[asset_id] = (seq, content_hash, revision, int(deleted), stamp, name, doc_type)
        self.tags[asset_id] = tags


class SQLiteStore:
    def __init__(self, path: Path, readers: int = READERS, search_cache_mib: int = page_cache.MIB):
        self.path = Path(path)
        # One writer under a lock, a fixed pool of readers: memory stays bounded.
        self.db = SQLiteFile(self.path, readers=readers, upkeep=_merge_fts_segments)
        # Totals and facets of recent filters, valid until the next commit (``_generation``).
        self._counts = _CountCache(COUNT_CACHE_SIZE)
        # Whole answers of recent searches, valid until the next commit too.
        self._pages = PageCache(max_bytes=search_cache_mib << 20)
        self.speller = vocabulary.SQLiteSpeller(self.db, self._generation)
        self._probe: sqlite3.Connection | None = None
        self._probe_lock = threading.Lock()
        # FTS5's automerge as the file holds it (None: unknown, set by the next write).
        self._automerge: int | None = None

    def _generation(self) -> int:
        """Moves with every commit to the file, by this process or by another one on the
        same file (a second server): counting only this process's commits, a search kept
        totals and facets from before another process's writes."""
        assert self._probe is not None, "store not opened"
        # data_version reads shared memory; the lock because searches run in several threads.
        with self._probe_lock:
            return int(self._probe.execute("PRAGMA data_version").fetchone()[0])

    # --- connections --------------------------------------------------------------------------

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.db.read(fn, *args)

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self._open)

    def _open(self) -> None:
        conn = self.db.open(SCHEMA + FTS_TABLE + vocabulary.SCHEMA, SCHEMA_VERSION)
        vocabulary.fill_if_missing(conn)
        # Insert-if-absent: the first process to open the file names it; later ones keep that.
        conn.execute(
            "INSERT OR IGNORE INTO meta(key, value) VALUES ('instance_id', ?)", (uuid.uuid4().hex,)
        )
        version = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if int(version[0]) < SCHEMA_VERSION:
            with self.db.transaction() as tx:
                # Read again under the write lock: another process may have migrated it.
                (found,) = tx.execute(
                    "SELECT value FROM meta WHERE key='schema_version'"
                ).fetchone()
                if int(found) < 3:
                    TagFacets.rebuild(tx)
                _migrate_to_4(tx)
                if int(found) < 5:
                    _migrate_to_5(tx)
                tx.execute(
                    "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,)
                )
        conn.execute(LOCATION_INDEX)
        _set_fts_merging(conn)
        self._automerge = FTS_AUTOMERGE
        self._probe = self.db.new_reader()
        (made,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'assets_fts'").fetchone()
        if "prefix" in made:
            log.info(
                "%s: the full-text index keeps prefix indexes (made by an earlier Cairn); "
                "`cairn reindex` rebuilds it without them, and every write then costs less",
                self.path,
            )

    async def instance_id(self) -> str:
        def _read(conn: sqlite3.Connection) -> str:
            return str(conn.execute("SELECT value FROM meta WHERE key='instance_id'").fetchone()[0])

        return await self._read(_read)

    async def close(self) -> None:
        self._probe = None
        self.db.close()

    async def ping(self) -> str | None:
        def _ping(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM assets LIMIT 1").fetchall()

        await self._read(_ping)
        return None

    # --- writes -------------------------------------------------------------------------------

    async def upsert(self, writes: list[PreparedWrite], now: datetime) -> list[BulkItemResult]:
        return await anyio.to_thread.run_sync(self._upsert_sync, writes, now)

    async def upsert_chunks(
        self, chunks: Iterator[list[PreparedWrite]], now: datetime
    ) -> list[BulkItemResult]:
        """The writer thread applies each chunk as soon as it is handed over while the event
        loop prepares the next. One transaction holds every chunk; an error on either side
        rolls it all back. SQLite steps its statements without the GIL, but the writer needs
        it back after every row while the event loop holds it to validate, so the two seldom
        run at once: the chunks bound the request's memory more than they save time."""
        handoff: queue.SimpleQueue[_Chunk] = queue.SimpleQueue()
        done: Future[list[BulkItemResult]] = Future()

        def run() -> None:
            try:
                done.set_result(self._write_chunks(handoff.get, now, big=True))
            except BaseException as exc:
                done.set_exception(exc)

        # A thread of its own, started now: a worker thread of anyio's would only be handed
        # the job at the event loop's next turn, after every chunk was prepared.
        threading.Thread(target=run, name="cairn-bulk-writer", daemon=True).start()
        writer = asyncio.wrap_future(done)
        try:
            for chunk in chunks:
                handoff.put(chunk)
        except BaseException:
            # An error (or a cancellation) while preparing: the writer rolls back, and the
            # request ends only once it has, so the next write finds the lock free.
            handoff.put(_ABORT)
            await asyncio.wait([writer])
            if not writer.cancelled():
                writer.exception()  # its _Aborted is the expected answer to this error
            raise
        handoff.put(None)
        return await writer

    def _upsert_sync(self, writes: list[PreparedWrite], now: datetime) -> list[BulkItemResult]:
        big = len(writes) >= BIG_WRITE_ITEMS
        return self._write_chunks(iter([writes, None]).__next__, now, big=big)

    def _write_chunks(
        self, next_chunk: Callable[[], _Chunk], now: datetime, big: bool = False
    ) -> list[BulkItemResult]:
        """Applies chunks from ``next_chunk`` until it gives None, in one transaction.

        The side tables' rows, tag counts and words of every chunk are inserted together
        after the last one: a request's rows sorted as one run touch each B-tree page once,
        and a tag pair's count is updated once rather than once per chunk (written per chunk
        of 500, they cost about 15 µs more SQLite per asset). An id comes at most once per
        request, so no later chunk needs an earlier one's side rows.
        """
        results: list[dict[str, Any]] = []
        stamp = now.isoformat().replace("+00:00", "Z")
        side = _SideRows()
        automerge = BULK_FTS_AUTOMERGE if big else FTS_AUTOMERGE
        with self.db.transaction(big=big) as conn:
            self._set_automerge(conn, automerge)
            while (writes := next_chunk()) is not None:
                if isinstance(writes, _Abort):
                    raise _Aborted("the bulk request failed before all its items were written")
                if not writes:
                    continue
                # Each chunk reads the rows it needs after the chunks before it inserted
                # theirs (the same transaction), so names and ids are checked across chunks.
                state = _BatchState.load(conn, writes)
                for write in writes:
                    results.append(self._apply(conn, write, stamp, side, state))
                side.flush(conn)
            side.insert(conn)
        self._automerge = automerge
        return _RESULTS.validate_python(results)

    def _set_automerge(self, conn: sqlite3.Connection, automerge: int) -> None:
        """FTS5's automerge for this write and the ones after it (a setting in the file,
        known here again once the write commits: see ``_write_chunks``)."""
        if self._automerge != automerge:
            self._automerge = None
            conn.execute(
                "INSERT INTO assets_fts(assets_fts, rank) VALUES ('automerge', ?)", (automerge,)
            )

    def _apply(
        self,
        conn: sqlite3.Connection,
        write: PreparedWrite,
        stamp: str,
        side: _SideRows,
        state: _BatchState,
    ) -> dict[str, Any]:
        """Writes one item; answers with its result's fields (``BulkItemResult``)."""
        doc = write.doc
        asset_id, name, deleted = doc["id"], doc["name"], bool(doc.get("deleted"))
        base = {"index": write.index, "id": asset_id, "name": name}
        # Under the write lock: what is read here cannot change before this item is written.
        row = state.rows.get(asset_id)
        if write.expect_revision is not None and (row is None or row[2] != write.expect_revision):
            error = stale_revision(asset_id, write.expect_revision, row and row[2])
            return {**base, "status": "error", "conflict": "revision", "error": error}
        if row is not None and row[1] == write.content_hash:
            write.stored = {**doc, "revision": row[2], "updated_at": row[4]}
            return {**base, "status": "unchanged", "revision": row[2]}
        current: dict[str, Any] | None = None
        if row is not None and doc.get("volume"):
            current = _stored_doc(conn, side, row[0])
            taken = owner_conflict(doc, current)
            if taken is not None:
                return {**base, "status": "error", "conflict": "owner", "error": taken}
        if not deleted:
            holder = state.live_names.get(name)
            if holder is not None and holder != asset_id:
                side.flush(conn)  # the holder may be new in this batch
                (other_doc,) = conn.execute(
                    "SELECT doc FROM assets WHERE id = ?", (holder,)
                ).fetchone()
                where = origin(orjson.loads(other_doc))
                error = name_taken(name, holder, where, doc)
                return {**base, "status": "error", "conflict": "name", "error": error}
        revision = 1 if row is None else row[2] + 1
        stored = {**doc, "revision": revision, "updated_at": stamp}
        if row is not None:
            _keep_drift(conn, row[0], stored)
        values = (
            name,
            name.lower(),
            doc["type"],
            int(deleted),
            revision,
            write.content_hash,
            stamp,
            orjson.dumps(stored),
            doc.get("location"),
        )
        status: BulkStatus
        if row is None:
            seq = state.next_seq
            state.next_seq += 1
            side.new_rows.append((*values, asset_id, seq))
            status = "deleted" if deleted else "created"
        else:
            seq = row[0]
            if not row[3]:
                side.facets.add(state.tags_of(conn, asset_id, seq), row[6], -1, seq, row[5])
            # Its side rows are made of the stored document: read before it is replaced.
            _delete_side_rows(conn, seq, current or _stored_doc(conn, side, seq))
            conn.execute("DELETE FROM asset_tags WHERE seq = ?", (seq,))
            conn.execute(
                "UPDATE assets SET name=?, name_lc=?, type=?, deleted=?, revision=?, hash=?,"
                " updated_at=?, doc=?, location=? WHERE seq=?",
                (*values, seq),
            )
            vocabulary.count_out(conn, seq)
            conn.execute("DELETE FROM assets_fts WHERE rowid = ?", (seq,))
            status = "deleted" if deleted and not row[3] else "updated"
        tags = tag_keys(doc.get("tags") or [])  # folded once for the three of them
        state.wrote(
            asset_id,
            seq,
            name,
            deleted,
            revision,
            write.content_hash,
            stamp,
            row,
            doc["type"],
            tags,
        )
        if not deleted:
            side.facets.add(tags, doc["type"], 1, seq, name)
        side.add(seq, doc, tags)
        write.stored = stored
        return {**base, "status": status, "revision": revision}

    async def reindex(self, progress: Callable[[int, int], None]) -> int:
        return await anyio.to_thread.run_sync(self._reindex_sync, progress)

    def _reindex_sync(self, progress: Callable[[int, int], None]) -> int:
        """Rebuilds the FTS table and the side tables from the documents, in one transaction,
        so readers see the old index until the new one is complete; then merges the new
        index's segments (a command run offline, which does not wait for a pause). The FTS
        table is made again, so a file from before FTS_TABLE's layout gets it."""
        with self.db.transaction() as conn:
            total = conn.execute("SELECT count(*) FROM assets").fetchone()[0]
            for table in ("asset_tags", "asset_labels", "asset_owners", "asset_deps"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DROP TABLE assets_fts")
            conn.execute(FTS_TABLE)
            _set_fts_merging(conn)
            self._automerge = None  # the new table's, known again at the next write
            vocabulary.clear(conn)
            done = 0
            rows = conn.execute("SELECT seq, doc FROM assets ORDER BY seq")
            while batch := rows.fetchmany(REINDEX_BATCH):
                side = _SideRows()
                for seq, doc in batch:
                    side.add(seq, orjson.loads(doc))
                side.insert(conn)
                done += len(batch)
                progress(done, total)
            TagFacets.rebuild(conn)
        more = True
        while more:
            with self.db.transaction() as conn:
                more = _merge_fts_segments(conn)
        return done

    async def set_drift(self, asset_id: str, flag: dict[str, Any]) -> Asset | None:
        return await anyio.to_thread.run_sync(self._set_drift_sync, asset_id, flag)

    def _set_drift_sync(self, asset_id: str, flag: dict[str, Any]) -> Asset | None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT seq, doc FROM assets WHERE id = ?", (asset_id,)).fetchone()
            if row is None:
                return None
            seq, doc = row[0], orjson.loads(row[1])
            if doc.get("drift") != flag:
                doc["drift"] = flag
                conn.execute("UPDATE assets SET doc = ? WHERE seq = ?", (orjson.dumps(doc), seq))
                conn.execute(
                    "INSERT OR REPLACE INTO asset_drift(seq, drifted, flag) VALUES (?, ?, ?)",
                    (seq, int(bool(flag["drifted"])), orjson.dumps(flag)),
                )
        return Asset.model_validate(doc)

    # --- reads --------------------------------------------------------------------------------

    async def get(self, asset_id: str) -> Asset | None:
        def _get(conn: sqlite3.Connection) -> Asset | None:
            found = conn.execute("SELECT doc FROM assets WHERE id = ?", (asset_id,)).fetchone()
            return Asset.model_validate_json(found[0]) if found else None

        return await self._read(_get)

    async def get_by_name(self, name: str) -> Asset | None:
        def _get(conn: sqlite3.Connection) -> Asset | None:
            found = conn.execute(
                "SELECT doc FROM assets WHERE name = ? ORDER BY deleted, updated_at DESC LIMIT 1",
                (name,),
            ).fetchone()
            return Asset.model_validate_json(found[0]) if found else None

        return await self._read(_get)

    async def resolve(self, keys: list[str], deleted_names: bool = False) -> dict[str, Asset]:
        def _resolve(conn: sqlite3.Connection) -> dict[str, Asset]:
            if not keys:
                return {}
            marks = ",".join("?" * len(keys))
            found: dict[str, Asset] = {}
            for (doc,) in conn.execute(f"SELECT doc FROM assets WHERE id IN ({marks})", keys):
                asset = Asset.model_validate_json(doc)
                found[asset.id] = asset
            rest = [k for k in keys if k not in found]
            if rest:
                marks = ",".join("?" * len(rest))
                # The first row of a name wins: its live asset, else the latest deleted.
                sql = (
                    f"SELECT doc FROM assets WHERE name IN ({marks})"
                    " ORDER BY deleted, updated_at DESC"
                    if deleted_names
                    else f"SELECT doc FROM assets WHERE name IN ({marks}) AND deleted = 0"
                )
                for (doc,) in conn.execute(sql, rest):
                    asset = Asset.model_validate_json(doc)
                    found.setdefault(asset.name, asset)
            return found

        return await self._read(_resolve)

    async def dependents(self, keys: list[str], include_deleted: bool) -> list[Asset]:
        def _dependents(conn: sqlite3.Connection) -> list[Asset]:
            if not keys:
                return []
            marks = ",".join("?" * len(keys))
            sql = (
                "SELECT DISTINCT a.doc FROM asset_deps d JOIN assets a ON a.seq = d.seq"
                f" WHERE d.dep IN ({marks})"
            )
            if not include_deleted:
                sql += " AND a.deleted = 0"
            rows = conn.execute(sql, keys).fetchall()
            return [Asset.model_validate_json(doc) for (doc,) in rows]

        return await self._read(_dependents)

    async def tag_counts(self, limit: int) -> dict[str, int]:
        def _tags(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT t.tag, count(*) AS n FROM asset_tags t JOIN assets a ON a.seq = t.seq"
                " WHERE a.deleted = 0 GROUP BY t.tag ORDER BY n DESC, t.tag LIMIT ?",
                (limit,),
            )
            return dict(rows.fetchall())

        return await self._read(_tags)

    async def type_counts(self) -> dict[str, int]:
        def _types(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT type, count(*) AS n FROM assets WHERE deleted = 0"
                " GROUP BY type ORDER BY n DESC, type"
            )
            return dict(rows.fetchall())

        return await self._read(_types)

    async def search(self, query: SearchQuery) -> SearchHits:
        return await self._pages.answer(query, self._generation(), self._search)

    async def _search(self, query: SearchQuery) -> SearchHits:
        if _bounded_shape(query) or _text_only(query):
            # Handing a read to a worker thread and back cost more CPU than these reads
            # (about 0.3 ms a request under load, bench_search): run them here unless they
            # turn out to need work that grows with the catalogue.
            try:
                return self.db.read_here(self._search_here, query)
            except _Unbounded:
                pass
        return await self._read(self._search_sync, query)

    def _search_here(self, conn: sqlite3.Connection, query: SearchQuery) -> SearchHits:
        if query.q is None:
            return self._search_sync(conn, query, True)
        # A text search costs what its matches cost: rank, count and facets over them all.
        # With its counts cached, the cached total says how many; otherwise the vocabulary
        # bounds them.
        try:
            return self._search_sync(conn, query, True)
        except _Unbounded:
            pass
        if _most_matches(conn, query.q) > HERE_MATCHES:
            raise _Unbounded
        return self._search_sync(conn, query)

    def _search_sync(
        self, conn: sqlite3.Connection, query: SearchQuery, bounded: bool = False
    ) -> SearchHits:
        """``bounded``: raise ``_Unbounded`` before any statement whose cost grows with the
        number of matches (the caller runs the search in a worker thread instead); a text
        search passes only with its counts cached at most HERE_MATCHES."""
        where: list[str] = []
        params: list[Any] = []
        match = fts_query(query.q, whole_word_first=True) if query.q else None
        if query.q and match is None:
            # Only punctuation: nothing can match, and saying so beats returning everything.
            return SearchHits(docs=[], total=0, facets=Facets(), next_cursor=None)
        if not query.include_deleted:
            where.append("a.deleted = 0")
        if query.type:
            where.append("a.type = ?")
            params.append(query.type)
        by_prefix = False
        if query.name:
            prefix = query.name.lower()
            bounds = [prefix, prefix + "\U0010ffff"]
            where.append("a.name_lc >= ? AND a.name_lc < ?")
            params += bounds
            others = query.type or query.tags or query.labels or query.owner
            narrower = bool(others) or query.drifted is not None
            by_prefix = match is None and narrower and _few_names(conn, bounds)
        # One tag and nothing else: its page is a range of tag_names, already in order.
        narrowed = match or query.name or query.type or query.labels or query.owner
        one_tag = len(query.tags) == 1 and not query.include_deleted
        tag_only = one_tag and not narrowed and query.drifted is None
        # A tag on many assets is cheaper to check per asset while walking the name index
        # (the first page is found after a few dozen) than to collect, sort and cut.
        by_name = (
            not tag_only and match is None and not query.name and self._common(conn, query.tags)
        )
        for tag in query.tags:
            where.append(TAG_PER_ASSET if by_name or by_prefix else TAG_LISTED)
            params.append(tag)
        for key, value in query.labels:
            where.append(LABEL_PER_ASSET if by_prefix else LABEL_LISTED)
            params += [key, value]
        if query.owner:
            where.append(OWNER_PER_ASSET if by_prefix else OWNER_LISTED)
            params.append(query.owner)
        if query.drifted is not None:
            where.append(DRIFT_PER_ASSET if by_prefix else DRIFT_LISTED)
            params.append(int(query.drifted))

        # Text ranks by score, the exact name first; anything else by name.
        key_params: list[Any] = [(query.q or "").strip().lower()] if match is not None else []
        if match is not None and _text_only(query):
            # Text alone: ranked off the FTS index by itself. A live asset is one not listed
            # in the (small) partial index of deleted ones, and the exact name is looked up
            # once, rather than each match's row being probed for both.
            source = "assets_fts a"
            where = ["assets_fts MATCH ?", f"a.rowid NOT IN ({DELETED_SEQS})"]
            params = [match]
            key_cols = (
                f"{BM25} - (CASE WHEN a.rowid IN ({EXACT_SEQS}) THEN {EXACT_NAME_BOOST} ELSE 0 END)"
            )
        elif match is not None:
            source = f"assets_fts JOIN assets a {BY_SEQ} ON a.seq = assets_fts.rowid"
            where.insert(0, "assets_fts MATCH ?")
            params.insert(0, match)
            key_cols = f"{BM25} - (CASE WHEN a.name_lc = ? THEN {EXACT_NAME_BOOST} ELSE 0 END)"
        else:
            sided = query.tags or query.labels or query.owner or query.drifted is not None
            if by_name or by_prefix:
                source = "assets a INDEXED BY assets_name_lc"
            elif sided and not query.name:
                # The candidates come from a side table by seq: look each up in the index.
                source = f"assets a {BY_SEQ}"
            else:
                source = "assets a"
            key_cols = "a.name_lc"
        filter_sql = " AND ".join(where) or "1"
        generation = self._generation()
        count_key = (filter_sql, tuple(params))
        cached = self._counts.get(count_key, generation, query.facets)
        unknown = cached is None or (match is not None and cached[0] > HERE_MATCHES)
        if bounded and not tag_only and unknown:
            raise _Unbounded

        # The page's keys first, then the documents of that page only: ranking by reading
        # every matching row would read (and sort) each match's whole document.
        if tag_only:
            inner = "SELECT seq, name_lc AS k1 FROM tag_names WHERE tag = ?"
            page_params: list[Any] = list(query.tags)
        else:
            inner = f"SELECT a.rowid AS seq, {key_cols} AS k1 FROM {source} WHERE {filter_sql}"
            page_params = key_params + params
        keys_sql = f"SELECT seq, k1 FROM ({inner})"
        if query.cursor is not None and match is not None:
            _check_cursor(query.cursor, text=True)
            # A write between two pages moves every match's score (bm25 weighs a word by how
            # many assets hold it): the page goes on after the last item's score now, and
            # after the score the cursor kept only when that item no longer matches.
            keys_sql = (
                f"WITH m AS MATERIALIZED ({inner}) SELECT seq, k1 FROM m"
                " WHERE (k1, seq) > (coalesce((SELECT k1 FROM m WHERE seq = ?), ?), ?)"
            )
            score, seq = query.cursor
            page_params += [seq, score, seq]
        elif query.cursor is not None:
            _check_cursor(query.cursor, text=False)
            keys_sql += " WHERE (k1, seq) > (?, ?)"
            page_params += list(query.cursor)
        keys_sql += " ORDER BY k1, seq LIMIT ? OFFSET ?"
        page_params += [query.limit + 1, query.offset]
        # The page's order is restored here (a key is unique: it ends with seq): sorting in
        # SQL would copy every document of the page through a sorter. CROSS JOIN keeps the
        # keys the outer loop, so SQLite streams them as a co-routine instead of first
        # copying them into a temporary table (about 5 us of a text search, bench_search).
        page_sql = (
            f"SELECT p.seq, d.doc, p.k1 FROM ({keys_sql}) p CROSS JOIN assets d ON d.seq = p.seq"
        )
        rows = conn.execute(page_sql, page_params).fetchall()
        rows.sort(key=_PAGE_ORDER)

        next_cursor = None
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            last = rows[-1]
            next_cursor = encode_cursor([last[2], last[0]])
        docs = [r[1] for r in rows]

        matched = f"SELECT a.rowid FROM {source} WHERE {filter_sql}"
        if by_name:
            # The page's walk of the name index finds a common tag's first page early, but
            # counting would walk all of it: the tag's list of assets is shorter (a popular
            # tag and a type at 100k assets: 120 against 380 ms for the total and facets).
            listed = filter_sql.replace(TAG_PER_ASSET, TAG_LISTED)
            matched = f"SELECT a.rowid FROM assets a {BY_SEQ} WHERE {listed}"
        # Counting facets over a broad match (the home page, a popular tag) costs tens of ms
        # at 100k assets; the counts only change with a write, so keep them until the next one.
        if cached is not None:
            if not query.facets:
                return SearchHits(docs, cached[0], Facets(), next_cursor)
            return SearchHits(docs, cached[0], cached[1], next_cursor, facets_json=cached[2])
        kept = counted(conn, query.tags[0], FACET_LIMIT) if tag_only else None
        if bounded and kept is None:
            raise _Unbounded  # an asset with too many tags to pair carries the tag
        if kept is not None:
            total, facets = kept[0], Facets()
            if query.facets:
                # Drift verdicts are few (profiled datasets only): count them from their side,
                # probing the tag per verdict (an IN list would visit every tagged asset).
                drift = conn.execute(
                    "SELECT d.drifted, count(*) FROM asset_drift d JOIN assets a"
                    f" ON a.seq = d.seq WHERE a.deleted = 0 AND {TAG_PER_ASSET}"
                    " GROUP BY d.drifted",
                    query.tags,
                ).fetchall()
                facets = kept[1].model_copy(
                    update={"drift": {DRIFT_FACET[bool(flag)]: n for flag, n in drift}}
                )
        elif not rows and query.cursor is None and query.offset == 0:
            total, facets = 0, Facets()
        elif query.facets:
            total, facets = self._counted(conn, matched, params)
        else:
            total = conn.execute(f"SELECT count(*) FROM ({matched})", params).fetchone()[0]
            facets = Facets()
        self._counts.put(count_key, generation, query.facets, total, facets)
        return SearchHits(docs=docs, total=total, facets=facets, next_cursor=next_cursor)

    @staticmethod
    def _common(conn: sqlite3.Connection, tags: list[str]) -> bool:
        """Whether assets carrying all of ``tags`` are expected to be over COMMON_SHARE of all
        (tags taken as independent)."""
        if not tags:
            return False
        (assets,) = conn.execute("SELECT coalesce(max(seq), 0) FROM assets").fetchone()
        share = 1.0
        for tag in tags:
            share *= tag_count(conn, tag) / max(assets, 1)
        return share >= COMMON_SHARE

    @staticmethod
    def _counted(conn: sqlite3.Connection, matched: str, params: list[Any]) -> tuple[int, Facets]:
        """The total and facets of a search, from one statement that finds its matches once
        (four statements each ran the search again: a broad or badly driven one paid for it
        four times)."""
        rows = conn.execute(
            f"WITH m AS MATERIALIZED ({matched})"
            " SELECT 0, NULL, count(*) FROM m"
            " UNION ALL SELECT * FROM (SELECT 1, tag, count(*) AS n FROM asset_tags"
            "  WHERE seq IN m GROUP BY tag ORDER BY n DESC, tag LIMIT ?)"
            f" UNION ALL SELECT 2, type, count(*) FROM assets {BY_SEQ} WHERE seq IN m"
            "  GROUP BY type"
            " UNION ALL SELECT 3, drifted, count(*) FROM asset_drift WHERE seq IN m"
            "  GROUP BY drifted",
            [*params, FACET_LIMIT],
        ).fetchall()
        total = 0
        tags: dict[str, int] = {}
        types: list[tuple[str, int]] = []
        drift: dict[str, int] = {}
        for part, key, n in rows:
            if part == 0:
                total = n
            elif part == 1:
                tags[key] = n
            elif part == 2:
                types.append((key, n))
            else:
                drift[DRIFT_FACET[bool(key)]] = n
        types.sort(key=lambda pair: (-pair[1], pair[0]))
        return total, Facets(tags=tags, types=dict(types), drift=drift)

    # --- reported lineage ---------------------------------------------------------------------

    async def by_location(self, locations: list[str]) -> dict[str, list[Asset]]:
        def _find(conn: sqlite3.Connection) -> dict[str, list[Asset]]:
            if not locations:
                return {}
            marks = ",".join("?" * len(locations))
            # The WHERE matches the partial index assets_location.
            rows = conn.execute(
                f"SELECT doc FROM assets WHERE deleted = 0 AND location IN ({marks})",
                locations,
            ).fetchall()
            found: dict[str, list[Asset]] = {}
            for (doc,) in rows:
                asset = Asset.model_validate_json(doc)
                found.setdefault(asset.location or "", []).append(asset)
            return {url: located_order(assets) for url, assets in found.items()}

        return await self._read(_find)

    async def record_lineage(self, report: LineageReport) -> bool:
        return await anyio.to_thread.run_sync(self._record_sync, report)

    def _record_sync(self, report: LineageReport) -> bool:
        with self.db.transaction() as conn:
            if report.event_key is not None:
                seen = conn.execute(
                    "SELECT 1 FROM lineage_events WHERE key = ?", (report.event_key,)
                ).fetchone()
                if seen:
                    return False
            conn.executemany(
                "INSERT INTO reported_edges(upstream, downstream, origin, run_id, reported_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(upstream, downstream, origin) DO UPDATE"
                " SET run_id = excluded.run_id, reported_at = excluded.reported_at"
                " WHERE excluded.reported_at >= reported_edges.reported_at",
                [
                    (e.upstream, e.downstream, e.origin, e.run_id, stamp(e.reported_at))
                    for e in report.edges
                ],
            )
            for downstream, edge_origin in report.replaces:
                kept = [
                    e.upstream
                    for e in report.edges
                    if (e.downstream, e.origin) == (downstream, edge_origin)
                ]
                conn.execute(
                    "DELETE FROM reported_edges WHERE downstream = ? AND origin = ?"
                    f" AND upstream NOT IN ({','.join('?' * len(kept))})",
                    [downstream, edge_origin, *kept],
                )
            conn.executemany(
                "INSERT INTO reported_facets(asset_id, kind, value, run_id, reported_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT(asset_id, kind) DO UPDATE"
                " SET value = excluded.value, run_id = excluded.run_id,"
                " reported_at = excluded.reported_at"
                " WHERE excluded.reported_at >= reported_facets.reported_at",
                [
                    (f.asset_id, f.kind, orjson.dumps(f.value), f.run_id, stamp(f.reported_at))
                    for f in report.facets
                ],
            )
            if (run := report.run) is not None:
                row = conn.execute(
                    "SELECT events, error FROM job_runs WHERE job_id = ? AND run_id = ?",
                    (run.job_id, run.run_id),
                ).fetchone()
                events: dict[str, str] = orjson.loads(row[0]) if row else {}
                at = stamp(run.event_time)
                events[run.event_type] = max(events.get(run.event_type, at), at)
                conn.execute(
                    "INSERT OR REPLACE INTO job_runs(job_id, run_id, events, error, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (
                        run.job_id,
                        run.run_id,
                        orjson.dumps(events),
                        run.error or (row[1] if row else None),
                        max(events.values()),
                    ),
                )
            if report.event_key is not None:
                conn.execute(
                    "INSERT INTO lineage_events(key, at) VALUES (?, ?)",
                    (report.event_key, stamp(datetime.now(UTC))),
                )
        return True

    async def reported_edges(
        self, ids: list[str], direction: str, origins: list[EdgeOrigin] | None = None
    ) -> list[ReportedEdge]:
        def _edges(conn: sqlite3.Connection) -> list[ReportedEdge]:
            if not ids:
                return []
            column = "downstream" if direction == "up" else "upstream"
            marks = ",".join("?" * len(ids))
            sql = (
                "SELECT upstream, downstream, origin, run_id, reported_at FROM reported_edges"
                f" WHERE {column} IN ({marks})"
            )
            params: list[Any] = list(ids)
            if origins:
                sql += f" AND origin IN ({','.join('?' * len(origins))})"
                params += origins
            return [
                ReportedEdge(upstream=u, downstream=d, origin=o, run_id=r, reported_at=t)
                for u, d, o, r, t in conn.execute(sql, params)
            ]

        return await self._read(_edges)

    async def job_runs(self, job_id: str, limit: int) -> list[JobRun]:
        def _runs(conn: sqlite3.Connection) -> list[JobRun]:
            rows = conn.execute(
                "SELECT run_id, events, error FROM job_runs WHERE job_id = ?"
                " ORDER BY updated_at DESC, run_id LIMIT ?",
                (job_id, limit),
            )
            return [JobRun.of(job_id, r, orjson.loads(e), err) for r, e, err in rows]

        return await self._read(_runs)

    async def reported_facets(self, asset_id: str) -> list[ReportedFacet]:
        def _facets(conn: sqlite3.Connection) -> list[ReportedFacet]:
            rows = conn.execute(
                "SELECT kind, value, run_id, reported_at FROM reported_facets WHERE asset_id = ?",
                (asset_id,),
            )
            return [
                ReportedFacet(
                    asset_id=asset_id, kind=k, value=orjson.loads(v), run_id=r, reported_at=t
                )
                for k, v, r, t in rows
            ]

        return await self._read(_facets)


def _check_cursor(cursor: list[Any], text: bool) -> None:
    """A cursor is a page's last key: [score, seq] for text, [name_lc, seq] otherwise. Any
    other shape (another kind of search's cursor, a forged one) would compare against keys of
    another type and answer an empty page, so it is refused."""
    key, seq = cursor if len(cursor) == 2 else (None, None)
    number = isinstance(key, int | float) and not isinstance(key, bool)
    if (
        not isinstance(seq, int)
        or isinstance(seq, bool)
        or not (number if text else isinstance(key, str))
    ):
        raise InvalidCursor(
            "The cursor does not belong to this kind of search; pass next_cursor from a page "
            "of the same search (same q, name, tag and filters), or omit it to start over."
        )


def _stored_doc(conn: sqlite3.Connection, side: _SideRows, seq: int) -> dict[str, Any]:
    side.flush(conn)  # the row may be new in this batch
    (doc,) = conn.execute("SELECT doc FROM assets WHERE seq = ?", (seq,)).fetchone()
    result: dict[str, Any] = orjson.loads(doc)
    return result


def _delete_side_rows(conn: sqlite3.Connection, seq: int, old: dict[str, Any]) -> None:
    """Deletes the label, owner and dependency rows ``_SideRows.add`` made of the stored
    document ``old``, by their keys: these tables keep no index by seq (it cost every insert
    more than reading the old document costs a rewrite)."""
    conn.executemany(
        "DELETE FROM asset_labels WHERE key = ? AND value = ? AND seq = ?",
        [(k, v, seq) for k, v in searchable_labels(old.get("labels"))],
    )
    conn.executemany(
        "DELETE FROM asset_owners WHERE owner = ? AND seq = ?",
        [(o, seq) for o in old.get("owners") or ()],
    )
    conn.executemany(
        "DELETE FROM asset_deps WHERE dep = ? AND seq = ?",
        [(d, seq) for d in old.get("depends_on") or ()],
    )


def _set_fts_merging(conn: sqlite3.Connection) -> None:
    """Stores FTS_USERMERGE and FTS_AUTOMERGE in the index's settings unless they are there
    (written once per file)."""
    for key, value in (("usermerge", FTS_USERMERGE), ("automerge", FTS_AUTOMERGE)):
        row = conn.execute("SELECT v FROM assets_fts_config WHERE k = ?", (key,)).fetchone()
        if row is None or row[0] != value:
            conn.execute("INSERT INTO assets_fts(assets_fts, rank) VALUES (?, ?)", (key, value))


def _merge_fts_segments(conn: sqlite3.Connection) -> bool:
    """One step of merging the FTS index's segments; False once there is nothing to merge
    (FTS5 changes fewer than two rows then: its documented way of saying so)."""
    before = conn.total_changes
    conn.execute("INSERT INTO assets_fts(assets_fts, rank) VALUES ('merge', ?)", (FTS_MERGE_PAGES,))
    return conn.total_changes - before >= 2


def _migrate_to_4(conn: sqlite3.Connection) -> None:
    """Gives a file from before schema 4 its location column, filled from the documents,
    and drops the expression index the column replaces and the side tables' seq indexes."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(assets)")}
    if "location" not in columns:
        conn.execute("ALTER TABLE assets ADD COLUMN location TEXT")
        conn.execute("UPDATE assets SET location = json_extract(CAST(doc AS TEXT), '$.location')")
    conn.execute("DROP INDEX IF EXISTS assets_location")
    for table in ("asset_labels", "asset_owners", "asset_deps"):
        conn.execute(f"DROP INDEX IF EXISTS {table}_seq")


def _migrate_to_5(conn: sqlite3.Connection) -> None:
    """Folds the tags of a file from before schema 5 to lower case, each once per asset, and
    counts its tag facets again: ``Sales`` and ``sales`` were two tags to its searches."""
    rows = conn.execute("SELECT tag, seq FROM asset_tags").fetchall()
    if all(tag == tag.lower() for tag, _ in rows):
        return
    conn.execute("DELETE FROM asset_tags")
    folded = sorted({(tag.lower(), seq) for tag, seq in rows})
    insert_rows(conn, "INSERT OR IGNORE INTO asset_tags(tag, seq)", folded, 2)
    TagFacets.rebuild(conn)


def _keep_drift(conn: sqlite3.Connection, seq: int, stored: dict[str, Any]) -> None:
    """A rewrite keeps the asset's drift verdict: it describes the data, not the manifest."""
    kept = conn.execute("SELECT flag FROM asset_drift WHERE seq = ?", (seq,)).fetchone()
    if kept is not None:
        stored["drift"] = orjson.loads(kept[0])


def from_settings(settings: Settings) -> SQLiteStore:
    return SQLiteStore(settings.catalogue_db, search_cache_mib=settings.search_cache_mib)

"""SQLite plumbing shared by the embedded stores (catalogue and feature store).

One file in WAL mode with ``synchronous=FULL``: a commit is on disk before a request is
acknowledged (DESIGN 8). Writes go through one connection under a lock inside ``BEGIN
IMMEDIATE`` (SQLite has one writer anyway, and IMMEDIATE makes a second process wait for the
lock rather than fail half-way); reads run on a fixed pool of connections in worker threads, so
memory stays bounded however many requests are in flight.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import sys
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from cairn import memory
from cairn.errors import InsufficientStorage, Unavailable
from cairn.models import label_text

__all__ = ["SQLiteFile", "connect", "fts_query", "label_text"]

T = TypeVar("T")

log = logging.getLogger("cairn.sqlite")

READERS = 4
# Page caches are private memory of each connection, and the operating system's file cache
# holds the same pages anyway: 16 MiB for the writer (a 100k-asset ingest ran no slower than
# with 64) and 8 MiB per reader keep a service's resident memory down (bench_footprint).
READER_CACHE_KIB = 8 * 1024
WRITER_CACHE_KIB = 16 * 1024
# Writes this long ago with none since: the caches' pages go back (``release_idle_memory``).
QUIET_SECONDS = 2.0
# SQLite's default: a commit that leaves the WAL at least this long copies it into the file.
AUTOCHECKPOINT_PAGES = 1000
# A checkpoint reads WAL frames and writes pages; it needs no cache of its own to speak of.
CHECKPOINT_CACHE_KIB = 256
# Bytes before each page in the WAL (https://sqlite.org/walformat.html).
WAL_FRAME_HEADER = 24
# A big write waits at most this long for the background checkpoint before appending anyway.
CHECKPOINT_WAIT_S = 30.0
# Below this much WAL, the copy into the file waits for bulk writes to pause this long: back-
# to-back bulk requests (a crawl's pushes, a bulk load) rewrite the same index pages, and one
# copy at the end takes each page once instead of once per request. A crawl of 10,000
# manifests writes 67 MB of WAL in 13 requests; with a copy after each, the benchmark's crawl
# took 3% longer (median of 6 interleaved runs: 2.125 against 2.060 s).
CHECKPOINT_AFTER_BYTES = 64 * 1024 * 1024
CHECKPOINT_QUIET_S = 1.0
# Upkeep after big writes (``SQLiteFile(upkeep=...)``) starts once writes have paused this long:
# a bulk load of many requests is then tidied once, at its end, not after each request.
UPKEEP_QUIET_S = 2.0

_TOKEN = re.compile(r"\w+", re.UNICODE)


def connect(path: Path, cache_kib: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk before the request is acknowledged (DESIGN 8).
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute(f"PRAGMA cache_size=-{cache_kib}")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


BUSY_TIMEOUT_MS = 10_000
# close() interrupts a write still in progress this often until the write has let go.
CLOSE_INTERRUPT_S = 0.05


def _primary_code(exc: sqlite3.Error) -> int | None:
    # Extended result codes share the low byte with their primary code.
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _disk_full(exc: sqlite3.Error) -> bool:
    return _primary_code(exc) == sqlite3.SQLITE_FULL


def _locked(exc: sqlite3.Error) -> bool:
    return _primary_code(exc) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def fts_query(text: str, *, whole_word_first: bool = False) -> str | None:
    """Turns free text into an FTS5 query of quoted terms, so no user input is FTS syntax.

    Every term must match; the last one also matches as a prefix (search-as-you-type).
    ``whole_word_first``: the last term is asked for whole too, which matches the same rows
    and ranks those holding it whole higher (bm25 adds up the phrases a row matches), so
    "sales" ranks sales_daily above salesforce_crm.
    """
    if not text.isascii():
        # A decomposed accent (e + U+0300 for "è", as some keyboards and pastes give) is no
        # word character, so it would split "crème" in two; composed, it is one word, as the
        # index's tokenizer reads the text either way.
        text = unicodedata.normalize("NFC", text)
    tokens = _TOKEN.findall(text)
    if whole_word_first:
        # FTS5 finds no word in a run of underscores: beside other phrases that empty phrase
        # was ignored, but as an operand of AND it matches nothing, so it is left out.
        tokens = [t for t in tokens if t.strip("_")]
    if not tokens:
        return None
    quoted = [f'"{t}"' for t in tokens[:32]]
    if whole_word_first:
        quoted[-1] = f"({quoted[-1]} OR {quoted[-1]}*)"
        return " AND ".join(quoted)  # FTS5 takes no implicit AND before a parenthesis
    quoted[-1] += "*"
    return " ".join(quoted)


class _WokenThread:
    """A thread that works when woken: wake-ups coalesce (one round covers every wake-up
    before it), and ``idle`` is set while no round is pending or running (tests and close()
    wait on it). A round runs ``work``; what the thread holds is opened by ``begin`` and
    closed by ``end``, both in the thread."""

    def __init__(
        self,
        name: str,
        work: Callable[[], None],
        begin: Callable[[], None] | None = None,
        end: Callable[[], None] | None = None,
    ) -> None:
        self._work = work
        self._begin = begin
        self._end = end
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.idle = threading.Event()
        self.idle.set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        with self._lock:
            self.idle.clear()
            self._wake.set()

    def _run(self) -> None:
        if self._begin is not None:
            self._begin()
        try:
            # The stop is checked before each wait too: work that waits on ``_wake`` itself
            # (``_wait_until``) may have taken close()'s wake-up.
            while not self._stop.is_set():
                self._wake.wait()
                self._wake.clear()
                if self._stop.is_set():
                    return
                self._work()
                with self._lock:
                    if not self._wake.is_set():
                        self.idle.set()
        finally:
            if self._end is not None:
                self._end()
            self.idle.set()

    def _wait_until(self, deadline: Callable[[], float]) -> bool:
        """Waits until ``time.monotonic()`` reaches ``deadline()``, asked again after every
        wake-up (another write, close()); False when closing."""
        while not self._stop.is_set():
            left = deadline() - time.monotonic()
            if left <= 0:
                return True
            if self._wake.wait(left):
                self._wake.clear()
        return False

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()


class _Checkpointer(_WokenThread):
    """Copies the WAL into the database file in a thread of its own, after big commits.

    SQLite checkpoints inside the commit that takes the WAL past 1,000 pages: a bulk write of
    thousands of assets (tens of MB of pages) would write them all a second time and wait for
    a second fsync before its request could answer. A commit is durable once the WAL is on
    disk (``synchronous=FULL``); the copy only has to happen before the WAL grows much, so a
    big transaction hands it to this thread instead. Below ``CHECKPOINT_AFTER_BYTES`` of WAL
    the copy waits until big writes pause for ``CHECKPOINT_QUIET_S``; past it, the copy starts
    at once and the next big write waits for it (``caught_up``), so the WAL starts over.
    """

    def __init__(self, db: SQLiteFile) -> None:
        self._db = db
        self._conn: sqlite3.Connection | None = None
        self._urgent = False
        # Cleared from a wake-up past the bound until the copy after it is done.
        self.caught_up = threading.Event()
        self.caught_up.set()
        super().__init__("cairn-sqlite-checkpoint", self._checkpoint, self._open, self._close)

    def wake_after(self, wal_bytes: int) -> None:
        """Asks for a copy of a WAL of ``wal_bytes``: now past the bound, else after a pause."""
        if wal_bytes >= CHECKPOINT_AFTER_BYTES:
            with self._lock:
                self._urgent = True
                self.caught_up.clear()
        self.wake()

    def _copy_at(self) -> float:
        """When the copy may start: now past the bound, else once big writes have paused."""
        return 0.0 if self._urgent else self._db.last_big_commit + CHECKPOINT_QUIET_S

    def _open(self) -> None:
        self._conn = connect(self._db.path, CHECKPOINT_CACHE_KIB)

    def _checkpoint(self) -> None:
        assert self._conn is not None
        if not self._wait_until(self._copy_at):
            return  # closing: the last connection to close copies the WAL itself
        with self._lock:
            self._urgent = False
        try:
            # PASSIVE: never waits for readers or the writer; what it cannot copy now, the
            # next checkpoint (or SQLite's own, at a small commit) copies.
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("%s: a background checkpoint failed: %s", self._db.path, exc)
        finally:
            with self._lock:
                if not self._urgent:
                    self.caught_up.set()

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class _Upkeep(_WokenThread):
    """Runs a store's upkeep step (``step(conn) -> more to do``) in a thread of its own, each
    step in a write transaction of its own, once writes have paused after a big one.

    Work that makes later reads cheaper but need not happen inside the write that made it
    necessary (merging a full-text index's segments): off the request path, and in short
    transactions, so a request's write waits at most one step for the lock. A write by anyone
    else meanwhile sends it back to waiting for a pause.
    """

    def __init__(self, db: SQLiteFile, step: Callable[[sqlite3.Connection], bool]) -> None:
        self._db = db
        self._step = step
        super().__init__("cairn-sqlite-upkeep", self._upkeep)

    def _upkeep(self) -> None:
        try:
            self._until_done()
        except Exception as exc:  # a full disk (InsufficientStorage) among them
            # Only later reads are slower for it; the next big write tries again.
            log.warning("%s: background upkeep failed: %s", self._db.path, exc)

    def _until_done(self) -> None:
        more = True
        while more and self._wait_until(self._paused_at):
            seen = self._db.commits
            while more and not self._stop.is_set() and self._db.commits == seen:
                with self._db.transaction() as conn:
                    more = self._step(conn)
                seen += 1

    def _paused_at(self) -> float:
        """When writes will have paused for UPKEEP_QUIET_S, if none comes meanwhile."""
        return self._db.last_commit + UPKEEP_QUIET_S


class SQLiteFile:
    """One database file: a writer connection under a lock and a bounded pool of readers."""

    def __init__(
        self,
        path: Path,
        *,
        readers: int = READERS,
        reader_cache_kib: int = READER_CACHE_KIB,
        writer_cache_kib: int = WRITER_CACHE_KIB,
        upkeep: Callable[[sqlite3.Connection], bool] | None = None,
    ):
        """``upkeep``: a step of background work after big writes (``_Upkeep``)."""
        self.path = Path(path)
        self._reader_cache_kib = reader_cache_kib
        self._writer_cache_kib = writer_cache_kib
        self._write_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._closing = False  # set by close(): transactions are refused, a running one stopped
        # Idle readers, the last one returned on top: short reads on the event loop come one
        # after another and keep reusing the same connection, whose page cache stays warm
        # (taken in turn, each pooled reader would hold a colder copy of the same pages).
        # list.append and list.pop are atomic in CPython, so this needs no lock.
        self._readers: list[sqlite3.Connection] = []
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._read_limiter = anyio.CapacityLimiter(readers)
        # Commits through this object, bumped under the write lock once each is durable.
        self.commits = 0
        self._checkpointer: _Checkpointer | None = None
        self._upkeep_step = upkeep
        self._upkeep: _Upkeep | None = None
        self._last_commit = 0.0
        self._last_big_commit = 0.0
        self._autocheckpoint_pages = AUTOCHECKPOINT_PAGES  # the writer's, as connect() left it
        self._page_size = 4096  # read from the file when it is opened
        self._released_at = 0  # ``commits`` when the caches were last handed back
        memory.hold(self)

    def open(self, schema: str, schema_version: int) -> sqlite3.Connection:
        """Creates the file and its tables if needed; refuses a file from a newer Cairn."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = connect(self.path, self._writer_cache_kib)
        conn.executescript(schema)
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?)", (schema_version,)
            )
        elif int(row[0]) > schema_version:
            conn.close()
            raise Unavailable(
                f"{self.path} was written by a newer Cairn (schema {row[0]}); upgrade Cairn."
            )
        self._page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        self._writer = conn
        return conn

    @property
    def last_big_commit(self) -> float:
        """``time.monotonic()`` at the last big commit (a bulk write) through this object."""
        return self._last_big_commit

    def _autocheckpoint(self, conn: sqlite3.Connection, pages: int) -> None:
        if pages != self._autocheckpoint_pages:
            conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
            self._autocheckpoint_pages = pages

    def _wal_bytes(self) -> int:
        """Bytes of WAL written since it last started over: the frame count (``mxFrame``) of
        the wal-index header, bytes 16-19 of the ``-shm`` file in native byte order
        (https://sqlite.org/walformat.html). Unreadable: the bound, so the copy starts now."""
        try:
            with open(f"{self.path}-shm", "rb") as shm:
                head = shm.read(20)
        except OSError:
            return CHECKPOINT_AFTER_BYTES
        if len(head) < 20:
            return CHECKPOINT_AFTER_BYTES
        return int.from_bytes(head[16:20], sys.byteorder) * (self._page_size + WAL_FRAME_HEADER)

    @property
    def last_commit(self) -> float:
        """``time.monotonic()`` at the last commit through this object."""
        return self._last_commit

    @property
    def upkeep_idle(self) -> threading.Event:
        """Set while no background upkeep is pending or running."""
        if self._upkeep is None:
            idle = threading.Event()
            idle.set()
            return idle
        return self._upkeep.idle

    def close(self) -> None:
        # First: the upkeep thread writes through the writer connection closed below.
        if self._upkeep is not None:
            self._upkeep.close()
            self._upkeep = None
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()
            self._readers = []
        self._close_writer()
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    def _close_writer(self) -> None:
        """Closes the writer once no transaction is using it.

        A write may still run in a worker thread (``cairn reindex`` after Ctrl-C: the event
        loop's task is cancelled, the thread is not), and closing a connection under a
        statement in progress crashes the process (SIGSEGV). So this waits for the write lock,
        interrupting the writer meanwhile: its statement stops, ``transaction`` rolls it back
        and lets go of the lock, and nothing half-written is kept. A transaction between
        statements is interrupted at its next one.
        """
        self._closing = True  # a transaction that starts from now on is refused
        writer = self._writer
        if writer is None:
            return
        while not self._write_lock.acquire(timeout=CLOSE_INTERRUPT_S):
            writer.interrupt()
        try:
            writer.close()
            self._writer = None
        finally:
            self._write_lock.release()

    def new_reader(self) -> sqlite3.Connection:
        """A read-only connection outside the pool, for a caller that keeps it (a probe)."""
        conn = connect(self.path, 1024)
        conn.execute("PRAGMA query_only=1")
        with self._readers_lock:
            self._all_readers.append(conn)
        return conn

    def _take_reader(self) -> sqlite3.Connection:
        try:
            return self._readers.pop()
        except IndexError:
            conn = connect(self.path, self._reader_cache_kib)
            conn.execute("PRAGMA query_only=1")
            with self._readers_lock:
                self._all_readers.append(conn)
            return conn

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs ``fn(conn, *args)`` on a pooled reader in a worker thread."""

        def run() -> T:
            conn = self._take_reader()
            try:
                return fn(conn, *args)
            finally:
                self._readers.append(conn)

        return await anyio.to_thread.run_sync(run, limiter=self._read_limiter)

    def read_here(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs ``fn(conn, *args)`` on a pooled reader in the calling thread: for reads
        known to be short, where handing them to a worker thread and back costs more CPU
        than the read itself (WAL readers do not wait for the writer)."""
        conn = self._take_reader()
        try:
            return fn(conn, *args)
        finally:
            self._readers.append(conn)

    @contextmanager
    def transaction(self, *, big: bool = False) -> Iterator[sqlite3.Connection]:
        """The writer inside ``BEGIN IMMEDIATE``; commits on success, rolls back on error.

        ``big``: a transaction of many pages (a bulk write) leaves copying the WAL into the
        file to a background thread (``_Checkpointer``) instead of doing it in its commit.

        A full disk becomes ``InsufficientStorage`` (507): SQLite has already rolled the
        transaction back by then, so nothing was half-written and the writer stays usable;
        writes succeed again as soon as space is freed, and reads never stopped.
        """
        with self._write_lock:
            # Read under the lock: close() swaps the writer out under it.
            conn = self._writer
            if conn is None or self._closing:
                raise Unavailable(f"{self.path} is closed (the service is stopping); retry.")
            checkpointer = self._checkpointer
            if big and checkpointer is not None:
                # The WAL starts over only once it is all copied: a big write that began
                # during the copy would append to it, and back-to-back bulk requests would
                # grow it without bound. Past the bound, the request's parsing and first
                # chunk overlap the copy; the writer waits here for the rest.
                checkpointer.caught_up.wait(CHECKPOINT_WAIT_S)
            # While a copy is due, no commit makes SQLite's own: a small write just after a
            # bulk one would otherwise copy the whole WAL inside its request.
            due = big or (checkpointer is not None and not checkpointer.idle.is_set())
            self._autocheckpoint(conn, 0 if due else AUTOCHECKPOINT_PAGES)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                    if big:
                        self._last_big_commit = time.monotonic()
                        if self._checkpointer is None:
                            self._checkpointer = _Checkpointer(self)
                        self._checkpointer.wake_after(self._wal_bytes())
                except BaseException:
                    # After some errors (a full disk among them) SQLite has rolled back
                    # already; a second ROLLBACK would fail and hide the real error.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if _disk_full(exc):
                    log.error("%s: the disk is full, a write was refused: %s", self.path, exc)
                    raise InsufficientStorage(
                        "The disk that holds this service's data is full, so the write did not "
                        "happen (nothing was half-written). Reads still work; retry the write "
                        "once an operator has freed space."
                    ) from exc
                if self._closing and _primary_code(exc) == sqlite3.SQLITE_INTERRUPT:
                    raise Unavailable(
                        f"{self.path} was closed during a write (the service or command is "
                        "stopping), so the write did not happen (nothing was half-written)."
                    ) from exc
                if _locked(exc):
                    # Another process (a second server on the same file, a backup, a sqlite3
                    # shell) held the write lock past the busy timeout: the client may retry.
                    log.warning("%s: a write gave up waiting for the lock: %s", self.path, exc)
                    raise Unavailable(
                        f"The database file is locked by another connection or process, which "
                        f"held it for over {BUSY_TIMEOUT_MS // 1000} s, so the write did not "
                        "happen (nothing was half-written); retry."
                    ) from exc
                raise
            self.commits += 1
            self._last_commit = time.monotonic()
        if big and self._upkeep_step is not None:
            if self._upkeep is None:
                self._upkeep = _Upkeep(self, self._upkeep_step)
            self._upkeep.wake()

    def release_idle_memory(self) -> bool:
        """Hands the connections' page caches back once writes have stopped for a while.

        A bulk load fills the writer's cache and the searches after it the readers' (up to
        48 MiB together, all of it pages the operating system's file cache holds anyway);
        kept, they stay resident for as long as the service runs. Connections busy now are
        left alone; the next query re-reads what it needs. Called by ``cairn.memory``'s
        trimming loop (``cairn up``); True when something was released.
        """
        if (
            self.commits == self._released_at
            or time.monotonic() - self._last_commit < QUIET_SECONDS
        ):
            return False
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            writer = self._writer  # under the lock: close() swaps it out under it
            if writer is None:
                return False
            self._released_at = self.commits
            writer.execute("PRAGMA shrink_memory")
        finally:
            self._write_lock.release()
        # One idle reader at a time, so a query meanwhile still finds the others idle.
        for conn in list(self._readers):
            try:
                self._readers.remove(conn)
            except ValueError:  # a query took it meanwhile
                continue
            try:
                conn.execute("PRAGMA shrink_memory")
            finally:
                # At the bottom: the reader on top (the warm one short reads reuse) stays there.
                self._readers.insert(0, conn)
        return True

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs ``fn(conn, *args)`` in one write transaction in a worker thread."""

        def run() -> T:
            with self.transaction() as conn:
                return fn(conn, *args)

        return await anyio.to_thread.run_sync(run)

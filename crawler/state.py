"""What a crawler pushed last time from one volume to one catalogue, so an unchanged volume
causes no writes.

One small SQLite file per (volume, catalogue instance) under ``<data dir>/crawl-state/``. The
catalogue is known by the instance id it reports (``GET /api/v1/instance``), created with its
store: a crawl aimed at another catalogue, or at one that was reset, starts from an empty state
and pushes everything, rather than skipping assets that catalogue lacks. A manifest's
fingerprint is only written after the catalogue acknowledged its assets, and before a batch is
sent its manifests are marked unsettled (``mark_unsettled``), so a crash mid-crawl re-sends
rather than loses. With crawl profiles on, the same mark records that each document sent owes a
profile (``profiles_owed``), kept until the metric store and the catalogue took the profile and
its drift flag (``profiles_settled``): a manifest saved as pushed is not parsed again, so a
profile step that was stopped or failed would otherwise never be tried again. A crawl with
profiles off sends documents without that mark, so it also records that the debts are no longer
complete (``profiles_tracked`` loses its row); the next crawl with profiles on then owes every
live asset a profile (``owe_untracked_profiles``), and the profile step skips those whose data the
metric store already profiled at the same fingerprint.

One crawl at a time holds a state (a lock file beside it): two crawls of the same volume into
the same catalogue would interleave their pushes and saves, and the one saving last could
record a manifest as pushed while the catalogue holds the other's older copy of it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS manifests (
    path        TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    locations   BLOB NOT NULL,   -- JSON list: the location of each document, for data stats
    docs        BLOB NOT NULL,   -- JSON list of the pushed asset documents
    doc_count   INTEGER          -- len(docs), so an unchanged manifest needs no decoding
);
-- The warnings a manifest's last parse reported (JSON list of Problem fields), said again by
-- every crawl that finds it unchanged: a crawl on a schedule would otherwise report them once.
CREATE TABLE IF NOT EXISTS warnings (
    path     TEXT PRIMARY KEY,
    problems BLOB NOT NULL
);
-- Assets sent with crawl profiles on whose profile, checks and drift flag were not all taken
-- yet. By asset, not manifest: one document's profile may land and its neighbour's not. Its
-- manifest's row holds the document to profile. A table of its own, created by this script on
-- open, so a state file of an earlier version needs no migration.
CREATE TABLE IF NOT EXISTS profiles_owed (
    asset_id TEXT PRIMARY KEY,
    path     TEXT NOT NULL
);
-- One row while profiles_owed holds every live asset not profiled since it was last sent: a
-- new state's first crawl adds it, a crawl that sends documents with profiles off (or an
-- earlier version, which kept no such row) leaves the state without it.
CREATE TABLE IF NOT EXISTS profiles_tracked (
    since INTEGER PRIMARY KEY CHECK (since = 1)
);
"""


# The fingerprint of a manifest whose documents were sent and maybe not taken (``mark_unsettled``):
# it matches no manifest, and the documents' content hashes are not trusted either.
UNSETTLED = "unsettled"
# Before the fingerprint of a manifest saved with errors: parsed again by every crawl, so its
# errors are reported until fixed, and counted as changed only when it is.
WITH_ERRORS = "errors:"


class ManifestState:
    """What was pushed for one manifest: its fingerprint, locations and asset documents.

    Loaded from the state file, the documents stay in the file until asked for, and are read
    and decoded afresh each time: a recrawl only needs them for the few manifests that
    changed or vanished, and 100k decoded manifests would cost several hundred MB.
    """

    __slots__ = ("_count", "_docs", "_fetch", "_path", "_raw", "fingerprint", "locations")

    def __init__(
        self,
        fingerprint: str,
        locations: list[str | None],
        docs: list[dict[str, Any]] | None = None,
        *,
        raw_docs: bytes | None = None,
        count: int | None = None,
        fetch: Callable[[str], bytes | None] | None = None,
        path: str = "",
    ) -> None:
        self.fingerprint = fingerprint
        self.locations = locations
        self._docs = docs
        self._raw = raw_docs
        self._count = count
        self._fetch = fetch  # reads the stored JSON of ``path`` from the state file
        self._path = path

    @classmethod
    def stored(
        cls,
        fingerprint: str,
        locations: list[str | None],
        count: int | None,
        fetch: Callable[[str], bytes | None],
        path: str,
    ) -> ManifestState:
        """``ManifestState(fingerprint, locations, count=count, fetch=fetch, path=path)``
        at a quarter of the cost: a recrawl loads one per manifest, and the keyword call (with
        a ``partial`` per manifest for ``fetch``, before) was a third of the state's load."""
        state = _new_state(cls)
        state.fingerprint = fingerprint
        state.locations = locations
        state._docs = state._raw = None
        state._count = count
        state._fetch = fetch
        state._path = path
        return state

    @property
    def docs(self) -> list[dict[str, Any]]:
        if self._docs is not None:
            return self._docs
        raw = self._raw if self._fetch is None else self._fetch(self._path)
        return orjson.loads(raw) if raw else []

    @property
    def count(self) -> int:
        """How many documents, without reading them when the state file says."""
        if self._docs is not None:
            return len(self._docs)
        if self._count is None:
            self._count = len(self.docs)
        return self._count

    def ids(self) -> set[str]:
        return {d["id"] for d in self.docs}


_new_state = object.__new__


class StateError(Exception):
    """The crawl state cannot be used; the message says where, why and what to do."""


class CrawlState:
    def __init__(self, state_dir: Path, volume_url: str, catalogue_id: str):
        key = hashlib.sha256(f"{volume_url}\n{catalogue_id}".encode()).hexdigest()[:16]
        self.path = state_dir / f"{key}.db"
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._lock_path = self.path.with_suffix(".lock")
            self._lock = _lock(self._lock_path, volume_url)
        except OSError as exc:
            raise StateError(
                f"cannot keep the crawl state in {state_dir}: {exc.strerror or exc}; set "
                "CAIRN_DATA_DIR to a folder the crawler can write"
            ) from exc
        try:
            self._open(state_dir, volume_url)
        except (OSError, sqlite3.Error) as exc:
            _unlock(self._lock_path, self._lock)
            raise StateError(
                f"cannot use the crawl state {self.path} ({exc}); if it is damaged, remove it: "
                "the next crawl then sends every asset again, which the catalogue answers "
                "as unchanged"
            ) from exc

    def _open(self, state_dir: Path, volume_url: str) -> None:
        # Earlier versions kept one state per volume, whatever the catalogue: never read again.
        legacy = state_dir / f"{hashlib.sha256(volume_url.encode()).hexdigest()[:16]}.db"
        for stale in (legacy, legacy.with_suffix(".db-wal"), legacy.with_suffix(".db-shm")):
            stale.unlink(missing_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        # Paths this crawl marked as new rows, with the documents marked (``_mark``): when a
        # path is saved with these very documents, its row holds them already.
        self._fresh: dict[str, list[dict[str, Any]]] = {}
        # Paths with a row in ``warnings``, once read (``warnings``).
        self._warned: set[str] | None = None
        self._conn.execute("PRAGMA journal_mode=WAL")
        # Said, not left to the build's default (some make it NORMAL under WAL, where a power
        # loss can undo the last commits): an unsettled mark undone after its batch landed
        # would let the next crawl skip a manifest whose assets the catalogue holds otherwise.
        self._conn.execute("PRAGMA synchronous=FULL")
        new = not self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'manifests'"
        ).fetchone()
        self._conn.executescript(SCHEMA)
        if new:  # nothing crawled yet: no asset owes a profile it is not marked for
            self._conn.execute("INSERT OR IGNORE INTO profiles_tracked VALUES (1)")
        if self._conn.execute("PRAGMA user_version").fetchone()[0] < 1:
            self._add_doc_count()

    def _add_doc_count(self) -> None:
        """State files written before ``doc_count`` existed get it, counted once: an unchanged
        recrawl writes nothing back, so it would otherwise decode every manifest's documents
        on every crawl."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(manifests)")}
            if "doc_count" not in columns:
                self._conn.execute("ALTER TABLE manifests ADD COLUMN doc_count INTEGER")
            stale = self._conn.execute(
                "SELECT path, docs FROM manifests WHERE doc_count IS NULL"
            ).fetchall()
            self._conn.executemany(
                "UPDATE manifests SET doc_count = ? WHERE path = ?",
                [(len(orjson.loads(docs)) if docs else 0, path) for path, docs in stale],
            )
            self._conn.execute("PRAGMA user_version = 1")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def load(self) -> dict[str, ManifestState]:
        """Every manifest's state; documents are read from the file when asked for, so they
        can only be asked for while this state is open."""
        rows = self._conn.execute("SELECT path, fingerprint, locations, doc_count FROM manifests")
        # Most manifests share a handful of location lists ('[null]' above all): each distinct
        # one is decoded once. Shared lists are safe: locations are only ever read.
        decoded: dict[bytes, list[str | None]] = {}
        out: dict[str, ManifestState] = {}
        fetch, stored = self._docs_of, ManifestState.stored
        for path, fp, locs, count in rows:
            locations = decoded.get(locs)
            if locations is None:
                locations = decoded[locs] = orjson.loads(locs)
            out[path] = stored(fp, locations, count, fetch, path)
        return out

    def _docs_of(self, path: str) -> bytes | None:
        row = self._conn.execute("SELECT docs FROM manifests WHERE path = ?", (path,)).fetchone()
        return row[0] if row else None

    def warnings(self) -> dict[str, list[dict[str, Any]]]:
        """Each manifest's standing warnings, by path (only manifests that have some)."""
        rows = self._conn.execute("SELECT path, problems FROM warnings")
        found = {path: orjson.loads(problems) for path, problems in rows}
        self._warned = set(found)
        return found

    def save(
        self,
        changed: dict[str, ManifestState],
        removed: list[str],
        warnings: dict[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """Writes the state of ``changed`` manifests and forgets ``removed`` ones; ``warnings``
        (by path, for changed manifests) replace what each of them had."""
        if not changed and not removed:
            return
        try:
            self._save(changed, removed, warnings or {})
        except sqlite3.Error as exc:
            raise StateError(
                f"the catalogue took this crawl's changes, but the crawl state {self.path} "
                f"could not be written ({exc}); the next crawl sends them again"
            ) from exc

    def _save(
        self,
        changed: dict[str, ManifestState],
        removed: list[str],
        warnings: dict[str, list[dict[str, Any]]],
    ) -> None:
        # Saved in parts (Crawler._save_answered): the marks of paths not saved yet stay.
        fresh = self._fresh
        # A new manifest's row, as marked before its batch was sent, holds the documents
        # saved now (the same objects): only its fingerprint and locations are written. A
        # cold crawl then encodes and writes each document once, not twice.
        settled = {
            p: s for p, s in changed.items() if s._docs is not None and _same(fresh.get(p), s._docs)
        }
        self._conn.execute("BEGIN")
        try:
            self._conn.executemany("DELETE FROM manifests WHERE path = ?", [(p,) for p in removed])
            self._conn.executemany(
                "UPDATE manifests SET fingerprint = ?, locations = ? WHERE path = ?",
                ((s.fingerprint, orjson.dumps(s.locations), p) for p, s in settled.items()),
            )
            # A generator, not a list: each row's JSON is freed once written. orjson leaves
            # several KB of spare capacity in every bytes object it returns, so holding all
            # of them at once cost ~8 KB a manifest (0.8 GB for 100k manifests).
            self._conn.executemany(
                "INSERT OR REPLACE INTO manifests(path, fingerprint, locations, docs, doc_count)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    (p, s.fingerprint, orjson.dumps(s.locations), orjson.dumps(s.docs), s.count)
                    for p, s in changed.items()
                    if p not in settled
                ),
            )
            # Only rows known to exist are deleted (all of them are known once ``warnings`` was
            # read): a cold crawl of 100k manifests would otherwise delete 100k absent rows.
            touched = [*changed, *removed]
            if self._warned is not None:
                touched = [p for p in touched if p in self._warned]
            self._conn.executemany("DELETE FROM warnings WHERE path = ?", [(p,) for p in touched])
            rows = [(p, orjson.dumps(w)) for p, w in warnings.items() if w and p in changed]
            self._conn.executemany("INSERT INTO warnings(path, problems) VALUES (?, ?)", rows)
            self._conn.execute("COMMIT")
            if self._warned is not None:
                self._warned.difference_update(touched)
                self._warned.update(p for p, _ in rows)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        finally:
            for p in changed:
                fresh.pop(p, None)
            for p in removed:
                fresh.pop(p, None)

    def mark_unsettled(
        self,
        batch: list[dict[str, Any]],
        known: Callable[[str], bool],
        *,
        profiles: bool = False,
    ) -> None:
        """Before ``batch`` goes to the catalogue: the rows of its manifests get the
        ``UNSETTLED`` fingerprint and hold the documents this batch sends beside those they
        held. ``known(path)`` says whether the state has a row for a path. With ``profiles``
        (the crawl profiles what it sends), each live document also owes a profile, in the
        same transaction: the fingerprint saved once the catalogue answers makes the next crawl
        skip the manifest, so the debt must be on disk before that can happen.

        A crawl that dies after the catalogue took the batch but before ``save`` (kill -9)
        leaves these marks: the next crawl parses the manifests again, sends every document
        of theirs again and deletes what has vanished meanwhile. Without them it took a
        manifest that came back unchanged (moved away and back) for unchanged while its asset
        stayed deleted, and never deleted the asset of a new manifest removed since, as no
        row named it.
        """
        by_path: dict[str, list[dict[str, Any]]] = {}
        for doc in batch:
            path = doc.get("manifest_path")
            if path:
                by_path.setdefault(path, []).append(doc)
        if not by_path:
            return
        try:
            # A path marked earlier in this crawl has a row too: a manifest whose documents
            # straddle two batches must keep the first batch's beside the second's.
            fresh = self._fresh
            owed = [
                (d["id"], p) for p, docs in by_path.items() for d in docs if not d.get("deleted")
            ]
            self._mark(by_path, [p for p in by_path if p in fresh or known(p)], owed, profiles)
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot write the crawl state {self.path} ({exc}); nothing of this batch "
                "was sent, the next crawl sends it"
            ) from exc

    def _mark(
        self,
        by_path: dict[str, list[dict[str, Any]]],
        known: list[str],
        owed: list[tuple[str, str]],
        profiles: bool,
    ) -> None:
        stored: dict[str, tuple[bytes, bytes]] = {}
        if known:
            stored = {
                path: (locations, docs)
                for path, locations, docs in self._conn.execute(
                    "SELECT path, locations, docs FROM manifests"
                    " WHERE path IN (SELECT value FROM json_each(?))",
                    (orjson.dumps(known).decode(),),
                )
            }
        # A generator, not a list, as in ``_save``: each row's JSON is freed once written.
        # Held for a whole batch (1,000 manifests) they outlived the transaction in the
        # allocator's free lists, and the crawler's peak RSS grew 7 MiB with these marks.
        rows = self._marked_rows(by_path, stored)
        self._conn.execute("BEGIN")
        try:
            self._conn.executemany(
                "INSERT OR REPLACE INTO manifests(path, fingerprint, locations, docs, doc_count)"
                " VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            if profiles:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO profiles_owed(asset_id, path) VALUES (?, ?)", owed
                )
            elif owed:  # sent unmarked: the debts no longer name every unprofiled asset
                self._conn.execute("DELETE FROM profiles_tracked")
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _marked_rows(
        self, by_path: dict[str, list[dict[str, Any]]], stored: dict[str, tuple[bytes, bytes]]
    ) -> Iterator[tuple[str, str, bytes, bytes, int]]:
        fresh = self._fresh
        for path, sent in by_path.items():
            found = stored.pop(path, None)
            if found is None:  # a new manifest: its documents as sent (a first crawl's case)
                fresh[path] = sent
                yield (path, UNSETTLED, b"[]", orjson.dumps(sent), len(sent))
                continue
            fresh.pop(path, None)
            locations, raw = found
            docs: list[dict[str, Any]] = orjson.loads(raw) if raw else []
            held = {d["id"] for d in docs}
            # A deletion is sent as the stored document marked deleted: the stored one stays,
            # so the deletion is sent again should the manifest still be gone.
            docs += [d for d in sent if d["id"] not in held and not d.get("deleted")]
            yield (path, UNSETTLED, locations, orjson.dumps(docs), len(docs))

    def owe_untracked_profiles(self) -> None:
        """Before a profile step: when crawls with profiles off sent documents since the last
        one with them on (or an earlier version wrote this state), every live asset of the
        state owes a profile, for none may have one for its data as it is now. The profile
        step then computes only those the metric store lacks at the data's fingerprint."""
        try:
            tracked = self._conn.execute("SELECT 1 FROM profiles_tracked").fetchone()
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot read the crawl state {self.path} ({exc}); if it is damaged, remove "
                "it: the next crawl then sends every asset again"
            ) from exc
        if tracked:
            return
        try:
            self._conn.execute("BEGIN")
            try:
                self._conn.execute(
                    "INSERT OR IGNORE INTO profiles_owed(asset_id, path)"
                    " SELECT json_extract(d.value, '$.id'), m.path"
                    " FROM manifests m, json_each(CAST(m.docs AS TEXT)) d"
                    " WHERE NOT coalesce(json_extract(d.value, '$.deleted'), 0)"
                )
                self._conn.execute("INSERT OR IGNORE INTO profiles_tracked VALUES (1)")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot write the crawl state {self.path} ({exc}); the assets crawled "
                "without profiles are profiled by a later crawl"
            ) from exc

    def owed_profiles(self, sending: Collection[str] = ()) -> list[dict[str, Any]]:
        """The stored documents of the assets that owe a profile, in path order, but for
        those in ``sending`` (the assets this crawl sent, profiled as sent). A mark whose
        asset its manifest's row no longer holds (the manifest or the document is gone, and
        the asset was deleted) is dropped: there is nothing left to profile.

        ``sending`` is left out in SQL, before any document is read: a cold crawl marks every
        document it sends as owed, and decoding them all here only to drop them cost ~800 MB
        for 100k documents."""
        try:
            return self._owed_profiles(sending)
        except sqlite3.Error as exc:
            raise StateError(
                f"cannot read the crawl state {self.path} ({exc}); if it is damaged, remove "
                "it: the next crawl then sends every asset again"
            ) from exc

    def _owed_profiles(self, sending: Collection[str]) -> list[dict[str, Any]]:
        # Grouped before the join: a manifest's documents are read once, not once per asset
        # of it that owes a profile.
        rows = self._conn.execute(
            "SELECT g.path, m.docs, g.ids FROM ("
            "  SELECT path, json_group_array(asset_id) AS ids FROM profiles_owed"
            "  WHERE asset_id NOT IN (SELECT value FROM json_each(?)) GROUP BY path"
            ") g LEFT JOIN manifests m ON m.path = g.path ORDER BY g.path",
            (orjson.dumps(list(sending)).decode(),),
        )
        found: list[dict[str, Any]] = []
        gone: list[str] = []
        for _path, raw, ids in rows:
            wanted = set(orjson.loads(ids))
            held = [d for d in (orjson.loads(raw) if raw else []) if d["id"] in wanted]
            found += held
            gone += wanted - {d["id"] for d in held}
        if gone:
            self.profiles_settled(gone)
        return found

    def profiles_settled(self, asset_ids: Iterable[str]) -> None:
        """Forgets the profiles owed by ``asset_ids``: the stores took them, or there was
        nothing to profile."""
        listed = list(asset_ids)
        if not listed:
            return
        try:
            self._conn.execute(
                "DELETE FROM profiles_owed WHERE asset_id IN (SELECT value FROM json_each(?))",
                (orjson.dumps(listed).decode(),),
            )
        except sqlite3.Error as exc:
            raise StateError(
                f"the profiles were sent, but the crawl state {self.path} could not be written "
                f"({exc}); the next crawl with profiles on checks them again"
            ) from exc

    def close(self) -> None:
        try:
            self._conn.close()
        finally:
            _unlock(self._lock_path, self._lock)


def _same(marked: list[dict[str, Any]] | None, docs: list[dict[str, Any]]) -> bool:
    """True when ``docs`` are the very documents ``marked`` (not equal copies: the crawl
    never changes a document once sent, so the same objects hold what was written)."""
    return (
        marked is not None
        and len(marked) == len(docs)
        and all(a is b for a, b in zip(marked, docs, strict=True))
    )


# Lock files this process holds, by real path: a POSIX lock does not keep out the process's
# own threads (a crawl.yaml's scheduled volumes), this does.
_HELD: set[str] = set()
_HELD_LOCK = threading.Lock()


def _lock(path: Path, volume_url: str) -> int:
    """An open descriptor of ``path`` holding its exclusive lock; StateError when another
    crawl holds it. The file stays: removing it would let two crawls lock two files.

    A POSIX record lock (lockf), not flock: it belongs to this process alone, so the parsing
    processes forked from the crawl do not hold it too, and it ends with the process."""
    busy = StateError(
        f"another crawl of {volume_url} into this catalogue is running (it holds {path}); "
        "this one stopped: crawl again once it ended"
    )
    key = os.path.realpath(path)
    with _HELD_LOCK:
        if key in _HELD:
            raise busy
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise busy from None
            raise
        _HELD.add(key)
    return fd


def _unlock(path: Path, fd: int) -> None:
    with _HELD_LOCK:
        os.close(fd)  # the lock goes with the descriptor
        _HELD.discard(os.path.realpath(path))

"""What a crawler pushed last time from one volume to one catalogue, so an unchanged volume
causes no writes.

One small SQLite file per (volume, catalogue instance) under ``<data dir>/crawl-state/``. The
catalogue is known by the instance id it reports (``GET /api/v1/instance``), created with its
store: a crawl aimed at another catalogue, or at one that was reset, starts from an empty state
and pushes everything, rather than skipping assets that catalogue lacks. A manifest's row is
only written after the catalogue acknowledged its assets, so a crash mid-crawl re-sends rather
than loses.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS manifests (
    path        TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    locations   BLOB NOT NULL,   -- JSON list: the location of each document, for data stats
    docs        BLOB NOT NULL    -- JSON list of the pushed asset documents
);
-- Whose state this is (volume and catalogue), so other crawls can find the locations this
-- one pushed to the same catalogue.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class ManifestState:
    """What was pushed for one manifest: its fingerprint, locations and asset documents.

    Loaded from the state file, the documents stay as the stored JSON until asked for, and
    are decoded afresh each time: a recrawl only needs them for the few manifests that
    changed or vanished, and 100k decoded manifests would cost several hundred MB.
    """

    __slots__ = ("_docs", "_raw", "fingerprint", "locations")

    def __init__(
        self,
        fingerprint: str,
        locations: list[str | None],
        docs: list[dict[str, Any]] | None = None,
        *,
        raw_docs: bytes | None = None,
    ) -> None:
        self.fingerprint = fingerprint
        self.locations = locations
        self._docs = docs
        self._raw = raw_docs

    @property
    def docs(self) -> list[dict[str, Any]]:
        if self._docs is not None:
            return self._docs
        return orjson.loads(self._raw) if self._raw else []

    def ids(self) -> set[str]:
        return {d["id"] for d in self.docs}


class CrawlState:
    def __init__(self, state_dir: Path, volume_url: str, catalogue_id: str):
        state_dir.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(f"{volume_url}\n{catalogue_id}".encode()).hexdigest()[:16]
        self.path = state_dir / f"{key}.db"
        # Earlier versions kept one state per volume, whatever the catalogue: never read again.
        legacy = state_dir / f"{hashlib.sha256(volume_url.encode()).hexdigest()[:16]}.db"
        for stale in (legacy, legacy.with_suffix(".db-wal"), legacy.with_suffix(".db-shm")):
            stale.unlink(missing_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(SCHEMA)
        self._conn.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
            [("volume", volume_url), ("catalogue", catalogue_id)],
        )

    def load(self) -> dict[str, ManifestState]:
        rows = self._conn.execute("SELECT path, fingerprint, locations, docs FROM manifests")
        return {
            path: ManifestState(fp, orjson.loads(locs), raw_docs=docs)
            for path, fp, locs, docs in rows
        }

    def save(self, changed: dict[str, ManifestState], removed: list[str]) -> None:
        if not changed and not removed:
            return
        self._conn.execute("BEGIN")
        try:
            self._conn.executemany("DELETE FROM manifests WHERE path = ?", [(p,) for p in removed])
            # A generator, not a list: each row's JSON is freed once written. orjson leaves
            # several KB of spare capacity in every bytes object it returns, so holding all
            # of them at once cost ~8 KB a manifest (0.8 GB for 100k manifests).
            self._conn.executemany(
                "INSERT OR REPLACE INTO manifests(path, fingerprint, locations, docs)"
                " VALUES (?, ?, ?, ?)",
                (
                    (p, s.fingerprint, orjson.dumps(s.locations), orjson.dumps(s.docs))
                    for p, s in changed.items()
                ),
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()


def pushed_locations(
    state_dir: Path, catalogue_id: str, volumes: Callable[[str], bool]
) -> dict[str, str]:
    """``location -> asset id`` of the live assets that crawls on this machine pushed to the
    catalogue ``catalogue_id`` from the volumes (or sources) ``volumes`` accepts, read from
    their crawl states."""
    found: dict[str, str] = {}
    for path in sorted(state_dir.glob("*.db")):
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        except sqlite3.Error:
            continue
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("catalogue") != catalogue_id or not volumes(meta.get("volume", "")):
                continue
            for (raw,) in conn.execute("SELECT docs FROM manifests"):
                for doc in orjson.loads(raw):
                    if doc.get("location") and not doc.get("deleted"):
                        found.setdefault(doc["location"], doc["id"])
        except sqlite3.Error:
            continue  # a state written before the meta table existed, or one being replaced
        finally:
            conn.close()
    return found

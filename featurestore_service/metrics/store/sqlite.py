"""Embedded metric store: its own SQLite file beside the feature store's (``metrics.db``)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import orjson

from cairn.settings import Settings
from cairn.sqlite import SQLiteFile
from featurestore_service.metrics.store.base import (
    DONE,
    FAILED,
    PENDING,
    FlagChange,
    MetricSet,
    ProfileRecord,
)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    subject    TEXT NOT NULL,
    version    INTEGER NOT NULL,
    status     TEXT NOT NULL,
    source     BLOB NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    REAL NOT NULL DEFAULT 0,
    error      TEXT,
    profile    BLOB,
    summary    BLOB,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (subject, version)
);
CREATE INDEX IF NOT EXISTS profiles_due ON profiles(status, next_at);
CREATE TABLE IF NOT EXISTS flag_changes (
    seq     INTEGER PRIMARY KEY,
    subject TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS metric_sets (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    labels     BLOB NOT NULL,
    doc        BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_sets_name ON metric_sets(name, id);
CREATE TABLE IF NOT EXISTS declared_checks (subject TEXT PRIMARY KEY, checks BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS metric_set_labels (
    key TEXT NOT NULL, value TEXT NOT NULL, id INTEGER NOT NULL,
    PRIMARY KEY (key, value, id)) WITHOUT ROWID;
"""

HEAD = "subject, version, status, source, attempts, error"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _record(row: tuple[Any, ...], with_profile: bool) -> ProfileRecord:
    record = ProfileRecord(
        subject=row[0],
        version=row[1],
        status=row[2],
        source=orjson.loads(row[3]),
        attempts=row[4],
        error=row[5],
    )
    if len(row) > 6:
        if with_profile and row[6] is not None:
            record.profile = orjson.loads(row[6])
        if row[7] is not None:
            record.summary = orjson.loads(row[7])
    return record


class SQLiteMetricStore:
    def __init__(self, path: Any):
        self.file = SQLiteFile(path)

    async def open(self) -> None:
        await anyio.to_thread.run_sync(self.file.open, SCHEMA, SCHEMA_VERSION)

    async def close(self) -> None:
        self.file.close()

    async def ping(self) -> None:
        await self.file.read(lambda conn: conn.execute("SELECT 1").fetchone())

    async def enqueue(self, subject: str, version: int, source: dict[str, Any]) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO profiles(subject, version, status, source, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (subject, version, PENDING, orjson.dumps(source), _now()),
            )
            return cursor.rowcount == 1

        return await self.file.write(run)

    async def due(self, now: float, limit: int) -> list[ProfileRecord]:
        def run(conn: sqlite3.Connection) -> list[ProfileRecord]:
            rows = conn.execute(
                f"SELECT {HEAD} FROM profiles WHERE status = ? AND next_at <= ?"
                " ORDER BY version, rowid LIMIT ?",
                (PENDING, now, limit),
            ).fetchall()
            return [_record(r, False) for r in rows]

        return await self.file.read(run)

    async def finish(
        self, subject: str, version: int, profile: dict[str, Any], summary: dict[str, Any]
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "UPDATE profiles SET status = ?, profile = ?, summary = ?, error = NULL,"
                " updated_at = ? WHERE subject = ? AND version = ?",
                (
                    DONE,
                    orjson.dumps(profile, option=orjson.OPT_SERIALIZE_NUMPY),
                    orjson.dumps(summary),
                    _now(),
                    subject,
                    version,
                ),
            )
            if cursor.rowcount:
                conn.execute(
                    "INSERT INTO flag_changes(subject, version) VALUES (?, ?)", (subject, version)
                )

        await self.file.write(run)

    async def flag_changes(self, limit: int) -> list[FlagChange]:
        def run(conn: sqlite3.Connection) -> list[FlagChange]:
            rows = conn.execute(
                "SELECT seq, subject, version FROM flag_changes ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            return [FlagChange(subject, version, str(seq)) for seq, subject, version in rows]

        return await self.file.read(run)

    async def flags_passed_on(self, changes: list[FlagChange]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "DELETE FROM flag_changes WHERE seq = ?", [(int(c.mark),) for c in changes]
            )

        if changes:
            await self.file.write(run)

    async def put_done(
        self,
        subject: str,
        version: int,
        source: dict[str, Any],
        profile: dict[str, Any],
        summary: dict[str, Any],
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO profiles(subject, version, status, source, profile,"
                " summary, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    subject,
                    version,
                    DONE,
                    orjson.dumps(source),
                    orjson.dumps(profile),
                    orjson.dumps(summary),
                    _now(),
                ),
            )
            return cursor.rowcount == 1

        return await self.file.write(run)

    async def put_failed(
        self, subject: str, version: int, source: dict[str, Any], error: str
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO profiles(subject, version, status, source, attempts,"
                " error, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?)",
                (subject, version, FAILED, orjson.dumps(source), error, _now()),
            )
            return cursor.rowcount == 1

        return await self.file.write(run)

    async def retry(
        self, subject: str, version: int, attempts: int, next_at: float, error: str, *, final: bool
    ) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE profiles SET status = ?, attempts = ?, next_at = ?, error = ?,"
                " updated_at = ? WHERE subject = ? AND version = ?",
                (FAILED if final else PENDING, attempts, next_at, error, _now(), subject, version),
            )

        await self.file.write(run)

    async def get(self, subject: str, version: int) -> ProfileRecord | None:
        def run(conn: sqlite3.Connection) -> ProfileRecord | None:
            row = conn.execute(
                f"SELECT {HEAD}, profile, summary FROM profiles WHERE subject = ? AND version = ?",
                (subject, version),
            ).fetchone()
            return _record(row, True) if row else None

        return await self.file.read(run)

    async def previous(self, subject: str, version: int) -> ProfileRecord | None:
        def run(conn: sqlite3.Connection) -> ProfileRecord | None:
            row = conn.execute(
                f"SELECT {HEAD}, profile, summary FROM profiles WHERE subject = ? AND version < ?"
                " AND status = ? ORDER BY version DESC LIMIT 1",
                (subject, version, DONE),
            ).fetchone()
            return _record(row, True) if row else None

        return await self.file.read(run)

    async def following(self, subject: str, version: int) -> ProfileRecord | None:
        def run(conn: sqlite3.Connection) -> ProfileRecord | None:
            row = conn.execute(
                f"SELECT {HEAD}, profile, summary FROM profiles WHERE subject = ? AND version > ?"
                " AND status = ? ORDER BY version LIMIT 1",
                (subject, version, DONE),
            ).fetchone()
            return _record(row, True) if row else None

        return await self.file.read(run)

    async def history(self, subject: str, limit: int) -> list[ProfileRecord]:
        def run(conn: sqlite3.Connection) -> list[ProfileRecord]:
            rows = conn.execute(
                f"SELECT {HEAD}, NULL, summary FROM profiles WHERE subject = ?"
                " ORDER BY version DESC LIMIT ?",
                (subject, limit),
            ).fetchall()
            return [_record(r, False) for r in rows]

        return await self.file.read(run)

    async def newest_done(self, subject: str) -> ProfileRecord | None:
        def run(conn: sqlite3.Connection) -> ProfileRecord | None:
            row = conn.execute(
                f"SELECT {HEAD}, NULL, summary FROM profiles WHERE subject = ? AND status = ?"
                " ORDER BY version DESC LIMIT 1",
                (subject, DONE),
            ).fetchone()
            return _record(row, False) if row else None

        return await self.file.read(run)

    async def known(self, subject: str, versions: list[int]) -> set[int]:
        def run(conn: sqlite3.Connection) -> set[int]:
            marks = ",".join("?" * len(versions))
            rows = conn.execute(
                f"SELECT version FROM profiles WHERE subject = ? AND version IN ({marks})",
                (subject, *versions),
            ).fetchall()
            return {r[0] for r in rows}

        if not versions:
            return set()
        return await self.file.read(run)

    async def put_checks(self, subject: str, checks: list[dict[str, Any]]) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO declared_checks(subject, checks) VALUES (?, ?)"
                " ON CONFLICT(subject) DO UPDATE SET checks = excluded.checks",
                (subject, orjson.dumps(checks)),
            )

        await self.file.write(run)

    async def get_checks(self, subject: str) -> list[dict[str, Any]]:
        def run(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            row = conn.execute(
                "SELECT checks FROM declared_checks WHERE subject = ?", (subject,)
            ).fetchone()
            return orjson.loads(row[0]) if row else []

        return await self.file.read(run)

    async def put_metric_set(self, metric_set: MetricSet) -> None:
        def run(conn: sqlite3.Connection) -> None:
            cursor = conn.execute(
                "INSERT INTO metric_sets(name, version, labels, doc, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    metric_set.name,
                    metric_set.version,
                    orjson.dumps(metric_set.labels),
                    orjson.dumps(metric_set.doc),
                    metric_set.created_at,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO metric_set_labels(key, value, id) VALUES (?, ?, ?)",
                [(k, v, cursor.lastrowid) for k, v in metric_set.labels.items()],
            )

        await self.file.write(run)

    async def metric_sets(
        self, *, name: str | None, labels: dict[str, str], limit: int, offset: int
    ) -> tuple[list[MetricSet], int]:
        def run(conn: sqlite3.Connection) -> tuple[list[MetricSet], int]:
            where, args = [], []
            if name is not None:
                where.append("name = ?")
                args.append(name)
            for key, value in labels.items():
                where.append("id IN (SELECT id FROM metric_set_labels WHERE key = ? AND value = ?)")
                args.extend([key, value])
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            total = conn.execute(f"SELECT count(*) FROM metric_sets {clause}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT name, version, labels, doc, created_at FROM metric_sets {clause}"
                " ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            found = [
                MetricSet(r[0], r[1], orjson.loads(r[2]), orjson.loads(r[3]), r[4]) for r in rows
            ]
            return found, total

        return await self.file.read(run)


def from_settings(settings: Settings) -> SQLiteMetricStore:
    return SQLiteMetricStore(settings.data_dir / "metrics.db")

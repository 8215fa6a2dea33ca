"""Metric store on MongoDB: one document per profile record, one per metric set.

Every write is a single document, so FerretDB (no transactions) gives the same guarantees.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

from cairn.mongo import AsyncDatabase, connect, literal, migrate, unavailable
from cairn.settings import Settings
from featurestore_service.metrics.store.base import (
    DONE,
    FAILED,
    PENDING,
    FlagChange,
    MetricSet,
    ProfileRecord,
)

PROFILES = "metric_profiles"
SETS = "metric_sets"
CHECKS = "metric_checks"


async def _schema_v1(db: AsyncDatabase) -> None:
    profiles = db.get_collection(PROFILES)
    await profiles.create_index(
        [("subject", ASCENDING), ("version", DESCENDING)], unique=True, name="subject_version"
    )
    await profiles.create_index([("status", ASCENDING), ("next_at", ASCENDING)], name="due")
    sets = db.get_collection(SETS)
    await sets.create_index([("name", ASCENDING), ("seq", DESCENDING)], name="name")
    await sets.create_index([("label_pairs", ASCENDING)], name="labels")


async def _schema_v2(db: AsyncDatabase) -> None:
    # Sparse: only the few records whose flag change is not passed on yet are indexed.
    await db.get_collection(PROFILES).create_index(
        [("flag_change", ASCENDING)], name="flag_change", sparse=True
    )


MIGRATIONS = {1: _schema_v1, 2: _schema_v2}


def _key(subject: str, version: int) -> str:
    return f"{subject}\x00{version}"


def _pair(key: str, value: str) -> str:
    # Encoded pairs: a label key such as "$where" or "a.b" is never read as an operator or path.
    return orjson.dumps([key, value]).decode()


def _record(doc: dict[str, Any]) -> ProfileRecord:
    # Profiles are kept as JSON text: their column names may be any string, which a document
    # key could not always be ("$x", "a.b"), and the JSON is what the API sends anyway.
    return ProfileRecord(
        subject=doc["subject"],
        version=doc["version"],
        status=doc["status"],
        source=orjson.loads(doc["source"]),
        attempts=doc.get("attempts", 0),
        error=doc.get("error"),
        profile=orjson.loads(doc["profile"]) if doc.get("profile") else None,
        summary=orjson.loads(doc["summary"]) if doc.get("summary") else None,
    )


class MongoMetricStore:
    def __init__(self, settings: Settings):
        self.client, self.db = connect(settings, "cairn-metrics")
        self._profiles: AsyncCollection = self.db.get_collection(PROFILES)
        self._sets: AsyncCollection = self.db.get_collection(SETS)
        self._checks: AsyncCollection = self.db.get_collection(CHECKS)

    async def open(self) -> None:
        async with unavailable("start-up"):
            await migrate(self.db, "metrics", MIGRATIONS)

    async def close(self) -> None:
        await self.client.close()

    async def ping(self) -> None:
        async with unavailable("the readiness check"):
            await self.db.command("ping")

    async def enqueue(self, subject: str, version: int, source: dict[str, Any]) -> bool:
        async with unavailable("queueing a profile"):
            result = await self._profiles.update_one(
                {"_id": _key(subject, version)},
                {
                    "$setOnInsert": {
                        "subject": subject,
                        "version": version,
                        "status": PENDING,
                        "source": orjson.dumps(source).decode(),
                        "attempts": 0,
                        "next_at": 0.0,
                        "updated_at": datetime.now(UTC),
                    }
                },
                upsert=True,
            )
        return result.upserted_id is not None

    async def due(self, now: float, limit: int) -> list[ProfileRecord]:
        async with unavailable("reading the profile queue"):
            cursor = self._profiles.find(
                {"status": PENDING, "next_at": {"$lte": now}},
                {"profile": 0, "summary": 0},
                sort=[("version", ASCENDING)],
                limit=limit,
            )
            return [_record(doc) async for doc in cursor]

    async def finish(
        self, subject: str, version: int, profile: dict[str, Any], summary: dict[str, Any]
    ) -> None:
        async with unavailable("storing a profile"):
            await self._profiles.update_one(
                {"_id": _key(subject, version)},
                {
                    "$set": {
                        "status": DONE,
                        "profile": orjson.dumps(profile).decode(),
                        "summary": orjson.dumps(summary).decode(),
                        "error": None,
                        "updated_at": datetime.now(UTC),
                        # On the record itself, so no crash can keep the profile and lose it.
                        "flag_change": secrets.token_hex(8),
                    }
                },
            )

    async def flag_changes(self, limit: int) -> list[FlagChange]:
        async with unavailable("reading flag changes"):
            cursor = self._profiles.find(
                {"flag_change": {"$exists": True}},
                {"subject": 1, "version": 1, "flag_change": 1},
                limit=limit,
            )
            return [
                FlagChange(doc["subject"], doc["version"], doc["flag_change"])
                async for doc in cursor
            ]

    async def flags_passed_on(self, changes: list[FlagChange]) -> None:
        async with unavailable("dropping flag changes"):
            for change in changes:
                # Only this finish's mark: one that replaced it since is not passed on yet.
                await self._profiles.update_one(
                    {
                        "_id": _key(change.subject, change.version),
                        "flag_change": literal(change.mark),
                    },
                    {"$unset": {"flag_change": ""}},
                )

    async def put_done(
        self,
        subject: str,
        version: int,
        source: dict[str, Any],
        profile: dict[str, Any],
        summary: dict[str, Any],
    ) -> bool:
        fields = {
            "status": DONE,
            "profile": orjson.dumps(profile).decode(),
            "summary": orjson.dumps(summary).decode(),
            "attempts": 0,
        }
        return await self._insert(subject, version, source, fields, "storing a profile")

    async def put_failed(
        self, subject: str, version: int, source: dict[str, Any], error: str
    ) -> bool:
        fields = {"status": FAILED, "error": error, "attempts": 1}
        return await self._insert(subject, version, source, fields, "storing a failed profile")

    async def _insert(
        self,
        subject: str,
        version: int,
        source: dict[str, Any],
        fields: dict[str, Any],
        doing: str,
    ) -> bool:
        """Adds a finished record unless ``version`` of ``subject`` exists; True when added."""
        async with unavailable(doing):
            result = await self._profiles.update_one(
                {"_id": _key(subject, version)},
                {
                    "$setOnInsert": {
                        "subject": subject,
                        "version": version,
                        "source": orjson.dumps(source).decode(),
                        "next_at": 0.0,
                        "updated_at": datetime.now(UTC),
                        **fields,
                    }
                },
                upsert=True,
            )
        return result.upserted_id is not None

    async def retry(
        self, subject: str, version: int, attempts: int, next_at: float, error: str, *, final: bool
    ) -> None:
        async with unavailable("recording a profile failure"):
            await self._profiles.update_one(
                {"_id": _key(subject, version)},
                {
                    "$set": {
                        "status": FAILED if final else PENDING,
                        "attempts": attempts,
                        "next_at": next_at,
                        "error": error,
                        "updated_at": datetime.now(UTC),
                    }
                },
            )

    async def get(self, subject: str, version: int) -> ProfileRecord | None:
        async with unavailable("reading a profile"):
            doc = await self._profiles.find_one({"_id": _key(subject, version)})
        return _record(doc) if doc else None

    async def previous(self, subject: str, version: int) -> ProfileRecord | None:
        async with unavailable("reading a profile"):
            doc = await self._profiles.find_one(
                {"subject": literal(subject), "version": {"$lt": version}, "status": DONE},
                sort=[("version", DESCENDING)],
            )
        return _record(doc) if doc else None

    async def following(self, subject: str, version: int) -> ProfileRecord | None:
        async with unavailable("reading a profile"):
            doc = await self._profiles.find_one(
                {"subject": literal(subject), "version": {"$gt": version}, "status": DONE},
                sort=[("version", ASCENDING)],
            )
        return _record(doc) if doc else None

    async def history(self, subject: str, limit: int) -> list[ProfileRecord]:
        async with unavailable("reading profiles"):
            cursor = self._profiles.find(
                {"subject": literal(subject)},
                {"profile": 0},
                sort=[("version", DESCENDING)],
                limit=limit,
            )
            return [_record(doc) async for doc in cursor]

    async def newest_done(self, subject: str) -> ProfileRecord | None:
        async with unavailable("reading a profile"):
            doc = await self._profiles.find_one(
                {"subject": literal(subject), "status": DONE},
                {"profile": 0},
                sort=[("version", DESCENDING)],
            )
        return _record(doc) if doc else None

    async def known(self, subject: str, versions: list[int]) -> set[int]:
        if not versions:
            return set()
        async with unavailable("reading profiles"):
            cursor = self._profiles.find(
                {"_id": {"$in": [_key(subject, v) for v in versions]}}, {"version": 1}
            )
            return {doc["version"] async for doc in cursor}

    async def put_checks(self, subject: str, checks: list[dict[str, Any]]) -> None:
        async with unavailable("storing checks"):
            await self._checks.replace_one(
                {"_id": literal(subject)},
                {"_id": subject, "checks": orjson.dumps(checks).decode()},
                upsert=True,
            )

    async def get_checks(self, subject: str) -> list[dict[str, Any]]:
        async with unavailable("reading checks"):
            doc = await self._checks.find_one({"_id": literal(subject)})
        return orjson.loads(doc["checks"]) if doc else []

    async def put_metric_set(self, metric_set: MetricSet) -> None:
        async with unavailable("storing a metric set"):
            await self._sets.insert_one(
                {
                    "name": metric_set.name,
                    "version": metric_set.version,
                    "labels": orjson.dumps(metric_set.labels).decode(),
                    "label_pairs": [_pair(k, v) for k, v in metric_set.labels.items()],
                    "doc": orjson.dumps(metric_set.doc).decode(),
                    "created_at": metric_set.created_at,
                    "seq": datetime.now(UTC).timestamp(),
                }
            )

    async def metric_sets(
        self, *, name: str | None, labels: dict[str, str], limit: int, offset: int
    ) -> tuple[list[MetricSet], int]:
        query: dict[str, Any] = {}
        if name is not None:
            query["name"] = literal(name)
        if labels:
            query["label_pairs"] = {"$all": [_pair(k, v) for k, v in labels.items()]}
        async with unavailable("searching metric sets"):
            total = await self._sets.count_documents(query)
            cursor = self._sets.find(query, sort=[("seq", DESCENDING)], skip=offset, limit=limit)
            found = [
                MetricSet(
                    doc["name"],
                    doc["version"],
                    orjson.loads(doc["labels"]),
                    orjson.loads(doc["doc"]),
                    doc["created_at"],
                )
                async for doc in cursor
            ]
        return found, total


def from_settings(settings: Settings) -> MongoMetricStore:
    return MongoMetricStore(settings)

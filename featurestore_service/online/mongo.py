"""MongoDB online store: one collection, ``online_features``; a document per set + entity key.

A row document (``_id`` = set, US, entity key JSON) holds the values of each version being
served or written, under ``v.<version>``: ``{t: event µs, c: created µs, x: values JSON}``. The
state of a set is one document in the same collection whose ``_id`` (set, RS) sorts just before
the set's rows, so a read of the state and the keys is one ``find`` on ``_id`` in index order:
the state is read first, then rows that already hold every value of the version it names
(a version goes live only once written, and its rows stay until the next materialization
starts). FerretDB, which the tests run, has no transactions and loses concurrent updates of
one document; here each document has one writer at a time: the process materializing the set.

A merge reads the batch's rows, keeps the newer of stored and new per key, and upserts by
``_id``; the set's single writer makes that read-then-write safe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cairn.mongo import connect, literal, migrate, unavailable
from cairn.settings import Settings
from featurestore_service.online.base import Batch, OnlineRows, OnlineState, OnlineTable

try:
    from pymongo import ASCENDING, UpdateOne
    from pymongo.asynchronous.collection import AsyncCollection
except ImportError as exc:  # pragma: no cover - the registry turns this into a clear message
    raise ImportError(
        f"{exc}; the mongo backend needs pip install 'cairn-catalogue[mongo]'"
    ) from exc

COLLECTION = "online_features"
STATE_SEP = "\x1e"
ROW_SEP = "\x1f"


async def _schema_v1(db: Any) -> None:
    await db.get_collection(COLLECTION).create_index([("f", ASCENDING)], name="set")


MIGRATIONS = {1: _schema_v1}


def _state_id(name: str) -> str:
    return name + STATE_SEP


def _row_id(name: str, key: bytes) -> str:
    return name + ROW_SEP + key.decode()


def _state(doc: dict[str, Any]) -> OnlineState:
    return OnlineState(
        name=doc["f"],
        live=OnlineTable.from_json(doc["live_meta"]) if doc.get("live_meta") else None,
        key_count=doc.get("key_count", 0),
        materialized_at=doc.get("materialized_at"),
        target=OnlineTable.from_json(doc["target_meta"]) if doc.get("target_meta") else None,
        progress=doc.get("progress", 0),
        pinned=bool(doc.get("pinned")),
    )


class MongoOnlineStore:
    def __init__(self, settings: Settings):
        self.client, self.db = connect(settings, "cairn-online")
        self.rows: AsyncCollection = self.db.get_collection(COLLECTION)

    async def open(self) -> None:
        async with unavailable("start-up"):
            await migrate(self.db, "online", MIGRATIONS)

    async def close(self) -> None:
        await self.client.close()

    async def state(self, name: str) -> OnlineState | None:
        async with unavailable("the read"):
            doc = await self.rows.find_one({"_id": literal(_state_id(name))})
        return _state(doc) if doc else None

    async def names(self) -> list[str]:
        async with unavailable("the read"):
            return [doc["f"] async for doc in self.rows.find({"state": True}, {"f": 1})]

    async def begin(self, name: str, target: OnlineTable, *, pinned: bool) -> int:
        async with unavailable("the write"):
            sid = _state_id(name)
            doc = await self.rows.find_one({"_id": literal(sid)})
            if doc is None:
                doc = {"_id": sid, "f": name, "state": True, "key_count": 0}
                await self.rows.update_one({"_id": sid}, {"$setOnInsert": doc}, upsert=True)
            # Another layout of the same version (written before times kept nanoseconds)
            # starts over: its rows count time in another unit.
            same = doc.get("target") == target.version and (
                doc.get("target_meta") == target.to_json().decode()
            )
            progress = doc.get("progress", 0) if same else 0
            live = doc.get("live")
            keep = {str(v) for v in (live, target.version) if v is not None}
            if progress == 0 and live != target.version:  # the live rows are being read
                keep.discard(str(target.version))
            await self._drop_versions(name, keep)
            await self.rows.update_one(
                {"_id": sid},
                {
                    "$set": {
                        "target": target.version,
                        "target_meta": target.to_json().decode(),
                        "progress": progress,
                        "pinned": pinned,
                    }
                },
            )
            return int(progress)

    async def _drop_versions(self, name: str, keep: set[str]) -> None:
        """Removes the values of every version not in ``keep`` from the set's rows."""
        sid = _state_id(name)
        doc = await self.rows.find_one({"_id": literal(sid)}, {"written": 1})
        written = {int(v) for v in (doc or {}).get("written", [])}
        for version in sorted(v for v in written if str(v) not in keep):
            await self.rows.update_many(
                {"f": literal(name), f"v.{version}": {"$exists": True}},
                {"$unset": {f"v.{version}": ""}},
            )
            await self.rows.update_one({"_id": literal(sid)}, {"$pull": {"written": version}})
        await self.rows.delete_many({"f": literal(name), "state": {"$exists": False}, "v": {}})

    async def write(self, name: str, version: int, batch: Batch, progress: int | None) -> None:
        field = f"v.{version}"
        ids = [_row_id(name, key) for key in batch.keys]
        async with unavailable("the write"):
            # One read of the batch's rows, then plain by-_id upserts of the newer ones: a
            # filter with more than _id makes FerretDB scan the collection for every row.
            stored = {
                doc["_id"]: doc.get("v", {}).get(str(version))
                async for doc in self.rows.find({"_id": {"$in": ids}}, {field: 1})
            }
            requests = []
            for row_id, ts, cts, value in zip(ids, batch.ts, batch.cts, batch.values, strict=True):
                current = stored.get(row_id)
                if current is not None and (current["t"], current["c"]) > (ts, cts):
                    continue  # a newer row of this key is in already
                requests.append(
                    UpdateOne(
                        {"_id": row_id},
                        {"$set": {"f": name, field: {"t": ts, "c": cts, "x": value}}},
                        upsert=True,
                    )
                )
            if requests:
                await self.rows.bulk_write(requests, ordered=False)
            update: dict[str, Any] = {"$addToSet": {"written": version}}
            if progress is not None:
                update["$set"] = {"progress": progress}
            await self.rows.update_one(
                {"_id": literal(_state_id(name)), "target": literal(version)}, update
            )

    async def switch(self, name: str, version: int, now: datetime) -> bool:
        sid = _state_id(name)
        async with unavailable("the switch"):
            doc = await self.rows.find_one({"_id": literal(sid), "target": literal(version)})
            if doc is None:
                return False
            count = await self.rows.count_documents(
                {"f": literal(name), f"v.{version}": {"$exists": True}}
            )
            result = await self.rows.update_one(
                {"_id": literal(sid), "target": literal(version)},
                {
                    "$set": {
                        "live": version,
                        "live_meta": doc["target_meta"],
                        "key_count": count,
                        "materialized_at": now,
                        "target": None,
                        "target_meta": None,
                        "progress": 0,
                    }
                },
            )
            return result.modified_count == 1

    async def clear(self, name: str) -> None:
        async with unavailable("the write"):
            await self.rows.delete_many({"f": literal(name)})

    async def read(self, name: str, keys: list[bytes]) -> OnlineRows:
        ids = [_state_id(name), *(_row_id(name, key) for key in keys)]
        async with unavailable("the read"):
            docs = await self.rows.find({"_id": {"$in": ids}}).sort("_id", ASCENDING).to_list()
        live: int | None = None
        rows: dict[bytes, tuple[int, bytes]] = {}
        prefix = len(name) + 1
        for doc in docs:
            if doc.get("state"):
                live = doc.get("live")
                continue
            if live is None:
                continue
            value = doc.get("v", {}).get(str(live))
            if value is not None:
                rows[doc["_id"][prefix:].encode()] = (value["t"], value["x"])
        return OnlineRows(live=live, rows=rows)


def from_settings(settings: Settings) -> MongoOnlineStore:
    return MongoOnlineStore(settings)

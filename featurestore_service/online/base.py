"""The ``OnlineStore`` protocol and what its implementations share.

Per feature set the store keeps a state (the live version, its key count, when it was
materialized, and the version being written with how far it got) and rows keyed by (set,
version, entity key). Materialization writes the rows of a *target* version beside the live
ones, recording progress as it goes (so a restart resumes), then switches ``live`` to the target
in one write: a reader resolves the live version and its rows in one read, so it sees the old
version or the new one, never a mix. Rows of versions neither live nor targeted are removed when
the next materialization begins, well after any reader of them has finished.

A row is (entity key, event time, created time, values): the key is the JSON array of the key
columns' values, the times are microseconds since the epoch (UTC; nanoseconds for a nanosecond
column, which the layout's ``unit`` says), the values are the JSON array
of the feature columns' values in the version's column order, encoded once at materialization
so a read only splices them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson

# Rows with no created timestamp all tie on it; any row with one is newer than none.
NO_CREATED = -(2**63)


@dataclass(slots=True)
class OnlineTable:
    """What a reader needs to decode a version's rows: its columns, keys and ttl."""

    version: int
    entities: list[str]
    features: list[str]  # the order of each row's values
    dtypes: dict[str, str]  # Arrow type of each entity and feature column
    ttl: int | None  # seconds
    # What a row's event time counts: "ns" for a nanosecond column, so that rows of one key
    # within one microsecond order as in a point-in-time join; "us" otherwise (and before).
    unit: str = "us"

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "version": self.version,
                "entities": self.entities,
                "features": self.features,
                "dtypes": self.dtypes,
                "ttl": self.ttl,
                "unit": self.unit,
            }
        )

    def micros(self, ts: int) -> int:
        """A stored event time in microseconds (floored, as the point-in-time join does)."""
        return ts // 1000 if self.unit == "ns" else ts

    @classmethod
    def from_json(cls, raw: bytes | str) -> OnlineTable:
        data = orjson.loads(raw)
        return cls(
            version=data["version"],
            entities=data["entities"],
            features=data["features"],
            dtypes=data["dtypes"],
            ttl=data["ttl"],
            unit=data.get("unit", "us"),
        )


@dataclass(slots=True)
class OnlineState:
    """What the online store holds for one feature set."""

    name: str
    live: OnlineTable | None = None
    key_count: int = 0
    materialized_at: datetime | None = None
    target: OnlineTable | None = None  # a materialization under way (or cut short)
    progress: int = 0  # row groups of the target written
    pinned: bool = False  # materialized on demand at a version that is not the latest

    def summary(self) -> dict[str, Any]:
        return {
            "live_version": self.live.version if self.live else None,
            "key_count": self.key_count,
            "materialized_at": self.materialized_at,
            "pending_version": self.target.version if self.target else None,
            "progress": self.progress,
            "pinned": self.pinned,
        }


@dataclass(slots=True)
class Batch:
    """Rows to merge into a target version: each key keeps the row of greatest (ts, cts)."""

    keys: list[bytes]
    ts: list[int]
    cts: list[int]
    values: list[bytes]


@dataclass(slots=True)
class OnlineRows:
    """The answer of one read: the live version (None: nothing materialized) and its rows."""

    live: int | None
    rows: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)  # key -> (ts, values)


def encode_key(values: list[Any] | tuple[Any, ...]) -> bytes:
    """The stored form of an entity key: the JSON array of its columns' values."""
    return orjson.dumps(list(values))


class OnlineStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def state(self, name: str) -> OnlineState | None: ...

    async def names(self) -> list[str]:
        """Every feature set the store has a state for."""

    async def begin(self, name: str, target: OnlineTable, *, pinned: bool) -> int:
        """Records ``target`` as the version being written; returns the row groups already done.

        The same target as before resumes where it stopped; another target starts over. Rows of
        versions that are neither live nor the target are removed.
        """

    async def write(self, name: str, version: int, batch: Batch, progress: int | None) -> None:
        """Merges ``batch`` into ``version``'s rows; ``progress`` (row groups done) when given."""

    async def switch(self, name: str, version: int, now: datetime) -> bool:
        """Makes the target ``version`` live in one write; False if the target changed since."""

    async def clear(self, name: str) -> None:
        """No live version any more (every version deleted, or no longer a feature table)."""

    async def read(self, name: str, keys: list[bytes]) -> OnlineRows:
        """The live version and the rows of ``keys`` in it, from one consistent read."""

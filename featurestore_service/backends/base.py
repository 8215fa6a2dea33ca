"""The ``FeatureSetStore`` protocol: the few primitives a feature-store backend implements.

A backend assigns version numbers (max + 1 per name, atomically, so concurrent writers get
distinct consecutive versions), keeps versions immutable except for the soft-delete flag, keeps
a pointer to the newest live version of each name, and holds the outbox of catalogue
registrations in the same transaction as the write. Diffs, representations, the latest-version
cache and catalogue delivery are written once on top of these primitives.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from cairn.errors import Conflict
from cairn.models import FeatureSet

# Fields of a stored document that a summary (listings, searches) leaves out.
SUMMARY_EXCLUDES = ("features", "data")


@dataclass(slots=True)
class NewVersion:
    """A validated version waiting for its number; the store assigns version and created_at."""

    name: str
    kind: str
    body: dict[str, Any]  # every FeatureSet field, in order; version and times are filled in
    content_hash: str  # of the payload: equal hashes mean equal values or equal Parquet bytes
    search_text: str  # feature or column names, for text search
    blob: str | None = None  # sha256 of the Parquet file of a table
    expected_version: int | None = None  # 409 unless this is the version the write gets


@dataclass(slots=True)
class StoredVersion:
    name: str
    version: int
    kind: str
    deleted: bool
    etag: str
    doc: bytes  # the FeatureSet as JSON, ready to send
    content_hash: str
    blob: str | None = None

    def model(self) -> FeatureSet:
        return FeatureSet.model_validate_json(self.doc)


@dataclass(slots=True)
class FeatureSetQuery:
    name: str | None = None  # exact name or prefix, case-insensitive
    name_exact: bool = False  # ``name`` must match exactly (case-sensitive)
    labels: list[tuple[str, str]] = field(default_factory=list)
    q: str | None = None
    all_versions: bool = False  # every live version (Mastro's routes), not just the latest
    full: bool = False  # whole documents rather than summaries
    limit: int = 20
    cursor: list[Any] | None = None
    offset: int = 0


@dataclass(slots=True)
class Hits:
    """Documents as stored, so an answer is spliced rather than re-encoded."""

    docs: list[bytes]
    total: int
    next_cursor: str | None = None


@dataclass(slots=True)
class OutboxEntry:
    name: str
    seq: int  # the newest queued registration of this name
    attempts: int


class FeatureSetStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raises when the backend cannot serve requests."""

    def generation(self) -> int:
        """A number that changes whenever any writer (any process) commits; cheap, sync."""

    async def create(self, new: NewVersion, now: datetime) -> StoredVersion:
        """Stores the next version of ``new.name`` and queues its catalogue registration.

        Raises ``Conflict`` when ``new.expected_version`` is set and is not the next version.
        """

    async def get(self, name: str, version: int) -> StoredVersion | None: ...

    async def latest(self, name: str) -> StoredVersion | None:
        """The newest version that is not deleted."""

    async def newest(self, name: str) -> StoredVersion | None:
        """The newest version, deleted or not."""

    async def as_of(self, name: str, at: datetime) -> StoredVersion | None:
        """The newest live version created at or before ``at``."""

    async def versions(self, name: str, limit: int, before: int | None) -> Hits:
        """Summaries of every version, newest first, below version ``before`` when given."""

    async def search(self, query: FeatureSetQuery) -> Hits: ...

    async def delete(self, name: str, version: int, now: datetime) -> StoredVersion | None:
        """Marks a version deleted (idempotent) and queues a catalogue update."""

    async def named_blobs(self, blobs: list[str]) -> set[str]:
        """Those of ``blobs`` (sha256 hashes) that a version, deleted or not, names."""

    async def outbox_enqueue(self, name: str, now: datetime) -> None:
        """Queues a registration of ``name`` that no write here carries: its catalogue asset
        changed elsewhere (the metric store's flags). Delivered like a write's, and with the
        registrations already queued for ``name`` as one."""

    async def outbox_due(self, now: float, limit: int) -> list[OutboxEntry]: ...

    async def outbox_next_due(self) -> float | None:
        """Unix time of the earliest pending registration, or None when nothing is queued."""

    async def outbox_done(self, name: str, seq: int) -> None:
        """Drops the registrations of ``name`` up to ``seq`` (later ones stay queued)."""

    async def outbox_retry(self, name: str, attempts: int, next_at: float, error: str) -> None: ...

    async def outbox_pending(self) -> int: ...


def check_expected(name: str, expected: int | None, newest: int, version: int) -> None:
    """Raises ``Conflict`` unless ``expected`` (when given) is ``version``, the next one."""
    if expected is None or expected == version:
        return
    if expected <= newest:
        raise Conflict(
            f"Version {expected} of {name!r} already exists and versions are "
            f"immutable; leave version out to create version {version}."
        )
    raise Conflict(
        f"The next version of {name!r} is {version}, not {expected}; leave version "
        "out to get the next one."
    )


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def seal(
    body: dict[str, Any], *, version: int, created_at: datetime, deleted_at: datetime | None
) -> tuple[bytes, bytes, str]:
    """The final document, its summary and its ETag (a hash of the document itself)."""
    doc = dict(body)
    doc["version"] = version
    doc["created_at"] = iso(created_at)
    doc["deleted"] = deleted_at is not None
    doc["deleted_at"] = iso(deleted_at) if deleted_at is not None else None
    doc["etag"] = ""
    digest = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
    etag = f'"{digest[:32]}"'
    doc["etag"] = etag
    summary = {k: v for k, v in doc.items() if k not in SUMMARY_EXCLUDES}
    return orjson.dumps(doc), orjson.dumps(summary), etag

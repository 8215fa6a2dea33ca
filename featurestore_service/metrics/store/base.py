"""The ``MetricStore`` protocol: profile records (a durable job queue too) and metric sets.

A profile record is keyed by (subject, version), where the subject is ``featureset:<name>``
or ``asset:<id>``. It is created ``pending`` when its version is written and becomes ``done``
(with the profile, its drift against the previous version and its check results) or
``failed``; pending records are the queue the worker drains, so a restart finishes them.
Finishing a profile also records a flag change for its subject in the same write, kept until
the worker has passed it on (the feature store queues a catalogue registration), so a crash
between the two cannot lose the catalogue's "drifted" and "checks-failed" tags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

PENDING = "pending"
DONE = "done"
FAILED = "failed"


@dataclass(slots=True)
class ProfileRecord:
    subject: str
    version: int
    status: str
    source: dict[str, Any]  # what to profile: {"kind": "featureset-table", "blob": sha256}
    attempts: int = 0
    error: str | None = None
    profile: dict[str, Any] | None = None  # with "drift" and "checks" once done
    summary: dict[str, Any] | None = None  # the few numbers a history (sparklines) needs


@dataclass(slots=True)
class FlagChange:
    """A finished profile whose subject's flags (drifted, checks failed) may have changed and
    were not passed on yet."""

    subject: str
    version: int
    mark: str  # tells this finish from a later one of the same record


@dataclass(slots=True)
class MetricSet:
    """A metric set computed elsewhere (Deequ, Mastro clients) and sent to be kept."""

    name: str
    version: str
    labels: dict[str, str]
    doc: dict[str, Any]
    created_at: str


class MetricStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def enqueue(self, subject: str, version: int, source: dict[str, Any]) -> bool:
        """Adds a pending record unless one exists; True when it was added."""

    async def due(self, now: float, limit: int) -> list[ProfileRecord]:
        """Pending records whose next attempt is due, lowest version first (so drift finds the
        version before it profiled already)."""

    async def finish(
        self, subject: str, version: int, profile: dict[str, Any], summary: dict[str, Any]
    ) -> None:
        """Stores the profile as done and, in the same write, a ``FlagChange`` for it."""

    async def flag_changes(self, limit: int) -> list[FlagChange]:
        """Flag changes not passed on yet."""

    async def flags_passed_on(self, changes: list[FlagChange]) -> None:
        """Drops ``changes``; a change recorded since by another finish of a record stays."""

    async def put_done(
        self,
        subject: str,
        version: int,
        source: dict[str, Any],
        profile: dict[str, Any],
        summary: dict[str, Any],
    ) -> bool:
        """Stores a profile computed elsewhere (the crawler's) as a done record; False when
        ``version`` of ``subject`` exists already (a concurrent sender got it)."""

    async def put_failed(
        self, subject: str, version: int, source: dict[str, Any], error: str
    ) -> bool:
        """Stores a profile that could not be computed elsewhere (the crawler could not read
        the file) as a failed record with its reason; False when ``version`` exists already."""

    async def retry(
        self, subject: str, version: int, attempts: int, next_at: float, error: str, *, final: bool
    ) -> None:
        """Records a failed attempt; ``final`` marks the record failed for good."""

    async def get(self, subject: str, version: int) -> ProfileRecord | None: ...

    async def previous(self, subject: str, version: int) -> ProfileRecord | None:
        """The newest done record of ``subject`` below ``version``."""

    async def following(self, subject: str, version: int) -> ProfileRecord | None:
        """The oldest done record of ``subject`` above ``version``."""

    async def history(self, subject: str, limit: int) -> list[ProfileRecord]:
        """The newest ``limit`` records of ``subject`` (without profiles), newest first."""

    async def newest_done(self, subject: str) -> ProfileRecord | None:
        """The newest done record of ``subject`` (without its profile): a pending or failed
        one above it has no verdict yet, or none at all."""

    async def known(self, subject: str, versions: list[int]) -> set[int]:
        """Which of ``versions`` have a record already."""

    async def put_checks(self, subject: str, checks: list[dict[str, Any]]) -> None:
        """Replaces the checks declared for ``subject`` (evaluated on each new version)."""

    async def get_checks(self, subject: str) -> list[dict[str, Any]]: ...

    async def put_metric_set(self, metric_set: MetricSet) -> None: ...

    async def metric_sets(
        self, *, name: str | None, labels: dict[str, str], limit: int, offset: int
    ) -> tuple[list[MetricSet], int]:
        """Matching sets (all labels must match), newest first, and how many match."""


def summary_of(profile: dict[str, Any]) -> dict[str, Any]:
    drift = profile.get("drift") or {}
    checks = profile.get("checks") or []
    return {
        "rows": profile["rows"],
        "null_rates": {c["name"]: c["null_rate"] for c in profile["columns"]},
        "drifted": bool(drift.get("drifted")),
        "drifted_columns": drift.get("drifted_columns", []),
        "against": drift.get("against"),
        "checks_failed": [c["name"] for c in checks if not c["passed"]],
    }

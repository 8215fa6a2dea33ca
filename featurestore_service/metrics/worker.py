"""Profiles feature-set versions in the background, durably.

The service's ``on_version`` hook hands each committed version to this worker, which records
it as a pending profile in the metric store; pending records are the queue. On start the
worker also compares every stored version with the metric store and queues the ones it has
never seen, which covers a crash between a version's commit and its queueing. A restart
therefore finishes whatever was pending. Profiling runs in a worker thread, one at a time, so
the requests the service answers meanwhile keep the other core.

A table version's profile reads its Parquet file; a version of named values is profiled as the
one-row table its checks are held to (``values_table``), so a ``warn`` check that fails on it
is kept with its version as a table's is. Drift compares tables only: one row is no
distribution, and a table is not compared with named values.

A finished profile may change its set's catalogue tags ("drifted", "checks-failed"). The
metric store records that change in the same write as the profile, and the worker passes it
on (``on_flags`` queues a registration in the feature store's outbox) before dropping it; a
crash in between passes it on again after the restart, which only repeats an idempotent
registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import orjson
import pyarrow as pa

from cairn.errors import InvalidRequest
from cairn.models import Check, StoredCheck
from cairn.retry import backoff_delay
from cairn.settings import Settings
from featurestore_service.backends.base import FeatureSetQuery, StoredVersion
from featurestore_service.metrics.checks import evaluate
from featurestore_service.metrics.drift import compare
from featurestore_service.metrics.profile import profile_parquet, profile_table
from featurestore_service.metrics.store.base import MetricStore, ProfileRecord, summary_of
from featurestore_service.service import FeatureStore, catalogue_id
from featurestore_service.tables import release_memory

log = logging.getLogger("cairn.featurestore.metrics")

BATCH = 20
MAX_ATTEMPTS = 5
IDLE_WAIT = 60.0
RECONCILE_PAGE = 500
SOURCE_KIND = "featureset-table"
VALUES_KIND = "featureset-values"
PERMANENT = (pa.ArrowException, FileNotFoundError)


def subject_of(name: str) -> str:
    return catalogue_id(name)


class ProfileWorker:
    def __init__(self, service: FeatureStore, store: MetricStore, settings: Settings):
        self.service = service
        self.store = store
        self.settings = settings
        self._fresh: list[tuple[str, int, dict[str, Any]]] = []
        self._wake = asyncio.Event()
        self._limiter = anyio.CapacityLimiter(1)
        # Awaited with a set's name when its catalogue tags may have changed; it must have
        # queued the set's registration durably when it returns, as the change is then dropped.
        self.on_flags: Callable[[str], Awaitable[None]] | None = None

    def notify(self, stored: StoredVersion) -> None:
        source = _source(stored.kind, stored.blob)
        if source is None:
            return
        self._fresh.append((stored.name, stored.version, source))
        self._wake.set()

    async def run(self) -> None:
        reconciled = False
        while True:
            self._wake.clear()
            try:
                if not reconciled:
                    await self.reconcile()
                    reconciled = True
                delay = await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("profiling round failed")
                delay = 5.0
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def reconcile(self) -> None:
        """Queues every live version the metric store has no record of."""
        offset = 0
        while True:
            hits = await self.service.search(
                FeatureSetQuery(all_versions=True, limit=RECONCILE_PAGE, offset=offset)
            )
            docs = [_loads(d) for d in hits.docs]
            by_name: dict[str, list[tuple[int, dict[str, Any]]]] = {}
            for doc in docs:
                blob = (doc.get("table") or {}).get("sha256")
                source = _source(doc.get("kind"), blob)
                if source is not None:
                    by_name.setdefault(doc["name"], []).append((doc["version"], source))
            for name, versions in by_name.items():
                known = await self.store.known(subject_of(name), [v for v, _ in versions])
                for version, source in versions:
                    if version not in known:
                        await self.store.enqueue(subject_of(name), version, source)
            offset += len(hits.docs)
            if len(hits.docs) < RECONCILE_PAGE or offset >= hits.total:
                return

    async def round(self) -> float:
        """Queues what was written, profiles what is due; returns seconds until more is due."""
        while self._fresh:
            name, version, source = self._fresh[0]
            await self.store.enqueue(subject_of(name), version, source)
            self._fresh.pop(0)
        due = await self.store.due(time.time(), BATCH)
        # Changes a crash or a failed hand-over left behind, then each as its profile is done.
        await self.pass_on_flags()
        for record in due:
            await self.profile(record)
            await self.pass_on_flags()
        if due or self._fresh:
            return 0.0
        return IDLE_WAIT

    async def profile(self, record: ProfileRecord) -> None:
        try:
            checks = await self.store.get_checks(record.subject)
            declared: list[Check] = [StoredCheck.model_validate(c) for c in checks]
            if record.source.get("kind") == VALUES_KIND:
                await self._profile_values(record, declared)
                return
            what = f"{record.subject} version {record.version}"
            async with self.service.blobs.local(record.source["blob"], what) as path:
                profile = await anyio.to_thread.run_sync(
                    _compute,
                    path,
                    self.settings.metrics_sample_rows,
                    record.version,
                    declared,
                    limiter=self._limiter,
                )
            previous = await self.store.previous(record.subject, record.version)
            if previous is not None and previous.profile is not None and _comparable(previous):
                self._drift(previous, profile)
            summary = summary_of(profile)
            await self.store.finish(record.subject, record.version, profile, summary)
            _log_failed(record, summary)
            # A later version profiled first (this one was retried, or queued late on a
            # restart) compared itself with an older version: compare it with this one now.
            later = await self.store.following(record.subject, record.version)
            if later is not None and later.profile is not None and _comparable(later):
                done = ProfileRecord(record.subject, record.version, "done", {}, profile=profile)
                self._drift(done, later.profile)
                await self.store.finish(
                    later.subject, later.version, later.profile, summary_of(later.profile)
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            attempts = record.attempts + 1
            # A file Arrow cannot read (corrupt, truncated) or that is gone will not mend
            # itself: failed at once, with the reason, rather than retried for nothing.
            final = attempts >= MAX_ATTEMPTS or isinstance(exc, PERMANENT)
            error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning(
                "profile of %s version %d failed (attempt %d%s): %s",
                record.subject,
                record.version,
                attempts,
                ", giving up" if final else "",
                error,
            )
            next_at = time.time() + backoff_delay(attempts, 1.0, 300.0)
            await self.store.retry(
                record.subject, record.version, attempts, next_at, error, final=final
            )

    async def _profile_values(self, record: ProfileRecord, declared: list[Check]) -> None:
        """A version of named values: the profile of its one-row table and its checks."""
        stored = await self.service.get(record.subject.removeprefix("featureset:"), record.version)
        features = [f.model_dump(mode="json") for f in stored.model().features]
        profile = await anyio.to_thread.run_sync(
            _compute_values, features, declared, limiter=self._limiter
        )
        summary = summary_of(profile)
        await self.store.finish(record.subject, record.version, profile, summary)
        _log_failed(record, summary)

    async def pass_on_flags(self) -> None:
        """Hands the sets whose profiles finished to ``on_flags``, and only then drops their
        changes: a crash in between repeats a registration rather than losing one."""
        if self.on_flags is None:
            return
        while changes := await self.store.flag_changes(BATCH):
            for subject in dict.fromkeys(c.subject for c in changes):
                await self.on_flags(subject.removeprefix("featureset:"))
            await self.store.flags_passed_on(changes)
            if len(changes) < BATCH:
                return

    async def catalogue_tags(self, name: str) -> list[str]:
        """Tags of the set's catalogue asset from its newest finished profile: "drifted" and
        "checks-failed" are then facets of catalogue search. A newer version still pending
        (the registration of its write comes first) or failed does not clear them."""
        try:
            newest = await self.store.newest_done(subject_of(name))
        except Exception:  # never let the metric store hold up a registration
            log.warning("metric store unavailable: catalogue tags of %s left out", name)
            return []
        summary = newest.summary if newest else None
        if not summary:
            return []
        tags = ["drifted"] if summary.get("drifted") else []
        return tags + (["checks-failed"] if summary.get("checks_failed") else [])

    def _drift(self, reference: ProfileRecord, profile: dict[str, Any]) -> None:
        assert reference.profile is not None
        drift = compare(
            reference.profile,
            profile,
            p_value=self.settings.metrics_drift_p_value,
            psi_threshold=self.settings.metrics_drift_psi,
        )
        drift["against"] = reference.version
        profile["drift"] = drift

    async def check_before_write(
        self, name: str, path: Path, checks: list[Check] | None = None
    ) -> None:
        """Refuses a table that fails a check declared with ``on_fail: reject`` (422): the
        checks its write declared, else the set's."""
        declared = await self._declared(name, checks)
        await self._refuse(name, [c for c in declared if c.on_fail == "reject"], path)

    async def check_values(
        self, name: str, features: list[dict[str, Any]], checks: list[Check] | None = None
    ) -> None:
        """The same for a set of named values, as a one-row table (a check's column is a
        feature's name)."""
        rejecting = [c for c in await self._declared(name, checks) if c.on_fail == "reject"]
        if rejecting:
            await self._refuse(name, rejecting, values_table(features))

    async def _declared(self, name: str, checks: list[Check] | None) -> list[Check]:
        if checks is not None:
            return checks
        stored = await self.store.get_checks(subject_of(name))
        return [StoredCheck.model_validate(c) for c in stored]

    async def keep_checks(self, name: str, checks: list[Check] | None) -> None:
        """Checks a committed write declared become the set's, so its profile and later
        versions are held to them too. Called only after the commit: a write refused later
        (a stale version, a store error) must leave the set's checks as they were."""
        if checks is not None:
            await self.store.put_checks(
                subject_of(name), [c.model_dump(mode="json", exclude_none=True) for c in checks]
            )

    async def _refuse(self, name: str, rejecting: list[Check], source: Path | pa.Table) -> None:
        if not rejecting:
            return
        results = await anyio.to_thread.run_sync(evaluate, rejecting, source, limiter=self._limiter)
        failed = [r for r in results if not r["passed"]]
        if failed:
            raise InvalidRequest(
                f"Feature set {name!r} refuses this version: {len(failed)} check(s) declared "
                "with on_fail: reject failed; fix the data or the checks (in this write's "
                f"checks, or PUT /api/v1/featuresets/{name}/checks) and send again.",
                errors=[
                    {
                        "field": f"checks.{r['name']}",
                        "message": f"observed {r['observed']}; failing sample {r['failing']}",
                    }
                    for r in failed
                ],
            )


def _source(kind: Any, blob: str | None) -> dict[str, Any] | None:
    """What the worker profiles of a version of this kind (None: nothing)."""
    if kind == "table":
        return {"kind": SOURCE_KIND, "blob": blob} if blob else None
    return {"kind": VALUES_KIND} if kind == "values" else None


def _comparable(record: ProfileRecord) -> bool:
    """Whether a table's profile may be compared with ``record``'s: not named values."""
    return record.source.get("kind") != VALUES_KIND


def _log_failed(record: ProfileRecord, summary: dict[str, Any]) -> None:
    if summary["checks_failed"]:
        log.warning(
            "%s version %d failed check(s) %s (kept with its profile)",
            record.subject,
            record.version,
            ", ".join(summary["checks_failed"]),
        )


def values_table(features: list[dict[str, Any]]) -> pa.Table:
    """Named values as a one-row table; a value Arrow cannot type alone is kept as its text."""
    columns: dict[str, pa.Array] = {}
    for feature in features:
        value = feature.get("value")
        if feature.get("dtype") == "timestamp" and isinstance(value, str):
            with contextlib.suppress(ValueError):  # a freshness check reads it as a time
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        try:
            columns[feature["name"]] = pa.array([value])
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[feature["name"]] = pa.array([None if value is None else str(value)])
    return pa.table(columns)


def _compute(path: Path, sample_rows: int, seed: int, declared: list[Check]) -> dict[str, Any]:
    try:
        profile = profile_parquet(path, sample_rows=sample_rows, seed=seed)
        profile["checks"] = evaluate(declared, path) if declared else []
    finally:
        # A profile reads up to a million rows: give the pool's and the heap's pages back,
        # or the service keeps the profile's peak (about 100 MiB at 1M x 20) for good.
        release_memory()
    return profile


def _compute_values(features: list[dict[str, Any]], declared: list[Check]) -> dict[str, Any]:
    table = values_table(features)
    profile = profile_table(table)
    profile["checks"] = evaluate(declared, table) if declared else []
    return profile


def _loads(doc: bytes) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(doc)
    return value

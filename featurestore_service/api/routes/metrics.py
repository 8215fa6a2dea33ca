"""Metric-store routes (DESIGN 10): profiles, drift, checks and metric sets sent from outside.

Drift flags live here (``GET /featuresets/{name}/metrics``) rather than in the version
documents: a version is immutable and its ETag hashes its document, while its profile and
drift are computed after it is acknowledged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cairn.errors import Conflict, InvalidRequest, NotFound
from cairn.mastro import MastroRoute, first_page
from cairn.models import MASTRO_MAX_PER_PAGE, CheckList, LabelValue, MastroPage
from cairn.openapi import problems
from cairn.paging import MAX_PAGE, mastro_page
from cairn.sqlite import label_text
from cairn.web import CairnRoute, invalid_request, json_body, validated
from featurestore_service.api.deps import (
    FeatureStoreDep,
    ReadGuard,
    WriteGuard,
    int_param,
)
from featurestore_service.api.routes.featuresets import VersionPath
from featurestore_service.metrics.drift import compare
from featurestore_service.metrics.profile import profile_table, sketch_of, with_dates
from featurestore_service.metrics.skew import SkewSampler
from featurestore_service.metrics.store.base import (
    DONE,
    FAILED,
    PENDING,
    MetricSet,
    MetricStore,
    ProfileRecord,
    summary_of,
)
from featurestore_service.metrics.worker import ProfileWorker, subject_of
from featurestore_service.service import FeatureStore

router = APIRouter(prefix="/api/v1", tags=["metrics"], route_class=CairnRoute)
# Mastro's metric-store routes: mounted like the other Mastro routes (cairn.mastro), with
# Mastro's error shape.
metricstore_router = APIRouter(tags=["mastro-compatible"], route_class=MastroRoute)


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
    )


def _metrics(request: Request) -> MetricStore:
    store: MetricStore = request.app.state.metric_store
    return store


def _worker(request: Request) -> ProfileWorker:
    worker: ProfileWorker = request.app.state.profile_worker
    return worker


def shown(record: ProfileRecord) -> dict[str, Any]:
    """A record as the API shows it: the sketches (base64, for drift) stay in the store."""
    out: dict[str, Any] = {
        "subject": record.subject,
        "version": record.version,
        "status": record.status,
        "error": record.error,
        "attempts": record.attempts,
        "source": record.source,
    }
    if record.profile is not None:
        out.update({k: v for k, v in record.profile.items() if k != "sketches"})
        if isinstance(out.get("columns"), list):
            out["columns"] = [with_dates(c) for c in out["columns"]]
    return out


async def _version_record(
    request: Request, service: FeatureStore, name: str, version: int
) -> ProfileRecord:
    """A version's profile record (named values are profiled as a one-row table)."""
    stored = await service.get(name, version)  # 404 naming the versions that exist
    record = await _metrics(request).get(subject_of(name), version)
    if record is None:
        if not request.app.state.settings.metrics_profiling:
            raise NotFound(
                f"Version {version} of {name!r} has no profile and profiling is off "
                "(CAIRN_METRICS_PROFILING=false)."
            )
        # Written while profiling was off, or not yet queued by the worker: queue it.
        _worker(request).notify(stored)
        return ProfileRecord(subject_of(name), version, "pending", {})
    return record


@router.get(
    "/featuresets/{name}/versions/{version}/profile",
    responses={
        **problems(400, 404, 422),
        202: {"description": "Accepted: the profile is still queued"},
    },
    dependencies=[ReadGuard],
    summary="Column profile and check results of a version (named values: a one-row table; "
    "202 while queued; status failed with the error when it cannot be computed)",
)
async def profile(
    name: str, version: VersionPath, request: Request, service: FeatureStoreDep
) -> Response:
    record = await _version_record(request, service, name, version)
    # 202 while queued; a profile that failed for good is an answer (status and error).
    return _json(shown(record), 202 if record.status == PENDING else 200)


@router.get(
    "/featuresets/{name}/versions/{version}/drift",
    responses={
        **problems(400, 404, 422),
        202: {"description": "Accepted: a profile is still queued"},
    },
    dependencies=[ReadGuard],
    summary="Drift of a version against another (default: the previous profiled one)",
)
async def drift(
    name: str, version: VersionPath, request: Request, service: FeatureStoreDep
) -> Response:
    against = int_param(request.query_params, "against", None, 1)
    record = await _version_record(request, service, name, version)
    if record.status != DONE or record.profile is None:
        return _json(shown(record) | {"drift": None}, 202)
    if against is None:
        found = record.profile.get("drift")
        return _json({"subject": record.subject, "version": version, "drift": found})
    reference = await _version_record(request, service, name, against)
    if reference.status != DONE or reference.profile is None:
        raise Conflict(
            f"Version {against} of {name!r} has no profile yet ({reference.status}); "
            "ask again in a moment."
        )
    settings = request.app.state.settings
    result = compare(
        reference.profile,
        record.profile,
        p_value=settings.metrics_drift_p_value,
        psi_threshold=settings.metrics_drift_psi,
    )
    result["against"] = against
    return _json({"subject": record.subject, "version": version, "drift": result})


@router.get(
    "/featuresets/{name}/metrics",
    responses=problems(400, 404, 422),
    dependencies=[ReadGuard],
    summary="Per-version rows, null rates, drift flags and failed checks, newest first",
)
async def history(name: str, request: Request, service: FeatureStoreDep) -> Response:
    limit = int_param(request.query_params, "limit", 50, 1, 500)
    assert limit is not None
    await service.latest(name)  # 404 for an unknown set
    records = await _metrics(request).history(subject_of(name), limit)
    items = [
        {"version": r.version, "status": r.status, "error": r.error, **(r.summary or {})}
        for r in records
    ]
    return _json({"name": name, "items": items})


@router.put(
    "/featuresets/{name}/checks",
    responses=problems(400, 404, 409, 422),
    dependencies=[WriteGuard],
    summary="Declare the checks every new version of a feature set is held to",
)
async def put_checks(name: str, request: Request) -> Response:
    checks = validated(CheckList, await json_body(request))
    await _metrics(request).put_checks(
        subject_of(name), [c.model_dump(mode="json", exclude_none=True) for c in checks.checks]
    )
    return _json({"name": name, "checks": checks.model_dump(mode="json")["checks"]})


@router.get(
    "/featuresets/{name}/checks", dependencies=[ReadGuard], responses=problems(400, 404, 422)
)
async def get_checks(name: str, request: Request) -> Response:
    return _json({"name": name, "checks": await _metrics(request).get_checks(subject_of(name))})


# --- training/serving skew -------------------------------------------------------------------


class SkewSamples(BaseModel):
    """Feature rows served elsewhere (a model server's inputs), one object per row."""

    rows: list[dict[str, Any]] = Field(min_length=1, max_length=10_000)


@router.post(
    "/featuresets/{name}/skew/samples",
    responses={
        **problems(400, 404, 409, 422),
        202: {
            "description": "Accepted: the rows were added to the sample, which is kept in "
            "memory only (a restart loses it)"
        },
    },
    dependencies=[WriteGuard],
    summary="Add served feature rows to the skew sample of a feature set",
    description="The sample is kept in this process's memory only, never written to disk: a "
    "restart (or a crash) of the feature store loses every row sent, and the sample starts "
    "empty again. Each feature-store process keeps its own sample.",
)
async def skew_samples(name: str, request: Request, service: FeatureStoreDep) -> Response:
    body = validated(SkewSamples, await json_body(request))
    await service.latest(name)  # 404 for an unknown set
    sampler: SkewSampler = request.app.state.skew
    sampler.record(name, body.rows)
    return _json({"name": name, "accepted": len(body.rows)}, 202)


@router.get(
    "/featuresets/{name}/skew",
    responses={
        **problems(400, 404, 422),
        202: {"description": "Accepted: the live version's profile is still queued"},
    },
    dependencies=[ReadGuard],
    summary="Served values (sampled) against the live version's profile",
)
async def skew(name: str, request: Request, service: FeatureStoreDep) -> Response:
    live = await service.latest(name)
    if live.kind != "table":
        raise NotFound(f"Feature set {name!r} holds named values; skew compares tables.")
    record = await _version_record(request, service, name, live.version)
    if record.status != DONE or record.profile is None:
        return _json(shown(record) | {"skew": None}, 202)
    sampler: SkewSampler = request.app.state.skew
    columns = [c["name"] for c in record.profile["columns"]]
    sample = sampler.sample(name, columns)
    if sample is None:
        raise NotFound(
            f"No served rows of {name!r} are sampled: set CAIRN_METRICS_SKEW_SAMPLE_RATE above "
            f"0, or POST /api/v1/featuresets/{name}/skew/samples."
        )
    table, seen = sample
    served = await anyio.to_thread.run_sync(profile_table, table)
    settings = request.app.state.settings
    result = compare(
        record.profile,
        served,
        p_value=settings.metrics_drift_p_value,
        psi_threshold=settings.metrics_drift_psi,
    )
    result["against"] = live.version
    return _json(
        {
            "name": name,
            "version": live.version,
            "rows_seen": seen,
            "rows_sampled": table.num_rows,
            "skew": result,
        }
    )


# --- catalogue assets: profiles the crawler computes and sends ----------------------------------


class AssetProfile(BaseModel):
    """``PUT /metrics/assets/{id}/profile``: one profile of an asset's data file, or why the
    file could not be profiled (``error``; stored as a failed version, not tried again until
    the file changes)."""

    fingerprint: str = Field(min_length=1, max_length=200, description="size:mtime of the file")
    location: str | None = Field(None, max_length=4096)
    profile: dict[str, Any] | None = None
    error: str | None = Field(None, min_length=1, max_length=2000)
    checks: list[dict[str, Any]] = Field(default_factory=list, max_length=200)

    @model_validator(mode="after")
    def _one_of(self) -> AssetProfile:
        if (self.profile is None) == (self.error is None):
            raise ValueError("send either profile (the file's profile) or error (why not)")
        return self


class _TopValue(BaseModel):
    value: str | int | float | bool | None  # a key of the drift's counts: hashable
    count: int = Field(ge=0)


class _ProfiledColumn(BaseModel):
    """What the summary and the drift read of a column; the rest is kept as sent."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=1024)
    rows: int = Field(ge=0)
    nulls: int = Field(ge=0)
    null_rate: float = Field(ge=0, le=1)
    count: int = Field(0, ge=0)
    top: list[_TopValue] | None = None


class _SentProfile(BaseModel):
    model_config = ConfigDict(extra="allow")

    rows: int = Field(ge=0)
    columns: list[_ProfiledColumn] = Field(max_length=100_000)
    sketches: dict[str, str] = Field(default_factory=dict)


class _CheckResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    passed: bool


def _check_profile(profile: dict[str, Any], checks: list[dict[str, Any]]) -> None:
    """A 422 naming the first fields of a sent profile that the summary or a later drift
    would fail on; the profile itself is stored as sent."""
    problems: list[dict[str, str]] = []
    for prefix, model, data in [("profile", _SentProfile, profile)] + [
        (f"checks.{i}", _CheckResult, check) for i, check in enumerate(checks)
    ]:
        try:
            model.model_validate(data)
        except ValidationError as exc:
            problems += [
                {"field": f"{prefix}.{e['field']}", "message": e["message"]}
                for e in invalid_request(exc).errors
            ]
    sketches = profile.get("sketches")
    for name, encoded in sketches.items() if isinstance(sketches, dict) else ():
        try:
            sketch_of(encoded)
        except (ValueError, TypeError, LookupError, RuntimeError) as exc:
            problems.append(
                {"field": f"profile.sketches.{name}", "message": f"is not a sketch ({exc})"}
            )
    if problems:
        listed = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        raise InvalidRequest(f"Fix the profile and send again: {listed}", errors=problems)


def asset_subject(asset_id: str) -> str:
    return f"asset:{asset_id}"


@router.put(
    "/metrics/assets/{asset_id}/profile",
    responses=problems(400, 404, 409, 422),
    dependencies=[WriteGuard],
    summary="Store a crawled asset's profile (a new version unless the file is unchanged)",
)
async def put_asset_profile(asset_id: str, request: Request) -> Response:
    body = validated(AssetProfile, await json_body(request))
    profile = body.profile
    if profile is not None:
        _check_profile(profile, body.checks)
    store = _metrics(request)
    subject = asset_subject(asset_id)
    settings = request.app.state.settings
    for _ in range(10):  # two crawlers sending at once: the loser takes the next number
        latest = await store.history(subject, 1)
        if latest and latest[0].source.get("fingerprint") == body.fingerprint:
            return _json({"subject": subject, "version": latest[0].version, "unchanged": True})
        version = latest[0].version + 1 if latest else 1
        if profile is None:
            assert body.error is not None
            source = {"kind": "asset", "fingerprint": body.fingerprint, "location": body.location}
            if await store.put_failed(subject, version, source, body.error):
                return _json(
                    {"subject": subject, "version": version, "status": FAILED, "error": body.error},
                    201,
                )
            continue
        profile = {**profile, "checks": body.checks}
        previous = await store.previous(subject, version)
        if previous is not None and previous.profile is not None:
            drift_result = compare(
                previous.profile,
                profile,
                p_value=settings.metrics_drift_p_value,
                psi_threshold=settings.metrics_drift_psi,
            )
            drift_result["against"] = previous.version
            profile["drift"] = drift_result
        source = {"kind": "asset", "fingerprint": body.fingerprint, "location": body.location}
        if await store.put_done(subject, version, source, profile, summary_of(profile)):
            summary = summary_of(profile)
            return _json({"subject": subject, "version": version, **summary}, 201)
    raise Conflict(f"Profiles of asset {asset_id!r} are being written concurrently; retry.")


async def _asset_record(request: Request, asset_id: str, version: int | None) -> ProfileRecord:
    store = _metrics(request)
    subject = asset_subject(asset_id)
    if version is None:
        latest = await store.history(subject, 1)
        if not latest:
            raise NotFound(
                f"Asset {asset_id!r} has no profile: the crawler profiles Parquet and CSV "
                "files when CAIRN_CRAWL_PROFILES is on."
            )
        version = latest[0].version
    record = await store.get(subject, version)
    if record is None:
        raise NotFound(f"Asset {asset_id!r} has no profile version {version}.")
    return record


@router.get(
    "/metrics/assets/{asset_id}/profile",
    dependencies=[ReadGuard],
    responses=problems(400, 404, 422),
)
async def asset_profile(asset_id: str, request: Request) -> Response:
    version = int_param(request.query_params, "version", None, 1)
    return _json(shown(await _asset_record(request, asset_id, version)))


@router.get(
    "/metrics/assets/{asset_id}/drift",
    dependencies=[ReadGuard],
    responses=problems(400, 404, 409, 422),
)
async def asset_drift(asset_id: str, request: Request) -> Response:
    version = int_param(request.query_params, "version", None, 1)
    against = int_param(request.query_params, "against", None, 1)
    record = await _asset_record(request, asset_id, version)
    if record.profile is None:  # failed: the file could not be read, so nothing to compare
        return _json(shown(record) | {"drift": None})
    if against is None:
        found = record.profile.get("drift")
        return _json({"subject": record.subject, "version": record.version, "drift": found})
    reference = await _asset_record(request, asset_id, against)
    if reference.profile is None:
        raise Conflict(
            f"Version {against} of asset {asset_id!r} has no profile ({reference.status}: "
            f"{reference.error}); compare against a version whose status is done."
        )
    settings = request.app.state.settings
    result = compare(
        reference.profile,
        record.profile,
        p_value=settings.metrics_drift_p_value,
        psi_threshold=settings.metrics_drift_psi,
    )
    result["against"] = against
    return _json({"subject": record.subject, "version": record.version, "drift": result})


@router.get(
    "/metrics/assets/{asset_id}/history",
    dependencies=[ReadGuard],
    responses=problems(400, 404, 422),
)
async def asset_history(asset_id: str, request: Request) -> Response:
    limit = int_param(request.query_params, "limit", 50, 1, 500)
    assert limit is not None
    records = await _metrics(request).history(asset_subject(asset_id), limit)
    items = [
        {"version": r.version, "status": r.status, "error": r.error, **(r.summary or {})}
        for r in records
    ]
    return _json({"asset_id": asset_id, "items": items})


# --- metric sets sent from elsewhere: Mastro's metric store, Deequ's AnalysisResult -----------


class MastroMetricSet(BaseModel):
    """Mastro's ``PUT /metricstore/`` body; ``metrics`` holds Deequ AnalysisResults."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=512)
    version: str = Field("", max_length=256)
    description: str = Field("", max_length=10_000)
    labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=100)
    metrics: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)


class MetricSetLabels(BaseModel):
    labels: dict[str, LabelValue] = Field(min_length=1, max_length=100)
    limit: int = Field(10, ge=1, le=MASTRO_MAX_PER_PAGE)
    page: MastroPage = 1


def _deequ_problems(metrics: list[dict[str, Any]]) -> list[dict[str, str]]:
    found = []
    for i, result in enumerate(metrics):
        context = result.get("analyzerContext")
        if context is None:
            continue  # Cairn's own shape: any JSON object
        if not isinstance(context, dict) or not isinstance(context.get("metricMap"), list):
            found.append(
                {
                    "field": f"metrics[{i}].analyzerContext.metricMap",
                    "message": "a Deequ AnalysisResult needs analyzerContext.metricMap, a list",
                }
            )
    return found


def _mastro_doc(metric_set: MetricSet) -> dict[str, Any]:
    return {**metric_set.doc, "inserted_at": metric_set.created_at}


@metricstore_router.put(
    "/metricstore/",
    dependencies=[WriteGuard],
    responses=problems(400, 422),
    summary="Store a metric set (Mastro's shape; Deequ AnalysisResults or Cairn's own JSON)",
)
async def put_metric_set(request: Request) -> Response:
    body = validated(MastroMetricSet, await json_body(request))
    wrong = _deequ_problems(body.metrics)
    if wrong:
        # The message carries each field too: Mastro's error shape has no errors[] list.
        listed = "; ".join(f"{w['field']}: {w['message']}" for w in wrong)
        raise InvalidRequest(f"Fix these metrics and send again: {listed}.", errors=wrong)
    doc = body.model_dump(mode="json")
    labels = {k: label_text(v) for k, v in body.labels.items()}
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    await _metrics(request).put_metric_set(MetricSet(body.name, body.version, labels, doc, created))
    return _json({**doc, "inserted_at": created}, 201)


@metricstore_router.get(
    "/metricstore/name/{name}", dependencies=[ReadGuard], responses=problems(400, 404)
)
async def metric_sets_by_name(name: str, request: Request) -> Response:
    limit = int_param(request.query_params, "limit", 10, 1, MASTRO_MAX_PER_PAGE)
    page = int_param(request.query_params, "page", 1, 0, MAX_PAGE)
    assert limit is not None and page is not None
    page = first_page(page)
    found, total = await _metrics(request).metric_sets(
        name=name, labels={}, limit=limit, offset=(page - 1) * limit
    )
    if total == 0:
        raise NotFound(f"No metric set is named {name!r}.")
    return _json(mastro_page([_mastro_doc(m) for m in found], total, page, limit))


@metricstore_router.post(
    "/metricstore/labels", dependencies=[ReadGuard], responses=problems(400, 404)
)
async def metric_sets_by_labels(request: Request) -> Response:
    body = validated(MetricSetLabels, await json_body(request))
    labels = {k: label_text(v) for k, v in body.labels.items()}
    page = first_page(body.page)
    found, total = await _metrics(request).metric_sets(
        name=None, labels=labels, limit=body.limit, offset=(page - 1) * body.limit
    )
    if total == 0:
        # As Mastro's other routes (and Cairn's copies of them) answer an empty result.
        raise NotFound("No metric sets in given collection")
    return _json(mastro_page([_mastro_doc(m) for m in found], total, page, body.limit))

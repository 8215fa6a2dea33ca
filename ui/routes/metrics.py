"""The metrics page of a feature set: what people compare at a glance.

Per column, the chosen version's histogram over the one it is compared with, a drift badge
with the test and its p-value, null-rate sparklines across versions; the row-count sparkline;
check results with their failing samples. Everything comes from the feature store's metric
routes (``/featuresets/{name}/metrics``, ``.../versions/{v}/profile``, ``.../drift``).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from cairn.epochs import epoch_text, epoch_unit
from ui.backend import ApiError, ServiceDown
from ui.metric_charts import Overlay, overlay, spark
from ui.render import note_down, render
from ui.routes.featuresets import _version, not_found, unavailable
from ui.visitor import ReaderDep

router = APIRouter(include_in_schema=False)

HISTORY = 30


@router.get("/featuresets/{name}/metrics", response_class=HTMLResponse)
async def metrics_page(name: str, request: Request, api: ReaderDep) -> HTMLResponse:
    notices: list[str] = []
    try:
        history = (await api.featureset_metrics(name, HISTORY)).get("items") or []
    except ServiceDown as exc:
        return unavailable(request, exc)
    except ApiError as exc:
        return not_found(request, name, exc)
    done = [h for h in history if h.get("status") == "done"]
    wanted = _version(request.query_params.get("v"))
    against = _version(request.query_params.get("against"))
    if wanted is None:
        wanted = int(done[0]["version"]) if done else None
    profile: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    if wanted is not None:
        try:
            profile_res, drift_res = await asyncio.gather(
                api.featureset_profile(name, wanted), api.featureset_drift(name, wanted, against)
            )
            profile = profile_res if profile_res.get("status") == "done" else None
            drift = drift_res.get("drift")
            if profile_res.get("status") == "failed":
                notices.append(f"Version {wanted} could not be profiled: {profile_res['error']}")
            elif profile is None:
                notices.append(f"Version {wanted} is still being profiled; reload in a moment.")
            if drift and drift.get("against"):
                reference = await api.featureset_profile(name, int(drift["against"]))
        except ServiceDown as exc:
            return unavailable(request, exc)
        except ApiError as exc:
            notices.append(exc.detail)
    return _page(
        request,
        name=name,
        crumbs=[("/featuresets", "Feature sets"), (f"/featuresets/{quote(name, safe='')}", name)],
        empty_text="No version of this set has been profiled yet.",
        history=history,
        version=wanted,
        profile=profile,
        drift=drift,
        reference=reference,
        notices=notices,
    )


def _page(
    request: Request,
    *,
    name: str,
    crumbs: list[tuple[str, str]],
    empty_text: str,
    history: list[dict[str, Any]],
    version: int | None,
    profile: dict[str, Any] | None,
    drift: dict[str, Any] | None,
    reference: dict[str, Any] | None,
    notices: list[str],
    metric_sets: list[dict[str, Any]] | None = None,
) -> HTMLResponse:
    if profile and profile.get("status") == "failed":
        notices = [
            *notices,
            f"Version {profile.get('version')} could not be profiled: {profile.get('error')}",
        ]
    done = [h for h in history if h.get("status") == "done"]
    chronological = list(reversed(done))
    rows_spark = spark([h.get("rows") for h in chronological])
    column_names = [c["name"] for c in (profile or {}).get("columns", [])]
    null_sparks = {
        c: spark([(h.get("null_rates") or {}).get(c) for h in chronological]) for c in column_names
    }
    drift_by_column = {c["name"]: c for c in (drift or {}).get("columns", [])}
    ref_by_column = {c["name"]: c for c in (reference or {}).get("columns", [])}
    columns = []
    for column in (profile or {}).get("columns", []):
        old = ref_by_column.get(column["name"])
        drawn = overlay(old and old.get("histogram"), column.get("histogram"))
        columns.append(
            {
                "profile": column,
                "reference": old,
                "drift": drift_by_column.get(column["name"]),
                "overlay": drawn,
                "axis": axis_labels(drawn, column.get("type", "")) if drawn else None,
                "nulls": null_sparks.get(column["name"]),
            }
        )
    return render(
        request,
        "featureset_metrics.html",
        name=name,
        crumbs=crumbs,
        empty_text=empty_text,
        version=version,
        history=history,
        profile=profile,
        drift=drift,
        columns=columns,
        # Columns of the reference version this one lacks: no card of their own.
        dropped=[
            c["name"] for c in (drift or {}).get("columns", []) if c.get("change") == "removed"
        ],
        rows_spark=rows_spark,
        checks=(profile or {}).get("checks") or [],
        notices=notices,
        metric_sets=metric_sets or [],
    )


def axis_labels(drawn: Overlay, type_text: str) -> tuple[str, str]:
    """The histogram axis's ends: dates for date and timestamp columns, else numbers; a
    single date is named once, under the middle of the axis."""
    unit = epoch_unit(str(type_text))
    if unit is None:
        return f"{drawn.low:.4g}", f"{drawn.high:.4g}"
    if drawn.single:  # the axis was widened by half a unit each side: name the value itself
        return "", epoch_text((drawn.low + drawn.high) / 2, unit)
    return epoch_text(drawn.low, unit), epoch_text(drawn.high, unit)


def metric_rows(doc: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(metric, entity, value) of a metric set: Deequ AnalysisResults or Cairn's own
    ``{name, column?, value}`` objects."""
    rows: list[tuple[str, str, Any]] = []
    for result in doc.get("metrics") or []:
        if not isinstance(result, dict):
            continue
        context = result.get("analyzerContext")
        entries = context.get("metricMap") if isinstance(context, dict) else None
        if isinstance(entries, list):
            for entry in entries:
                metric = entry.get("metric") if isinstance(entry, dict) else None
                if isinstance(metric, dict):
                    rows.append(
                        (
                            str(metric.get("name", "")),
                            str(metric.get("instance", metric.get("entity", ""))),
                            metric.get("value"),
                        )
                    )
        else:
            rows.append(
                (str(result.get("name", "")), str(result.get("column", "")), result.get("value"))
            )
    return rows[:500]


@router.get("/assets/{asset_id}/metrics", response_class=HTMLResponse)
async def asset_metrics_page(asset_id: str, request: Request, api: ReaderDep) -> HTMLResponse:
    notices: list[str] = []
    name = asset_id
    try:
        name = str((await api.asset(asset_id)).get("name") or asset_id)
    except ServiceDown as exc:
        note_down(request, exc)
    except ApiError as exc:
        return not_found(request, asset_id, exc)
    wanted = _version(request.query_params.get("v"))
    against = _version(request.query_params.get("against"))
    profile = drift = reference = None
    history: list[dict[str, Any]] = []
    sets: list[dict[str, Any]] = []
    try:
        history = (await api.asset_metrics(asset_id)).get("items") or []
        if history:
            profile = await api.asset_profile(asset_id, wanted)
            drift = (await api.asset_drift(asset_id, wanted, against)).get("drift")
            if drift and drift.get("against"):
                reference = await api.asset_profile(asset_id, int(drift["against"]))
        try:
            found = await api.metric_sets(name)
            sets = [
                {**m, "rows": metric_rows(m)}
                for m in found.get("data") or []
                if isinstance(m, dict)
            ]
        except ApiError:
            sets = []
    except ServiceDown as exc:
        return unavailable(request, exc)
    except ApiError as exc:
        notices.append(exc.detail)
    return _page(
        request,
        name=name,
        crumbs=[(f"/assets/{quote(asset_id, safe='')}", name)],
        # Markup: a constant with the command set as code, not Markdown backticks shown as is.
        empty_text=Markup(
            "No profile yet: <code>cairn crawl --profile</code> profiles Parquet and CSV data"
            " that is new or changed since the volume's last crawl."
        ),
        history=history,
        version=int(profile["version"]) if profile else None,
        profile=profile,
        drift=drift,
        reference=reference,
        notices=notices,
        metric_sets=sets,
    )

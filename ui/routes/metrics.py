"""The metrics page of a feature set: what people compare at a glance.

Per column, the chosen version's histogram over the one it is compared with, a drift badge
with the test and its p-value, null-rate sparklines across versions; the row-count sparkline;
check results with their failing samples. Everything comes from the feature store's metric
routes (``/featuresets/{name}/metrics``, ``.../versions/{v}/profile``, ``.../drift``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ui.backend import ApiError, ServiceDown
from ui.metric_charts import overlay, spark
from ui.render import render
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
            if profile is None:
                notices.append(f"Version {wanted} is still being profiled; reload in a moment.")
            if drift and drift.get("against"):
                reference = await api.featureset_profile(name, int(drift["against"]))
        except ServiceDown as exc:
            return unavailable(request, exc)
        except ApiError as exc:
            notices.append(exc.detail)
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
        columns.append(
            {
                "profile": column,
                "reference": old,
                "drift": drift_by_column.get(column["name"]),
                "overlay": overlay(old and old.get("histogram"), column.get("histogram")),
                "nulls": null_sparks.get(column["name"]),
            }
        )
    return render(
        request,
        "featureset_metrics.html",
        name=name,
        version=wanted,
        history=history,
        profile=profile,
        drift=drift,
        columns=columns,
        rows_spark=rows_spark,
        checks=(profile or {}).get("checks") or [],
        notices=notices,
    )

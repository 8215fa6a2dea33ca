"""OpenLineage's HTTP endpoint, and what the catalogue keeps of the events it receives."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from cairn.models import (
    DATE_TIME_PATTERN,
    MAX_LOCATION,
    MAX_SHORT,
    OL_MAX_DATASETS,
    OL_MAX_FACETS,
    RUN_ID_PATTERN,
    ColumnLineage,
    EdgeReceipt,
    EdgeReport,
    JobRun,
    LineageReceipt,
)
from cairn.openapi import problems
from cairn.web import CairnRoute
from catalogue_service.api.deps import CatalogueDep, ReadGuard, WriteGuard, json_body

router = APIRouter(prefix="/api/v1", tags=["lineage"], route_class=CairnRoute)

_FACETS = {"anyOf": [{"type": "object", "maxProperties": OL_MAX_FACETS}, {"type": "null"}]}
_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_SHORT}
_JOB = {
    "type": "object",
    "properties": {"namespace": _TEXT, "name": _TEXT, "facets": _FACETS},
    "required": ["namespace", "name"],
}
_DATASET = {
    "type": "object",
    "properties": {
        "namespace": _TEXT,
        "name": _TEXT,
        "facets": _FACETS,
        "inputFacets": _FACETS,
        "outputFacets": _FACETS,
    },
    "required": ["namespace", "name"],
}
_DATASETS = {
    "anyOf": [{"type": "array", "items": _DATASET, "maxItems": OL_MAX_DATASETS}, {"type": "null"}]
}
_BASE = {
    "eventTime": {"type": "string", "pattern": DATE_TIME_PATTERN},
    "producer": {"type": "string", "minLength": 1, "maxLength": MAX_LOCATION},
    "schemaURL": {"type": "string", "minLength": 1, "maxLength": MAX_LOCATION},
}
_REQUIRED = ["eventTime", "producer", "schemaURL"]
# OpenLineage 2-0-x's three events, as far as Cairn reads them; an event is a RunEvent when it
# has a run, else a JobEvent when it has a job, else a DatasetEvent. Other fields, and facets
# Cairn does not use, are accepted as sent.
EVENT_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "title": "RunEvent",
            "type": "object",
            "properties": {
                **_BASE,
                "eventType": {
                    "anyOf": [
                        {
                            "type": "string",
                            "enum": ["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"],
                        },
                        {"type": "null"},
                    ]
                },
                "run": {
                    "type": "object",
                    "properties": {
                        "runId": {"type": "string", "pattern": RUN_ID_PATTERN},
                        "facets": _FACETS,
                    },
                    "required": ["runId"],
                },
                "job": _JOB,
                "inputs": _DATASETS,
                "outputs": _DATASETS,
            },
            "required": [*_REQUIRED, "run", "job"],
        },
        {
            "title": "JobEvent",
            "type": "object",
            "properties": {**_BASE, "job": _JOB, "inputs": _DATASETS, "outputs": _DATASETS},
            "required": [*_REQUIRED, "job"],
            "not": {"required": ["run"]},
        },
        {
            "title": "DatasetEvent",
            "type": "object",
            "properties": {**_BASE, "dataset": _DATASET},
            "required": [*_REQUIRED, "dataset"],
            "not": {"anyOf": [{"required": ["run"]}, {"required": ["job"]}]},
        },
    ]
}
EVENT_EXAMPLE = {
    "eventType": "COMPLETE",
    "eventTime": "2026-01-01T03:00:00Z",
    "producer": "https://example.com/nightly",
    "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    "run": {"runId": "0190c4b2-5d7e-7cc3-9b4a-3f1d2c0e8a11"},
    "job": {"namespace": "nightly", "name": "sales_daily"},
    "inputs": [{"namespace": "s3://lake", "name": "raw/sales"}],
    "outputs": [{"namespace": "s3://lake", "name": "gold/sales_daily"}],
}


@router.post(
    "/lineage",
    dependencies=[WriteGuard],
    summary="Receive an OpenLineage event (RunEvent, JobEvent or DatasetEvent)",
    description="The path OpenLineage's HTTP transport posts to by default. Datasets and jobs "
    "become assets, a run's inputs -> job -> outputs become lineage edges (origin "
    "openlineage), schema and column-lineage facets are kept, and run state is kept per job. "
    "An event already recorded (same run id, event time and type) changes nothing.",
    status_code=201,
    responses={
        200: {"model": LineageReceipt, "description": "Recorded before; nothing changed"},
        **problems(409, 422),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EVENT_SCHEMA, "example": EVENT_EXAMPLE}},
        }
    },
)
async def post_lineage(
    request: Request, catalogue: CatalogueDep, response: Response
) -> LineageReceipt:
    receipt = await catalogue.ingest_openlineage(await json_body(request))
    if receipt.duplicate:
        response.status_code = 200
    return receipt


@router.post(
    "/lineage/edges",
    dependencies=[WriteGuard],
    summary="Replace a crawler's lineage edges into the assets it names",
    description="For crawlers of sources that know lineage themselves (origin `metastore`: a "
    "Hive Metastore's database -> table and location -> table links). Each named downstream "
    "asset's upstreams of that origin become exactly the ones listed; an empty list removes "
    "them. Either end is an asset id or a name, as in `depends_on`. Kept apart from the "
    "assets' `depends_on`, so a manifest crawl never erases them. "
    "Run events go to `POST /api/v1/lineage` instead.",
    responses=problems(400, 422),
)
async def post_edges(report: EdgeReport, catalogue: CatalogueDep) -> EdgeReceipt:
    return await catalogue.report_edges(report)


@router.get(
    "/assets/{asset_id}/runs",
    dependencies=[ReadGuard],
    summary="A job's runs, as its OpenLineage events report them (latest first)",
    responses=problems(404),
)
async def runs(
    asset_id: str,
    catalogue: CatalogueDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[JobRun]:
    return await catalogue.runs(asset_id, limit)


@router.get(
    "/assets/{asset_id}/columns",
    dependencies=[ReadGuard],
    summary="An asset's schema (reported by OpenLineage, else its own) and the column "
    "lineage OpenLineage reported",
    responses=problems(404),
)
async def columns(asset_id: str, catalogue: CatalogueDep) -> ColumnLineage:
    return await catalogue.columns(asset_id)

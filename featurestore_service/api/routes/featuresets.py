"""Cairn's own feature-set routes (DESIGN section 4)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.datastructures import QueryParams
from starlette.routing import Match, Route
from starlette.types import Scope

from cairn.errors import UnsupportedMediaType
from cairn.models import (
    MAX_VERSION,
    FeatureSet,
    FeatureSetDiff,
    FeatureSetMeta,
    FeatureSetPage,
    FeatureSetVersions,
    FeatureSetWrite,
)
from cairn.openapi import hand_parsed, problems
from cairn.paging import decode_cursor
from cairn.web import LABEL_PARAMETER, CairnRoute, parse_labels, validated
from featurestore_service.api.deps import (
    FeatureStoreDep,
    ReadGuard,
    WriteGuard,
    bad_param,
    check_read_key,
    int_param,
    list_param,
    only_params,
    time_param,
)
from featurestore_service.api.representations import (
    ARROW,
    JSON,
    PARQUET,
    send_json,
    send_version,
)
from featurestore_service.backends.base import FeatureSetQuery, StoredVersion

router = APIRouter(prefix="/api/v1", tags=["featuresets"], route_class=CairnRoute)

UPLOAD_TYPES = frozenset({PARQUET, "application/x-parquet", "application/octet-stream"})

WRITE_EXAMPLE = {
    "name": "churn_model_serving",
    "description": "Serving parameters of the churn model.",
    "labels": {"team": "ml", "stage": "prod"},
    "depends_on": ["churn_model", "customer_features"],
    "features": [
        {"name": "threshold", "dtype": "float", "value": 0.42},
        {"name": "inputs", "dtype": "list<string>", "value": ["recency_days", "frequency_14d"]},
        {"name": "trained_at", "dtype": "timestamp", "value": "2025-06-16T05:45:00Z"},
    ],
    "checks": [
        {"type": "range", "column": "threshold", "min": 0, "max": 1, "on_fail": "reject"},
        {"type": "freshness", "column": "trained_at", "max_age": 2592000},
    ],
}

FEATURE_TABLE_PARAMETERS = [
    {
        "name": "entities",
        "in": "query",
        "schema": {"type": "array", "items": {"type": "string"}},
        "description": "Feature table: join-key columns (repeat or comma-separate); "
        "inherited from the previous version when left out",
    },
    {
        "name": "timestamp",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Feature table: the event-time column (a naive timestamp is UTC)",
    },
    {
        "name": "created_timestamp",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Feature table: tie-break column for rows of equal event time",
    },
    {
        "name": "ttl",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Feature table: how old a row may be and still be served "
        "(seconds, 7d, 12h, P7D); unlimited when left out",
    },
]

CHECKS_PARAMETER = {
    "name": "checks",
    "in": "query",
    "schema": {"type": "string"},
    "description": "The checks this and later versions are held to, as a JSON list (the "
    "checks field of POST /api/v1/featuresets), e.g. "
    '[{"type":"not_null","column":"customer_id","on_fail":"reject"}]; '
    "replaces the set's checks; left out, they stay",
}


# Version numbers fit the stores' 64-bit integers; a larger one is a 422 naming the bounds.
VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION, description="The version number")]
NAME_PARAM = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
VERSION_CONTENT = {
    JSON: {"schema": {"$ref": "#/components/schemas/FeatureSet"}},
    ARROW: {"schema": {"type": "string", "format": "binary"}},
    PARQUET: {"schema": {"type": "string", "format": "binary"}},
}
MAX_ROW_PARAM = 2**63 - 1


def check_row_params(request: Request) -> None:
    """``limit`` and ``offset`` within their documented bounds, whatever the set's kind: a
    values set has no rows, yet a value the document forbids is refused there too."""
    int_param(request.query_params, "limit", None, 1, MAX_ROW_PARAM)
    int_param(request.query_params, "offset", None, 0, MAX_ROW_PARAM)


VERSION_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": VERSION_CONTENT},
    304: {"description": "ETag matched"},
    # 400: a column (or feature) the set lacks; 406: no format matches Accept.
    **problems(400, 404, 406, 422),
}
TABLE_PARAMETERS = [
    {
        "name": "format",
        "in": "query",
        "schema": {"type": "string", "enum": ["json", "arrow", "parquet"]},
        "description": "Overrides the Accept header (tabular sets)",
    },
    {
        "name": "columns",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Comma-separated columns (tabular sets) or features (sets of named "
        "values) to keep",
    },
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ROW_PARAM},
        "description": "Rows to send: JSON pages default to 100 (at most 10,000); "
        "Arrow and Parquet send every row unless limited",
    },
    {
        "name": "offset",
        "in": "query",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ROW_PARAM},
        "description": "First row of a JSON page",
    },
]


def _created(request: Request, stored: StoredVersion) -> Response:
    response = send_json(request, stored.doc, stored.etag, status=201)
    response.headers["location"] = f"/api/v1/featuresets/{stored.name}/versions/{stored.version}"
    return response


@router.post(
    "/featuresets",
    dependencies=[WriteGuard],
    status_code=201,
    response_model=FeatureSet,
    responses=problems(409),
    summary="Create the next version of a set of named values",
    openapi_extra={
        "requestBody": {"content": {JSON: {"example": WRITE_EXAMPLE}}, "required": True}
    },
)
async def create(item: FeatureSetWrite, request: Request, service: FeatureStoreDep) -> Response:
    return _created(request, await service.create(item))


@router.post(
    "/featuresets/{name}/versions",
    dependencies=[WriteGuard],
    status_code=201,
    response_model=FeatureSet,
    summary="Create the next version of a tabular set from a Parquet body",
    responses=problems(400, 409, 415, 422),
    description="Send the Parquet file as the body (up to CAIRN_MAX_UPLOAD_BYTES, streamed); "
    "the metadata goes in the query string. Repeat depends_on and label=key:value as needed.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in sorted(UPLOAD_TYPES)
            },
        },
        "parameters": hand_parsed(
            [
                {
                    "name": "depends_on",
                    "in": "query",
                    "schema": {"type": "array", "items": {"type": "string"}},
                },
                LABEL_PARAMETER,
                {"name": "description", "in": "query", "schema": {"type": "string"}},
                {"name": "version_label", "in": "query", "schema": {"type": "string"}},
                {"name": "created_by", "in": "query", "schema": {"type": "string"}},
                CHECKS_PARAMETER,
                {
                    "name": "version",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
                },
                *FEATURE_TABLE_PARAMETERS,
            ]
        ),
    },
)
async def upload_table(name: str, request: Request, service: FeatureStoreDep) -> Response:
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type not in UPLOAD_TYPES:
        hint = (
            "send JSON values to POST /api/v1/featuresets"
            if content_type == JSON
            else f"send the Parquet file with content-type {PARQUET}"
        )
        raise UnsupportedMediaType(
            f"This route takes a Parquet body, not {content_type!r}; {hint}."
        )
    params = request.query_params
    meta = validated(
        FeatureSetMeta,
        {
            "name": name,
            "version": params.get("version") or None,
            "version_label": params.get("version_label"),
            "description": params.get("description") or "",
            "labels": dict(parse_labels(params.getlist("label"))),
            "depends_on": [d for raw in params.getlist("depends_on") for d in raw.split(",") if d],
            "created_by": params.get("created_by"),
            **checks_param(params),
        },
    )
    return _created(
        request,
        await service.create_table(meta, request.stream(), feature_table_params(params)),
    )


def checks_param(params: QueryParams) -> dict[str, Any]:
    """``checks`` from the query string, as FeatureSetMeta's field (validated there)."""
    raw = params.get("checks")
    if raw is None:
        return {}
    try:
        return {"checks": orjson.loads(raw)}
    except orjson.JSONDecodeError as exc:
        raise bad_param(
            "checks", f"is not JSON ({exc}); send a JSON list of checks, URL-encoded"
        ) from None


def feature_table_params(params: QueryParams) -> dict[str, Any]:
    """The feature-table fields given in the query string (the rest are inherited)."""
    declared: dict[str, Any] = {}
    entities = list_param(params, "entities")
    if entities:
        declared["entities"] = entities
    for key in ("timestamp", "created_timestamp", "ttl"):
        value = params.get(key)
        if value:
            declared[key] = value
    return declared


SEARCH_PARAMETERS: list[dict[str, Any]] = [
    {"name": "name", "in": "query", "schema": {"type": "string"}, "description": "Name prefix"},
    LABEL_PARAMETER,
    {"name": "q", "in": "query", "schema": {"type": "string"}, "description": "Free text"},
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "default": 20, "minimum": 1, "maximum": 1000},
    },
    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
]
SEARCH_KEYS = tuple(p["name"] for p in SEARCH_PARAMETERS)


@router.get(
    "/featuresets",
    dependencies=[ReadGuard],
    response_model=FeatureSetPage,
    summary="Search the latest live version of every set by name prefix, labels and text",
    responses=problems(400, 422),
    openapi_extra={"parameters": hand_parsed(SEARCH_PARAMETERS)},
)
async def search(request: Request, service: FeatureStoreDep) -> Response:
    params = request.query_params
    only_params(params, SEARCH_KEYS)
    for key in ("name", "q"):
        if len(params.get(key) or "") > 1024:
            raise bad_param(key, "is longer than 1024 characters")
    cursor = params.get("cursor")
    query = FeatureSetQuery(
        name=params.get("name") or None,
        labels=parse_labels(params.getlist("label")),
        q=params.get("q") or None,
        limit=int_param(params, "limit", 20, 1, 1000) or 20,
        cursor=decode_cursor(cursor) if cursor else None,
    )
    hits = await service.search(query)
    head = orjson.dumps({"total": hits.total, "next_cursor": hits.next_cursor})
    return Response(b'{"items":[' + b",".join(hits.docs) + b"]," + head[1:], media_type=JSON)


@router.get(
    "/featuresets/{name}",
    summary="The latest live version, or the one current at as_of",
    # Served by FAST_ROUTES, which check the key inline; the guard here documents it.
    dependencies=[ReadGuard],
    responses=VERSION_RESPONSES,
    openapi_extra={
        "parameters": hand_parsed(
            [
                NAME_PARAM,
                {
                    "name": "as_of",
                    "in": "query",
                    "schema": {"type": "string", "format": "date-time"},
                    "description": "RFC 3339 time: the version that was current then",
                },
                *TABLE_PARAMETERS,
            ]
        )
    },
)
async def get_latest(request: Request) -> Response:
    # The feature store's hottest route (benchmarked against a bare endpoint): parameters are
    # read by hand, a values set's latest version comes from the cache as stored bytes, and
    # the app serves it through FAST_ROUTES, ahead of FastAPI's routing (this route stays in
    # the router for the OpenAPI document).
    check_read_key(request)
    service = request.app.state.featurestore
    name = request.path_params["name"]
    stored = None if request.query_params else service.cached_latest(name)
    if stored is None:
        check_row_params(request)
        as_of = time_param(request.query_params, "as_of")
        stored = await (service.as_of(name, as_of) if as_of else service.latest(name))
    return await send_version(request, service, stored)


@router.get(
    "/featuresets/{name}/versions",
    dependencies=[ReadGuard],
    response_model=FeatureSetVersions,
    summary="Every version, newest first, with created_at, created_by and deleted",
    responses=problems(400, 404),
)
async def versions(
    name: str,
    service: FeatureStoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    before = None
    if cursor:
        key = decode_cursor(cursor)
        if not isinstance(key[0], int):
            raise bad_param("cursor", "is not a cursor of this listing")
        before = key[0]
    return Response(await service.versions(name, limit, before), media_type=JSON)


@router.get(
    "/featuresets/{name}/versions/{version}",
    dependencies=[ReadGuard],
    summary="One version by number (a deleted one too, marked deleted)",
    responses=VERSION_RESPONSES,
    openapi_extra={"parameters": hand_parsed(TABLE_PARAMETERS)},
)
async def get_version(
    name: str, version: VersionPath, request: Request, service: FeatureStoreDep
) -> Response:
    check_row_params(request)
    return await send_version(request, service, await service.get(name, version))


@router.put(
    "/featuresets/{name}/versions/{version}",
    dependencies=[WriteGuard],
    status_code=409,
    # The 409 is a problem+json raised by the service, never a JSON success body.
    response_class=Response,
    summary="Always 409: versions are immutable",
    responses=problems(404, 409),
)
@router.patch(
    "/featuresets/{name}/versions/{version}",
    dependencies=[WriteGuard],
    status_code=409,
    # The 409 is a problem+json raised by the service, never a JSON success body.
    response_class=Response,
    summary="Always 409: versions are immutable",
    operation_id="patch_version",
    responses=problems(404, 409),
)
async def overwrite_version(name: str, version: VersionPath, service: FeatureStoreDep) -> None:
    await service.refuse_overwrite(name, version)


@router.delete(
    "/featuresets/{name}/versions/{version}",
    dependencies=[WriteGuard],
    response_model=FeatureSet,
    summary="Soft-delete a version: it is never returned as latest again",
    responses=problems(404),
)
async def delete_version(
    name: str, version: VersionPath, request: Request, service: FeatureStoreDep
) -> Response:
    stored = await service.delete(name, version)
    return send_json(request, stored.doc, stored.etag)


@router.get(
    "/featuresets/{name}/diff",
    dependencies=[ReadGuard],
    summary="What changed between two versions",
    responses=problems(404),
)
async def diff(
    name: str,
    service: FeatureStoreDep,
    old: Annotated[int, Query(alias="from", ge=1, le=MAX_VERSION, description="The older version")],
    new: Annotated[int, Query(alias="to", ge=1, le=MAX_VERSION, description="The newer version")],
) -> FeatureSetDiff:
    return await service.diff(name, old, new)


class FastRoute(Route):
    """A plain Starlette route that still names itself in the scope (for the metrics)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


# Routes the app puts before all others: FastAPI's route matching and dependency solving
# cost more than the rest of a cached GET together.
FAST_ROUTES = [FastRoute("/api/v1/featuresets/{name}", get_latest, methods=["GET"])]

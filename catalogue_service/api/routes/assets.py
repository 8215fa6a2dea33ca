"""Cairn's own asset routes (DESIGN section 4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from cairn.collector import collector_paused
from cairn.errors import BadRequest, InvalidRequest
from cairn.models import (
    ASSET_ID_PATTERN,
    DOT_ID_MESSAGE,
    DOT_SEGMENTS,
    MAX_LOCATION,
    MAX_NAME,
    Asset,
    AssetsByLocation,
    AssetWrite,
    BulkResponse,
    DriftFlag,
    Lineage,
    SearchPage,
    TagCount,
)
from cairn.openapi import hand_parsed, problems
from cairn.web import LABEL_PARAMETER, CairnRoute, body_not_shaped, parse_json
from catalogue_service.api.deps import CatalogueDep, ReadGuard, WriteGuard
from catalogue_service.api.search_params import parse_search
from catalogue_service.replays import HEADER, RecentAnswers
from catalogue_service.service import Catalogue, splice_page

router = APIRouter(prefix="/api/v1", tags=["assets"], route_class=CairnRoute)

MAX_LOCATION_LOOKUPS = 500

BULK_EXAMPLE = [
    {"name": "sales_daily", "type": "dataset", "tags": ["sales"], "depends_on": ["sales_raw"]},
    {"id": "stores-v1", "name": "stores", "type": "table"},
]
# Each item gets its own result: a bad item gets an error in it, the others land.
BULK_ITEM = {
    "description": "An asset (AssetWrite); one that is not valid gets an error in its result "
    "and the others are stored.",
    "anyOf": [{"$ref": "#/components/schemas/AssetWrite"}, {}],
}


@router.put(
    "/assets/{asset_id}",
    dependencies=[WriteGuard],
    responses={201: {"model": Asset, "description": "Created"}, **problems(409)},
    summary="Create or replace one asset",
)
async def put_asset(
    asset_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=MAX_NAME,
            pattern=ASSET_ID_PATTERN,
            description="Letters, digits and . _ : @ - (as a bulk item's id)",
        ),
    ],
    item: AssetWrite,
    catalogue: CatalogueDep,
    response: Response,
) -> Asset:
    if asset_id in DOT_SEGMENTS:  # only %2E%2E reaches here: the pattern lets dots through
        raise InvalidRequest(
            f"Fix the URL's asset_id: {DOT_ID_MESSAGE}.",
            errors=[{"field": "asset_id", "message": DOT_ID_MESSAGE}],
        )
    asset, status = await catalogue.put(asset_id, item)
    response.status_code = 201 if status == "created" else 200
    return asset


@router.post(
    "/assets/bulk",
    dependencies=[WriteGuard],
    response_model=BulkResponse,
    summary="Upsert many assets, with a result per item",
    responses=problems(400, 422),
    openapi_extra={
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
                "description": "A new value (a UUID) per request body: the same request sent "
                "again within 10 minutes with this key (a retry after a timeout) gets the "
                "first answer, marked `Idempotent-Replayed: true`, and is not run twice. "
                "The same key with another body is a 422.",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"type": "array", "items": BULK_ITEM},
                            {
                                "type": "object",
                                "properties": {"items": {"type": "array", "items": BULK_ITEM}},
                                "required": ["items"],
                            },
                        ]
                    },
                    "example": BULK_EXAMPLE,
                }
            },
        },
    },
)
async def bulk_upsert(request: Request, catalogue: CatalogueDep) -> Response:
    raw = await request.body()
    key = request.headers.get(HEADER)
    if key is None:
        return Response(await _bulk(raw, catalogue), media_type="application/json")
    replays: RecentAnswers = request.app.state.replays
    answer, replayed = await replays.answer(
        replays.checked(key), raw, lambda: _bulk(raw, catalogue)
    )
    headers = {"idempotent-replayed": "true"} if replayed else None
    return Response(answer, media_type="application/json", headers=headers)


async def _bulk(raw: bytes, catalogue: Catalogue) -> str:
    # The parsed body is thousands of containers too: the collector waits until it is freed
    # (cairn.collector), and Catalogue.bulk keeps it paused over validation and the store.
    with collector_paused():
        body = parse_json(raw)
        if isinstance(body, dict) and "items" in body:
            body = body["items"]
            if not isinstance(body, list):
                raise body_not_shaped("a JSON array of assets", field="items")
        if not isinstance(body, list):
            raise body_not_shaped('a JSON array of assets, or an object {"items": [...]}')
        answer = await catalogue.bulk(body)
        # Encoded by pydantic in one call: a result per item, thousands of them, need no
        # re-validation against the response model nor the standard library's encoder.
        encoded = answer.model_dump_json()
        del body, answer
    return encoded


SEARCH_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "q",
        "in": "query",
        "schema": {"type": "string", "maxLength": 1024},
        "description": "Free text over name, tags, description and column names",
    },
    {
        "name": "name",
        "in": "query",
        "schema": {"type": "string", "maxLength": 256},
        "description": "Exact name or prefix (case-insensitive)",
    },
    {
        "name": "tag",
        "in": "query",
        "schema": {"type": "array", "items": {"type": "string"}},
        "description": "Repeat for AND",
        "style": "form",
        "explode": True,
    },
    {"name": "type", "in": "query", "schema": {"type": "string"}},
    LABEL_PARAMETER,
    {"name": "owner", "in": "query", "schema": {"type": "string"}},
    {"name": "include_deleted", "in": "query", "schema": {"type": "boolean", "default": False}},
    {
        "name": "limit",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 20},
    },
    {
        "name": "cursor",
        "in": "query",
        "schema": {"type": "string"},
        "description": "next_cursor of the previous page",
    },
    {"name": "facets", "in": "query", "schema": {"type": "boolean", "default": True}},
    {
        "name": "drifted",
        "in": "query",
        "schema": {"type": "boolean"},
        "description": "true: crawled datasets whose newest profile drifted; false: profiled "
        "ones that did not (facets.drift counts both)",
    },
]


@router.get(
    "/assets",
    dependencies=[ReadGuard],
    summary="Search assets by text, name, tags, type, labels and owner",
    response_model=SearchPage,
    responses=problems(400, 422),
    openapi_extra={"parameters": hand_parsed(SEARCH_PARAMETERS)},
)
async def search_assets(request: Request) -> Response:
    # Parameters are parsed by hand: this is the hottest route, and FastAPI's generic
    # parameter machinery cost a third of its time. SEARCH_PARAMETERS documents them.
    # GET requests are mostly answered before they reach here (api/fast_search.py), with
    # the same bytes.
    query = parse_search(request.query_params)
    hits = await request.app.state.catalogue.search(query, typos=True)
    return Response(splice_page(hits), media_type="application/json")


@router.get(
    "/assets/by-name/{name:path}",
    dependencies=[ReadGuard],
    summary="Get by name",
    responses=problems(404),
)
async def get_by_name(name: str, catalogue: CatalogueDep) -> Asset:
    return await catalogue.get_by_name(name)


@router.get(
    "/assets/by-location",
    dependencies=[ReadGuard],
    summary="The live asset at each storage URL",
    description="Matches an asset's `location` exactly; a crawled asset (one with a volume) "
    "is preferred to an API writer's. URLs no live asset is at are left out of the answer. "
    f"At most {MAX_LOCATION_LOOKUPS} `url` parameters.",
    responses=problems(400, 422),
)
async def by_location(
    catalogue: CatalogueDep,
    url: Annotated[list[str], Query(description="A location URL; repeat for more")],
) -> AssetsByLocation:
    if len(url) > MAX_LOCATION_LOOKUPS:
        raise BadRequest(
            f"{len(url)} url parameters; ask for at most {MAX_LOCATION_LOOKUPS} at a time."
        )
    for one in url:
        if not one or len(one) > MAX_LOCATION:
            raise BadRequest(f"each url must be 1 to {MAX_LOCATION} characters long.")
    return AssetsByLocation(assets=await catalogue.by_location(url))


@router.get(
    "/assets/{asset_id}", dependencies=[ReadGuard], summary="Get by id", responses=problems(404)
)
async def get_asset(asset_id: str, catalogue: CatalogueDep) -> Asset:
    return await catalogue.get(asset_id)


@router.delete(
    "/assets/{asset_id}", dependencies=[WriteGuard], summary="Soft-delete", responses=problems(404)
)
async def delete_asset(asset_id: str, catalogue: CatalogueDep) -> Asset:
    return await catalogue.delete(asset_id)


@router.put(
    "/assets/{asset_id}/drift",
    dependencies=[WriteGuard],
    summary="Set a crawled dataset's drift verdict (sent by the crawl's profile step)",
    description="Kept beside the asset without a new revision, and kept when the asset is "
    "written again; searchable with drifted=true|false and counted in facets.drift.",
    responses=problems(404, 422),
)
async def put_drift(asset_id: str, flag: DriftFlag, catalogue: CatalogueDep) -> Asset:
    return await catalogue.set_drift(asset_id, flag)


@router.get(
    "/assets/{asset_id}/lineage",
    dependencies=[ReadGuard],
    summary="Upstream and downstream assets, to a depth",
    responses=problems(404),
)
async def lineage(
    asset_id: str,
    catalogue: CatalogueDep,
    direction: Literal["up", "down", "both"] = "both",
    depth: Annotated[int, Query(ge=0, le=10)] = 3,
) -> Lineage:
    return await catalogue.lineage(asset_id, direction, depth)


@router.get("/tags", dependencies=[ReadGuard], summary="Tags with their asset counts")
async def tags(
    catalogue: CatalogueDep, limit: Annotated[int, Query(ge=1, le=10000)] = 1000
) -> list[TagCount]:
    counts = await catalogue.tags(limit)
    return [TagCount(tag=t, count=n) for t, n in counts.items()]


@router.get("/types", dependencies=[ReadGuard], summary="Asset types with their counts")
async def types(catalogue: CatalogueDep) -> dict[str, int]:
    return await catalogue.types()

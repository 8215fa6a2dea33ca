"""Cairn's own asset routes (DESIGN section 4)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from cairn.errors import BadRequest
from cairn.models import Asset, AssetWrite, BulkResponse, Lineage, SearchPage, TagCount
from catalogue_service.api.deps import (
    CatalogueDep,
    ReadGuard,
    WriteGuard,
    json_body,
    parse_labels,
)
from catalogue_service.backends.base import SearchQuery, decode_cursor
from catalogue_service.service import splice_page

router = APIRouter(prefix="/api/v1", tags=["assets"])

BULK_EXAMPLE = [
    {"name": "sales_daily", "type": "dataset", "tags": ["sales"], "depends_on": ["sales_raw"]},
    {"id": "stores-v1", "name": "stores", "type": "table"},
]


@router.put(
    "/assets/{asset_id}",
    dependencies=[WriteGuard],
    responses={201: {"model": Asset, "description": "Created"}, 409: {"description": "Name taken"}},
    summary="Create or replace one asset",
)
async def put_asset(
    asset_id: str, item: AssetWrite, catalogue: CatalogueDep, response: Response
) -> Asset:
    asset, status = await catalogue.put(asset_id, item)
    response.status_code = 201 if status == "created" else 200
    return asset


@router.post(
    "/assets/bulk",
    dependencies=[WriteGuard],
    summary="Upsert many assets, with a result per item",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"type": "array", "items": {"$ref": "#/components/schemas/AssetWrite"}},
                            {
                                "type": "object",
                                "properties": {
                                    "items": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/AssetWrite"},
                                    }
                                },
                            },
                        ]
                    },
                    "example": BULK_EXAMPLE,
                }
            },
        }
    },
)
async def bulk_upsert(request: Request, catalogue: CatalogueDep) -> BulkResponse:
    body = await json_body(request)
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        body = body["items"]
    if not isinstance(body, list):
        raise BadRequest(
            'Send a JSON array of assets, or {"items": [...]}, to /api/v1/assets/bulk.'
        )
    return await catalogue.bulk(body)


@router.get(
    "/assets",
    dependencies=[ReadGuard],
    response_model=SearchPage,
    summary="Search assets by text, name, tags, type, labels and owner",
)
async def search_assets(
    catalogue: CatalogueDep,
    q: Annotated[str | None, Query(max_length=1024, description="Free text")] = None,
    name: Annotated[str | None, Query(max_length=256, description="Name or prefix")] = None,
    tag: Annotated[list[str], Query(description="Repeat for AND")] = [],  # noqa: B006
    type: Annotated[str | None, Query(max_length=64)] = None,
    label: Annotated[list[str], Query(description="key:value, repeat for AND")] = [],  # noqa: B006
    owner: Annotated[str | None, Query(max_length=1024)] = None,
    include_deleted: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    cursor: Annotated[str | None, Query(max_length=4096)] = None,
    facets: bool = True,
) -> Response:
    query = SearchQuery(
        q=q or None,
        name=name or None,
        tags=tag,
        type=type or None,
        labels=parse_labels(label),
        owner=owner or None,
        include_deleted=include_deleted,
        limit=limit,
        cursor=decode_cursor(cursor) if cursor else None,
        facets=facets,
    )
    hits = await catalogue.search(query)
    return Response(splice_page(hits), media_type="application/json")


@router.get("/assets/by-name/{name:path}", dependencies=[ReadGuard], summary="Get by name")
async def get_by_name(name: str, catalogue: CatalogueDep) -> Asset:
    return await catalogue.get_by_name(name)


@router.get("/assets/{asset_id}", dependencies=[ReadGuard], summary="Get by id")
async def get_asset(asset_id: str, catalogue: CatalogueDep) -> Asset:
    return await catalogue.get(asset_id)


@router.delete("/assets/{asset_id}", dependencies=[WriteGuard], summary="Soft-delete")
async def delete_asset(asset_id: str, catalogue: CatalogueDep) -> Asset:
    return await catalogue.delete(asset_id)


@router.get(
    "/assets/{asset_id}/lineage",
    dependencies=[ReadGuard],
    summary="Upstream and downstream assets, to a depth",
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

"""Mastro-compatible routes, so clients written for Mastro's catalogue keep working.

Only these routes answer in Mastro's ``{data, pagination}`` shape with page numbers.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from cairn.errors import BadRequest, Conflict
from cairn.models import AssetWrite, MastroTextQuery
from cairn.openapi import problems
from cairn.paging import MAX_PAGE
from cairn.web import CairnRoute
from catalogue_service.api.deps import CatalogueDep, ReadGuard, WriteGuard, json_body
from catalogue_service.api.routes.assets import BULK_ITEM
from catalogue_service.backends.base import SearchQuery
from catalogue_service.service import Catalogue, mastro_asset, mastro_page

router = APIRouter(prefix="/api/v1", tags=["mastro-compatible"], route_class=CairnRoute)

MAX_PER_PAGE = 1000


class TagsQuery(BaseModel):
    tags: list[str] = Field(min_length=1, max_length=100)
    limit: int = Field(10, ge=1, le=MAX_PER_PAGE)
    page: int = Field(1, ge=1, le=MAX_PAGE)


TextQuery = MastroTextQuery  # shared with the feature store's Mastro routes


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def _paged(catalogue: Catalogue, query: SearchQuery, page: int, per_page: int) -> Response:
    query.limit = per_page
    query.offset = (page - 1) * per_page
    hits = await catalogue.search(query)
    return _json(mastro_page(hits.docs, hits.total, page, per_page))


@router.put(
    "/asset/",
    dependencies=[WriteGuard],
    summary="Mastro: upsert one asset",
    responses=problems(409),
)
async def put_one(item: AssetWrite, catalogue: CatalogueDep) -> Response:
    asset, _ = await catalogue.put(None, item)
    return _json(mastro_asset(asset.model_dump(mode="json", by_alias=True)), 200)


@router.put(
    "/assets/",
    dependencies=[WriteGuard],
    summary="Mastro: upsert a JSON array",
    responses=problems(400, 409, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "array", "items": BULK_ITEM}}},
        }
    },
)
async def put_many(request: Request, catalogue: CatalogueDep) -> Response:
    body = await json_body(request)
    if not isinstance(body, list):
        raise BadRequest("PUT /api/v1/assets/ takes a JSON array of assets.")
    result = await catalogue.bulk(body)
    errors = [r for r in result.results if r.status == "error"]
    if errors:
        # Mastro answered the whole array with one status; keep per-item detail in the body.
        raise Conflict(
            f"{len(errors)} of {len(body)} assets were not stored: "
            + "; ".join(f"item {r.index}: {r.error}" for r in errors[:5])
        )
    return _json(result.model_dump())


@router.get(
    "/asset/name/{name:path}",
    dependencies=[ReadGuard],
    summary="Mastro: by name",
    responses=problems(404),
)
async def by_name(name: str, catalogue: CatalogueDep) -> Response:
    asset = await catalogue.get_by_name(name)
    return _json(mastro_asset(asset.model_dump(mode="json", by_alias=True)))


@router.get(
    "/asset/id/{asset_id}",
    dependencies=[ReadGuard],
    summary="Mastro: by id",
    responses=problems(404),
)
async def by_id(asset_id: str, catalogue: CatalogueDep) -> Response:
    asset = await catalogue.get(asset_id)
    return _json(mastro_asset(asset.model_dump(mode="json", by_alias=True)))


@router.post("/assets/tags", dependencies=[ReadGuard], summary="Mastro: all tags must match")
async def by_tags(body: TagsQuery, catalogue: CatalogueDep) -> Response:
    return await _paged(catalogue, SearchQuery(tags=body.tags, facets=False), body.page, body.limit)


@router.post("/assets/search", dependencies=[ReadGuard], summary="Mastro: full-text search")
async def by_text(body: TextQuery, catalogue: CatalogueDep) -> Response:
    return await _paged(catalogue, SearchQuery(q=body.query, facets=False), body.page, body.limit)


@router.get("/assets/", dependencies=[ReadGuard], summary="Mastro: list with page numbers")
async def list_all(
    catalogue: CatalogueDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PER_PAGE)] = 10,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    return await _paged(catalogue, SearchQuery(facets=False), page, limit)

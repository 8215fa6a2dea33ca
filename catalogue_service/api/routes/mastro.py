"""Mastro-compatible routes, so Mastro's UI, crawler and clients keep working unchanged.

Served under ``/api/v1`` and at the root (``cairn.mastro.include_mastro``). Only these routes
answer in Mastro's shapes: its asset fields and names, ``{data, pagination}`` pages numbered
from 1 (page 0 is read as 1), ``{message, status, error}`` errors, 404 on an empty page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from cairn.errors import BadRequest, NotFound
from cairn.mastro import MastroRoute, first_page, mastro_json
from cairn.models import MASTRO_MAX_PER_PAGE, AssetWrite, MastroLimit, MastroPage, MastroTextQuery
from cairn.openapi import problems
from cairn.paging import MAX_PAGE
from cairn.web import json_body, validated
from catalogue_service.api.deps import CatalogueDep, ReadGuard, WriteGuard
from catalogue_service.api.routes.assets import BULK_ITEM
from catalogue_service.backends.base import SearchQuery
from catalogue_service.service import Catalogue, mastro_asset, mastro_page

router = APIRouter(tags=["mastro-compatible"], route_class=MastroRoute)

EMPTY = "No assets in given collection"


class TagsQuery(BaseModel):
    tags: list[str] = Field(min_length=1, max_length=100)
    limit: MastroLimit
    page: MastroPage


def _discovered_now(item: Any, now: datetime) -> Any:
    """Mastro stamps every upserted asset as discovered now, whatever the body says (its
    crawler sends Go's zero time)."""
    if not isinstance(item, dict):
        return item  # validation names the problem
    out = {k: v for k, v in item.items() if k not in ("last-discovered-at", "crawled_at")}
    out["crawled_at"] = now.isoformat()
    return out


async def _paged(catalogue: Catalogue, query: SearchQuery, page: int, per_page: int) -> Response:
    page = first_page(page)
    query.limit = per_page
    query.offset = (page - 1) * per_page
    hits = await catalogue.search(query)
    if not hits.docs:
        raise NotFound(EMPTY)
    return mastro_json(mastro_page(hits.docs, hits.total, page, per_page))


@router.put(
    "/asset/",
    dependencies=[WriteGuard],
    status_code=201,
    summary="Mastro: upsert one asset; answers [asset]",
    responses=problems(400, 409),
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": BULK_ITEM}}}
    },
)
async def put_one(request: Request, catalogue: CatalogueDep) -> Response:
    item = validated(AssetWrite, _discovered_now(await json_body(request), datetime.now(UTC)))
    asset, _ = await catalogue.put(None, item)
    return mastro_json([mastro_asset(asset.model_dump(mode="json", by_alias=True))], 201)


@router.put(
    "/assets/",
    dependencies=[WriteGuard],
    status_code=201,
    summary="Mastro: upsert a JSON array; answers the array",
    responses=problems(400),
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
        raise BadRequest("Invalid JSON Body: PUT /assets/ takes a JSON array of assets.")
    now = datetime.now(UTC)
    result = await catalogue.bulk([_discovered_now(item, now) for item in body])
    errors = [r for r in result.results if r.status == "error"]
    if errors:
        # Mastro answers the whole array with one status; the valid items are stored.
        raise BadRequest(
            f"{len(errors)} of {len(body)} assets were not stored (the others were): "
            + "; ".join(f"item {r.index}: {r.error}" for r in errors[:5])
        )
    return mastro_json(body, 201)


@router.get(
    "/asset/name/{name:path}",
    dependencies=[ReadGuard],
    summary="Mastro: by name",
    responses=problems(404),
)
async def by_name(name: str, catalogue: CatalogueDep) -> Response:
    asset = await catalogue.get_by_name(name)
    return mastro_json(mastro_asset(asset.model_dump(mode="json", by_alias=True)))


@router.get(
    "/asset/id/{asset_id}",
    dependencies=[ReadGuard],
    summary="Mastro: by id, or by name (Mastro's ids are names)",
    responses=problems(404),
)
async def by_id(asset_id: str, catalogue: CatalogueDep) -> Response:
    try:
        asset = await catalogue.get(asset_id)
    except NotFound:
        asset = await catalogue.get_by_name(asset_id)
    return mastro_json(mastro_asset(asset.model_dump(mode="json", by_alias=True)))


@router.post(
    "/assets/tags",
    dependencies=[ReadGuard],
    summary="Mastro: all tags must match",
    responses=problems(404),
)
async def by_tags(body: TagsQuery, catalogue: CatalogueDep) -> Response:
    return await _paged(catalogue, SearchQuery(tags=body.tags, facets=False), body.page, body.limit)


@router.post(
    "/assets/search",
    dependencies=[ReadGuard],
    summary="Mastro: full-text search",
    responses=problems(404),
)
async def by_text(body: MastroTextQuery, catalogue: CatalogueDep) -> Response:
    return await _paged(catalogue, SearchQuery(q=body.query, facets=False), body.page, body.limit)


@router.get(
    "/assets/",
    dependencies=[ReadGuard],
    summary="Mastro: list with page numbers",
    responses=problems(404),
)
async def list_all(
    catalogue: CatalogueDep,
    limit: Annotated[int, Query(ge=1, le=MASTRO_MAX_PER_PAGE)],
    page: Annotated[int, Query(ge=0, le=MAX_PAGE, description="0 is read as 1")],
) -> Response:
    return await _paged(catalogue, SearchQuery(facets=False), page, limit)

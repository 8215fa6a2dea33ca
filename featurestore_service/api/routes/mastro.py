"""Mastro-compatible routes, so clients written for Mastro's feature store keep working.

Each Mastro document is one version: these routes list every live version, newest first per
name, in Mastro's ``{data, pagination}`` shape. Mastro's string ``version`` is kept as
``version_label``; in these answers ``version`` is that label (or the number as text) and
``version_number`` the number Cairn assigned.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from cairn.errors import NotFound
from cairn.models import (
    MASTRO_MAX_PER_PAGE,
    FeatureSetWrite,
    MastroFeatureSetWrite,
    MastroLabelsQuery,
    MastroTextQuery,
)
from cairn.openapi import problems
from cairn.paging import MAX_PAGE, mastro_page
from cairn.sqlite import label_text
from cairn.web import CairnRoute, json_body
from featurestore_service.api.deps import FeatureStoreDep, ReadGuard, WriteGuard, validated
from featurestore_service.backends.base import FeatureSetQuery
from featurestore_service.service import FeatureStore

router = APIRouter(prefix="/api/v1", tags=["mastro-compatible"], route_class=CairnRoute)


def mastro_featureset(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored version with Mastro's field names added."""
    out = dict(doc)
    out["version"] = doc.get("version_label") or str(doc["version"])
    out["version_number"] = doc["version"]
    out["inserted_at"] = doc["created_at"]
    out["features"] = [{**f, "data_type": f["dtype"]} for f in doc.get("features") or ()]
    return out


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def _page(
    service: FeatureStore, query: FeatureSetQuery, page: int, limit: int
) -> dict[str, Any]:
    query.all_versions = True
    query.full = True
    query.limit = limit
    query.offset = (page - 1) * limit
    hits = await service.search(query)
    data = [mastro_featureset(orjson.loads(doc)) for doc in hits.docs]
    return mastro_page(data, hits.total, page, limit)


@router.put(
    "/featureset/",
    dependencies=[WriteGuard],
    status_code=201,
    summary="Mastro: create a feature set (its version string becomes version_label)",
    responses=problems(400, 409, 422),
)
async def put_featureset(request: Request, service: FeatureStoreDep) -> Response:
    body = validated(MastroFeatureSetWrite, await json_body(request))
    stored = await service.create(validated(FeatureSetWrite, body.write_data()))
    return _json(mastro_featureset(orjson.loads(stored.doc)), 201)


@router.get(
    "/featureset/name/{name}",
    dependencies=[ReadGuard],
    summary="Mastro: every live version of a set, newest first",
    responses=problems(404),
)
async def by_name(
    name: str,
    service: FeatureStoreDep,
    limit: Annotated[int, Query(ge=1, le=MASTRO_MAX_PER_PAGE)] = 10,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    found = await _page(service, FeatureSetQuery(name=name, name_exact=True), page, limit)
    if found["pagination"]["total"] == 0:
        raise NotFound(f"No feature set is named {name!r}; names are case-sensitive.")
    return _json(found)


@router.post("/featureset/labels", dependencies=[ReadGuard], summary="Mastro: all labels match")
async def by_labels(body: MastroLabelsQuery, service: FeatureStoreDep) -> Response:
    labels = [(k, label_text(v)) for k, v in body.labels.items()]
    return _json(await _page(service, FeatureSetQuery(labels=labels), body.page, body.limit))


@router.post("/featureset/search", dependencies=[ReadGuard], summary="Mastro: full-text search")
async def by_text(body: MastroTextQuery, service: FeatureStoreDep) -> Response:
    return _json(await _page(service, FeatureSetQuery(q=body.query), body.page, body.limit))


@router.get("/featureset/", dependencies=[ReadGuard], summary="Mastro: list with page numbers")
async def list_all(
    service: FeatureStoreDep,
    limit: Annotated[int, Query(ge=1, le=MASTRO_MAX_PER_PAGE)] = 10,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    return _json(await _page(service, FeatureSetQuery(), page, limit))

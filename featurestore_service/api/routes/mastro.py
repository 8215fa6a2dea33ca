"""Mastro-compatible routes, so Mastro's UI and its ``mastro-fs`` client keep working unchanged.

Served under ``/api/v1`` and at the root (``cairn.mastro.include_mastro``). Each Mastro
document is one version: these routes list every live version, newest first per name, in
Mastro's ``{data, pagination}`` shape, with Mastro's ``FeatureSet`` fields only. Mastro's
string ``version`` is kept as ``version_label`` and shown back as ``version`` (the number as
text when there is none). A Mastro id is ``<name>@<version number>``, or a bare name for the
latest version. Names Cairn does not allow are mapped reversibly (``cairn.models``).

``POST /search`` and ``POST /labels`` at the root are the paths ``mastro-fs`` 0.1.0 sends its
text and label searches to; they answer as ``/featureset/search`` and ``/featureset/labels``.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from cairn.errors import BadRequest, NotFound
from cairn.mastro import MastroRoute, first_page, mastro_json, mastro_time
from cairn.models import (
    MASTRO_MAX_PER_PAGE,
    MAX_VERSION,
    FeatureSetWrite,
    MastroFeatureSetWrite,
    MastroLabelsQuery,
    MastroTextQuery,
    from_mastro_name,
    to_mastro_name,
)
from cairn.openapi import problems
from cairn.paging import MAX_PAGE, mastro_page
from cairn.sqlite import label_text
from cairn.web import check_label_count, json_body, validated
from featurestore_service.api.deps import FeatureStoreDep, ReadGuard, WriteGuard
from featurestore_service.backends.base import FeatureSetQuery
from featurestore_service.service import FeatureStore

router = APIRouter(tags=["mastro-compatible"], route_class=MastroRoute)
# mastro-fs 0.1.0 posts its searches to these root paths.
client_router = APIRouter(tags=["mastro-compatible"], route_class=MastroRoute)

EMPTY = "No feature sets in given collection"
Limit = Annotated[int, Query(ge=1, le=MASTRO_MAX_PER_PAGE)]
Page = Annotated[int, Query(ge=0, le=MAX_PAGE, description="0 is read as 1, as Mastro does")]


def mastro_featureset(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored version as Mastro's ``FeatureSet`` struct writes it, and nothing more."""
    return {
        "name": to_mastro_name(doc["name"]),
        "inserted_at": mastro_time(doc.get("created_at")),
        "version": doc.get("version_label") or str(doc["version"]),
        "features": [
            {
                "name": f["name"],
                "value": f.get("value"),
                "data_type": f.get("mastro_type") or f["dtype"],
            }
            for f in doc.get("features") or ()
        ],
        "description": doc.get("description") or "",
        "labels": doc.get("labels") or {},
    }


async def _page(service: FeatureStore, query: FeatureSetQuery, page: int, limit: int) -> Response:
    page = first_page(page)
    query.all_versions = True
    query.full = True
    query.limit = limit
    query.offset = (page - 1) * limit
    hits = await service.search(query)
    if not hits.docs:
        raise NotFound(EMPTY)
    data = [mastro_featureset(orjson.loads(doc)) for doc in hits.docs]
    return mastro_json(mastro_page(data, hits.total, page, limit))


@router.put(
    "/featureset/",
    dependencies=[WriteGuard],
    status_code=201,
    summary="Mastro: create a feature set (its version string becomes version_label)",
    responses=problems(400, 409),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": MastroFeatureSetWrite.model_json_schema()}},
        }
    },
)
async def put_featureset(request: Request, service: FeatureStoreDep) -> Response:
    body = validated(MastroFeatureSetWrite, await json_body(request))
    stored = await service.create(validated(FeatureSetWrite, body.write_data()))
    return mastro_json(mastro_featureset(orjson.loads(stored.doc)), 201)


@router.get(
    "/featureset/id/{featureset_id}",
    dependencies=[ReadGuard],
    summary="Mastro: one version, by <name>@<version> (a bare name is the latest)",
    responses=problems(400, 404),
)
async def by_id(featureset_id: str, service: FeatureStoreDep) -> Response:
    name, sep, number = featureset_id.rpartition("@")
    if not sep:
        stored = await service.latest(from_mastro_name(featureset_id))
    elif not (number.isascii() and number.isdigit()) or int(number) > MAX_VERSION:
        raise BadRequest(
            f"invalid feature set id {featureset_id!r}: write <name>@<version number> (1 to "
            f"{MAX_VERSION}), or the bare name for the latest version"
        )
    else:
        stored = await service.get(from_mastro_name(name), int(number))
    return mastro_json(mastro_featureset(orjson.loads(stored.doc)))


@router.get(
    "/featureset/name/{name}",
    dependencies=[ReadGuard],
    summary="Mastro: every live version of a set, newest first",
    responses=problems(404),
)
async def by_name(name: str, service: FeatureStoreDep, limit: Limit, page: Page) -> Response:
    query = FeatureSetQuery(name=from_mastro_name(name), name_exact=True)
    return await _page(service, query, page, limit)


@router.post(
    "/featureset/labels",
    dependencies=[ReadGuard],
    summary="Mastro: all labels match",
    responses=problems(404),
)
async def by_labels(body: MastroLabelsQuery, service: FeatureStoreDep) -> Response:
    labels = [(k, label_text(v)) for k, v in body.labels.items()]
    return await _page(service, FeatureSetQuery(labels=labels), body.page, body.limit)


@router.get(
    "/featureset/labels",
    dependencies=[ReadGuard],
    summary="Mastro: all labels match, given as query parameters k=v",
    responses=problems(400, 404),
)
async def by_query_labels(
    request: Request, service: FeatureStoreDep, limit: Limit, page: Page
) -> Response:
    labels = [(k, v) for k, v in request.query_params.items() if k not in ("limit", "page")]
    if not labels:
        raise BadRequest("Invalid query by labels :: empty label dict")
    check_label_count(len(labels))
    return await _page(service, FeatureSetQuery(labels=labels), page, limit)


@router.post(
    "/featureset/search",
    dependencies=[ReadGuard],
    summary="Mastro: full-text search",
    responses=problems(404),
)
async def by_text(body: MastroTextQuery, service: FeatureStoreDep) -> Response:
    return await _page(service, FeatureSetQuery(q=body.query), body.page, body.limit)


@router.get(
    "/featureset/",
    dependencies=[ReadGuard],
    summary="Mastro: list with page numbers",
    responses=problems(404),
)
async def list_all(service: FeatureStoreDep, limit: Limit, page: Page) -> Response:
    return await _page(service, FeatureSetQuery(), page, limit)


@client_router.post(
    "/labels",
    dependencies=[ReadGuard],
    summary="mastro-fs's path for POST /featureset/labels",
    responses=problems(404),
)
async def client_labels(body: MastroLabelsQuery, service: FeatureStoreDep) -> Response:
    return await by_labels(body, service)


@client_router.post(
    "/search",
    dependencies=[ReadGuard],
    summary="mastro-fs's path for POST /featureset/search",
    responses=problems(404),
)
async def client_search(body: MastroTextQuery, service: FeatureStoreDep) -> Response:
    return await by_text(body, service)

"""Asset pages: metadata, schema, lineage picture and the manifest rendered back as YAML."""

from __future__ import annotations

import asyncio
import re
import shlex
from typing import Any
from urllib.parse import quote, urlencode

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from ui.backend import ApiError, ServiceDown
from ui.lineage import layout
from ui.render import curl_key, note_down, page_cache, render
from ui.visitor import ReaderDep

router = APIRouter(include_in_schema=False)

ID_CHARS = re.compile(r"^[A-Za-z0-9._:@-]{1,256}$")
DEPTHS = range(1, 11)
DEFAULT_DEPTH = 2
DIRECTIONS = {"both": "Upstream and downstream", "up": "Upstream only", "down": "Downstream only"}
FEATURESET_PREFIX = "featureset:"
MANIFEST_FIELDS = (
    "name",
    "type",
    "description",
    "tags",
    "labels",
    "owners",
    "location",
    "format",
    "schema",
    "depends_on",
    "versions",
    "published_on",
)


# Runs of a job shown on its page, the latest first.
RUNS_SHOWN = 20


def lineage_options(request: Request) -> tuple[str, int]:
    direction = request.query_params.get("direction", "both")
    if direction not in DIRECTIONS:
        direction = "both"
    try:
        depth = int(request.query_params.get("depth", DEFAULT_DEPTH))
    except ValueError:
        depth = DEFAULT_DEPTH
    return direction, min(max(depth, 1), DEPTHS[-1])


def asset_url(asset_id: str, direction: str = "both", depth: int = DEFAULT_DEPTH) -> str:
    query = {}
    if direction != "both":
        query["direction"] = direction
    if depth != DEFAULT_DEPTH:
        query["depth"] = str(depth)
    return f"/assets/{quote(asset_id, safe='')}" + (f"?{urlencode(query)}" if query else "")


def featureset_name(asset: dict[str, Any]) -> str | None:
    """The feature store's name for an asset it registered (``featureset:<name>``)."""
    name = str(asset.get("name") or "")
    if asset.get("type") == "featureset" and name.startswith(FEATURESET_PREFIX):
        return name[len(FEATURESET_PREFIX) :] or None
    return None


def manifest_yaml(asset: dict[str, Any]) -> str:
    """The asset as the manifest that would describe it (unknown fields last, as written)."""
    doc: dict[str, Any] = {}
    for key in MANIFEST_FIELDS:
        value = asset.get(key)
        if value in (None, "", [], {}):
            continue
        if key == "schema":
            value = [
                {k: v for k, v in col.items() if v is not None and not (k == "nullable" and v)}
                for col in value
                if isinstance(col, dict)
            ]
        doc[key] = value
    extra = asset.get("extra")
    if isinstance(extra, dict):
        for key, value in extra.items():
            doc.setdefault(str(key), value)
    return yaml.safe_dump(
        doc, sort_keys=False, allow_unicode=True, width=96, default_flow_style=None
    )


@router.get("/assets/by-name/{name:path}")
async def by_name(name: str, request: Request, api: ReaderDep) -> Response:
    try:
        try:
            asset = await api.asset_by_name(name)
        except ApiError as exc:
            # depends_on entries may be ids as well as names.
            if exc.status != 404 or not ID_CHARS.match(name):
                raise
            asset = await api.asset(name)
    except ServiceDown as exc:
        note_down(request, exc)
        return render(
            request,
            "error.html",
            status_code=503,
            title="Catalogue unavailable",
            message="The catalogue did not answer, so this asset cannot be shown.",
        )
    except ApiError as exc:
        return not_found(request, f"No asset is named “{name}”.", exc, query=name)
    direction, depth = lineage_options(request)
    target = asset_url(str(asset["id"]), direction, depth)
    return RedirectResponse(target, status_code=303)


@router.get("/assets/{asset_id}", response_class=HTMLResponse)
async def asset_page(asset_id: str, request: Request, api: ReaderDep) -> HTMLResponse:
    direction, depth = lineage_options(request)
    asset_call = api.asset(asset_id)
    lineage_call = api.lineage(asset_id, direction, depth)
    asset_res: dict[str, Any] | BaseException
    lineage_res: dict[str, Any] | BaseException
    columns_res: dict[str, Any] | BaseException
    runs_res: list[dict[str, Any]] | BaseException
    asset_res, lineage_res, columns_res, runs_res = await asyncio.gather(
        asset_call,
        lineage_call,
        api.columns(asset_id),
        api.runs(asset_id, RUNS_SHOWN),
        return_exceptions=True,
    )
    if isinstance(asset_res, ServiceDown):
        note_down(request, asset_res)
        return render(
            request,
            "error.html",
            status_code=503,
            title="Catalogue unavailable",
            message="The catalogue did not answer, so this asset cannot be shown.",
        )
    if isinstance(asset_res, ApiError):
        return not_found(request, f"No asset has the id “{asset_id}”.", asset_res)
    if isinstance(asset_res, BaseException):
        raise asset_res
    asset: dict[str, Any] = asset_res

    drawing = None
    lineage_error = None
    if isinstance(lineage_res, ServiceDown):
        note_down(request, lineage_res)
        lineage_error = "The catalogue did not answer the lineage request."
    elif isinstance(lineage_res, ApiError):
        lineage_error = lineage_res.detail
    elif isinstance(lineage_res, BaseException):
        raise lineage_res
    else:

        def href(node: dict[str, Any]) -> str | None:
            fs = featureset_name(node)
            if fs is not None:
                return f"/featuresets/{quote(fs, safe='')}"
            return asset_url(str(node["id"]), direction, depth) + "#lineage"

        drawing = layout(lineage_res, href)

    reported_error = None
    for answer in (columns_res, runs_res):
        if isinstance(answer, ServiceDown):
            note_down(request, answer)
            reported_error = "The catalogue did not answer; runs and column lineage are not shown."
        elif isinstance(answer, ApiError):
            reported_error = answer.detail
        elif isinstance(answer, BaseException):
            raise answer
    columns = columns_res if isinstance(columns_res, dict) else {}
    return render(
        request,
        "asset.html",
        asset=asset,
        column_lineage=sorted((columns.get("columns") or {}).items()),
        reported=columns,
        runs=runs_res if isinstance(runs_res, list) else [],
        reported_error=reported_error,
        labels=list((asset.get("labels") or {}).items()),
        schema=[c for c in asset.get("schema") or [] if isinstance(c, dict)],
        manifest=manifest_yaml(asset),
        featureset=featureset_name(asset),
        drawing=drawing,
        lineage_error=lineage_error,
        lineage_truncated=isinstance(lineage_res, dict) and bool(lineage_res.get("truncated")),
        direction=direction,
        depth=depth,
        directions=DIRECTIONS,
        depths=DEPTHS,
        api_url=f"{api.catalogue.url}/api/v1/assets/{quote(str(asset['id']), safe='')}",
        curl_key=curl_key(request),
        # The CLI sends CAIRN_API_KEY itself when one is set.
        cli_line=f"cairn assets get {shlex.quote(str(asset['id']))} --url "
        + shlex.quote(api.catalogue.url),
    )


@router.get("/assets/{asset_id}/manifest.yaml")
async def manifest_text(asset_id: str, request: Request, api: ReaderDep) -> Response:
    try:
        asset = await api.asset(asset_id)
    except ServiceDown as exc:
        note_down(request, exc)
        return render(
            request,
            "error.html",
            status_code=503,
            title="Catalogue unavailable",
            message="The catalogue did not answer, so this manifest cannot be shown.",
        )
    except ApiError as exc:
        return not_found(request, f"No asset has the id “{asset_id}”.", exc)
    return PlainTextResponse(
        manifest_yaml(asset),
        media_type="text/yaml; charset=utf-8",
        headers=page_cache(request),
    )


def not_found(request: Request, message: str, exc: ApiError, query: str = "") -> HTMLResponse:
    status = exc.status if exc.status in (400, 404, 422) else 404
    return render(
        request,
        "error.html",
        status_code=status,
        title="Asset not found" if status == 404 else "Bad request",
        message=message if status == 404 else exc.detail,
        query=query,
    )

"""How a version goes out: content negotiation, ETags and 304s, and the tabular formats.

A values set is JSON only, sent as the stored document (with ``columns=``, only the features
named). A table is JSON (the document plus a page of rows), an Arrow IPC stream or Parquet (the
stored file itself when neither columns nor limit are asked for), with ``columns=`` projection
and ``limit=``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, StreamingResponse

from cairn.errors import NotAcceptable
from cairn.models import TableInfo
from cairn.web import etag_matches
from featurestore_service.api.deps import bad_param, int_param, list_param
from featurestore_service.backends.base import StoredVersion
from featurestore_service.blobstore import Lease
from featurestore_service.service import FeatureStore
from featurestore_service.tables import (
    arrow_stream,
    check_columns,
    damaged_file,
    picked,
    read_rows,
    write_subset,
)

JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
FORMATS = {"json": JSON, "arrow": ARROW, "parquet": PARQUET}
ALIASES = {"application/x-parquet": PARQUET, "application/parquet": PARQUET}
TABLE_MEDIA = (JSON, ARROW, PARQUET)
VALUES_MEDIA = (JSON,)
DEFAULT_ROWS = 100
MAX_ROWS = 10_000


def _ranges(accept: str) -> list[tuple[str, float]]:
    """The media ranges of an Accept header with their quality (1 unless given; 0 if unreadable)."""
    ranges = []
    for part in accept.split(","):
        media, _, rest = part.partition(";")
        quality = 1.0
        for param in rest.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.strip().lower()
        ranges.append((ALIASES.get(media, media), quality))
    return ranges


def _quality(media: str, ranges: list[tuple[str, float]]) -> tuple[float, int]:
    """``media``'s quality by the most specific range naming it (RFC 9110: ``type/sub`` over
    ``type/*`` over ``*/*``, so ``application/json;q=0`` refuses JSON whatever ``*/*`` says),
    with that range's place in the header; (0, 0) when no range names it."""
    family = media.split("/", 1)[0] + "/*"
    best: tuple[int, float, int] = (-1, 0.0, 0)  # specificity, quality, place
    for place, (name, quality) in enumerate(ranges):
        specificity = 2 if name == media else 1 if name == family else 0 if name == "*/*" else -1
        if specificity > best[0]:
            best = (specificity, quality, place)
    return best[1], best[2]


def negotiate(accept: str | None, offered: tuple[str, ...]) -> str | None:
    """The offered media type the Accept header prefers: the highest quality, then the one
    whose range comes first in the header, then the first offered (``*/*`` gets that)."""
    if not accept:
        return offered[0]
    ranges = _ranges(accept)
    chosen: tuple[float, int, int] | None = None
    for position, media in enumerate(offered):
        quality, place = _quality(media, ranges)
        if quality > 0 and (chosen is None or (-quality, place, position) < chosen):
            chosen = (-quality, place, position)
    return offered[chosen[2]] if chosen is not None else None


def _choose(request: Request, offered: tuple[str, ...], kind: str) -> str:
    wanted = request.query_params.get("format")
    if wanted:
        media = FORMATS.get(wanted.lower())
        if media is None:
            raise bad_param("format", f"{wanted!r} is not one of json, arrow, parquet")
    else:
        media = negotiate(request.headers.get("accept"), offered)
    if media is None or media not in offered:
        if kind == "values":
            raise NotAcceptable(
                "A set of named values is served as JSON only; send Accept: application/json "
                "(Arrow and Parquet are for tabular sets)."
            )
        raise NotAcceptable(
            f"This table is served as {', '.join(TABLE_MEDIA)}; ask for one of those in "
            "Accept, or pass format=json|arrow|parquet."
        )
    return media


def send_json(request: Request, body: bytes, etag: str, status: int = 200) -> Response:
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"etag": etag})
    return Response(body, status_code=status, media_type=JSON, headers={"etag": etag})


async def send_version(request: Request, service: FeatureStore, stored: StoredVersion) -> Response:
    """A values set's stored document, or the negotiated representation of a table."""
    if stored.kind == "values":
        accept = request.headers.get("accept")
        if (accept is None or accept == JSON or accept == "*/*") and not request.query_params:
            return send_json(request, stored.doc, stored.etag)  # the hot path
        _choose(request, VALUES_MEDIA, "values")
        wanted = list_param(request.query_params, "columns")
        if wanted:
            return send_json(request, *_features_kept(stored, wanted))
        return send_json(request, stored.doc, stored.etag)
    return await send_table(request, service, stored)


def _features_kept(stored: StoredVersion, wanted: list[str]) -> tuple[bytes, str]:
    """A values set's document with only the ``wanted`` features, in that order, and the
    ETag of that variant (``columns=`` picks a set's named values as it picks a table's
    columns); a name the set lacks is a 400 that lists the ones it has."""
    doc = orjson.loads(stored.doc)
    by_name = {feature["name"]: feature for feature in doc["features"]}
    names = picked(wanted, list(by_name), "feature", "set")
    doc["features"] = [by_name[name] for name in names]
    return orjson.dumps(doc), _variant_etag(stored.etag, "features", names)


def _variant_etag(*parts: object) -> str:
    """The ETag of one representation of a version: its stored ETag and what was asked."""
    return f'"{hashlib.sha256(orjson.dumps(parts)).hexdigest()[:32]}"'


async def send_table(request: Request, service: FeatureStore, stored: StoredVersion) -> Response:
    params = request.query_params
    media = _choose(request, TABLE_MEDIA, "table")
    info = TableInfo.model_validate(orjson.loads(stored.doc)["table"])
    columns = check_columns(info, list_param(params, "columns"))
    if media == JSON:
        limit = int_param(params, "limit", DEFAULT_ROWS, 1, MAX_ROWS)
        offset = int_param(params, "offset", 0, 0)
    else:
        limit = int_param(params, "limit", None, 0)
        offset = None
    etag = _variant_etag(stored.etag, media, columns, limit, offset)
    headers = {"etag": etag, "vary": "accept", "x-cairn-version": str(stored.version)}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    # The file stays checked out (kept in the read cache) until the answer is sent.
    lease = await service.checkout(stored)
    try:
        return await _table_response(service, stored, lease, media, columns, limit, offset, headers)
    except BaseException:
        lease.release()
        raise


async def _table_response(
    service: FeatureStore,
    stored: StoredVersion,
    lease: Lease,
    media: str,
    columns: list[str] | None,
    limit: int | None,
    offset: int | None,
    headers: dict[str, str],
) -> Response:
    path = lease.path
    if media == JSON:
        assert limit is not None and offset is not None
        try:
            with damaged_file(f"{stored.name} version {stored.version}", stored.blob):
                names, rows, total = await service.decodes.run(
                    read_rows, path, columns, offset, limit
                )
        finally:
            lease.release()
        end = offset + limit
        page = orjson.dumps(
            {
                "columns": names,
                "offset": offset,
                "limit": limit,
                "total_rows": total,
                "next_offset": end if end < total else None,
            }
        )
        # The stored document with "data" spliced in: rows are encoded once, by read_rows.
        body = stored.doc[:-1] + b',"data":{"rows":' + rows + b"," + page[1:] + b"}"
        return Response(body, media_type=JSON, headers=headers)
    if media == ARROW:
        return StreamingResponse(
            _released(arrow_stream(path, columns, limit, service.decodes), lease),
            media_type=ARROW,
            headers=headers,
        )
    filename = f"{stored.name}-v{stored.version}.parquet"
    if columns is None and limit is None:
        # The stored file itself: the bytes that were uploaded.
        return FileResponse(
            path,
            media_type=PARQUET,
            headers=headers,
            filename=filename,
            background=BackgroundTask(lease.release),
        )
    subset = service.blobs.temp_path(".parquet")
    try:
        with damaged_file(f"{stored.name} version {stored.version}", stored.blob):
            await service.decodes.run(write_subset, path, subset, columns, limit)
    except BaseException:
        subset.unlink(missing_ok=True)
        raise
    finally:
        lease.release()
    return FileResponse(
        subset,
        media_type=PARQUET,
        headers=headers,
        filename=filename,
        background=BackgroundTask(os.unlink, subset),
    )


async def _released(
    chunks: AsyncIterator[bytes | memoryview], lease: Lease
) -> AsyncIterator[bytes | memoryview]:
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        lease.release()

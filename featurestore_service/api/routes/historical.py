"""Point-in-time training sets: ``POST /api/v1/historical-features`` (DESIGN 9)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from cairn.errors import NotAcceptable, UnsupportedMediaType
from cairn.openapi import problems
from cairn.web import CairnRoute
from featurestore_service.api.deps import ReadGuard, bad_param
from featurestore_service.api.representations import ARROW, PARQUET, negotiate
from featurestore_service.historical import VERSIONS_HEADER, HistoricalFeatures, release, stream
from featurestore_service.pit.entity_frame import ARROW as ARROW_KIND
from featurestore_service.pit.entity_frame import PARQUET as PARQUET_KIND

router = APIRouter(prefix="/api/v1", tags=["historical features"], route_class=CairnRoute)

BODY_KINDS = {
    PARQUET: PARQUET_KIND,
    "application/x-parquet": PARQUET_KIND,
    "application/parquet": PARQUET_KIND,
    ARROW: ARROW_KIND,
}
ANSWER_KINDS = {ARROW: ARROW_KIND, PARQUET: PARQUET_KIND}
BINARY = {"schema": {"type": "string", "format": "binary"}}


def _flag(request: Request, key: str) -> bool:
    raw = (request.query_params.get(key) or "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise bad_param(key, f"{raw!r} is not true or false")
    return raw in ("true", "1")


@router.post(
    "/historical-features",
    dependencies=[ReadGuard],
    summary="A point-in-time correct training set for an entity frame",
    description="Send the entity frame (join keys, `event_timestamp`, any other columns) as "
    "the body, Parquet or an Arrow IPC stream. Each row gets each feature's value from the "
    "row of its key with the greatest timestamp at or before the row's event_timestamp and "
    "within the table's ttl (ties: greatest created_timestamp, then the row written last); "
    "otherwise null. Every row is kept, in order, entity-frame columns first. A naive "
    "timestamp is read as UTC. The versions used are named in the Cairn-Feature-Versions "
    "header and the Arrow schema metadata (cairn.feature_versions, cairn.features).",
    responses={
        200: {
            "content": {ARROW: BINARY, PARQUET: BINARY},
            "headers": {VERSIONS_HEADER: {"schema": {"type": "string"}}},
        },
        **problems(400, 404, 406, 409, 415, 422),
        413: {
            **problems(413)[413],
            "description": "The entity frame is larger than CAIRN_MAX_ENTITY_FRAME_BYTES",
        },
    },
    openapi_extra={
        "requestBody": {"required": True, "content": {PARQUET: BINARY, ARROW: BINARY}},
        "parameters": [
            {
                "name": "features",
                "in": "query",
                "required": True,
                "schema": {"type": "array", "items": {"type": "string"}},
                "description": "set:feature, set:* or set@3:feature; repeat for more",
                "style": "form",
                "explode": True,
            },
            {
                "name": "full_feature_names",
                "in": "query",
                "schema": {"type": "boolean", "default": False},
                "description": "Name feature columns set__feature",
            },
        ],
    },
)
async def historical_features(request: Request) -> Response:
    historical: HistoricalFeatures = request.app.state.historical
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    kind = BODY_KINDS.get(content_type)
    if kind is None:
        raise UnsupportedMediaType(
            f"The entity frame must be sent as {PARQUET} or {ARROW}, not {content_type!r}."
        )
    media = negotiate(request.headers.get("accept"), (ARROW, PARQUET))
    if media is None:
        raise NotAcceptable(f"The answer is sent as {ARROW} or {PARQUET}; ask for one in Accept.")
    references = request.query_params.getlist("features")
    full = _flag(request, "full_feature_names")
    tables, leases = await historical.resolve(references, full)
    try:
        spooled = await historical.spool(request.stream())
        try:
            job = await anyio.to_thread.run_sync(historical.plan, spooled, kind, tables)
        except BaseException:
            spooled.unlink(missing_ok=True)
            raise
    finally:
        release(leases)  # the plan has read the tables into the engine's indexes
    versions = job.schema.metadata[b"cairn.feature_versions"].decode()
    headers = {VERSIONS_HEADER: versions, "x-cairn-rows": str(job.num_rows)}
    if media == PARQUET:
        headers["content-disposition"] = 'attachment; filename="training-set.parquet"'
    return StreamingResponse(
        stream(job, ANSWER_KINDS[media], spooled), media_type=media, headers=headers
    )

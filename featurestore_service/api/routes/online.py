"""Entity-keyed serving (DESIGN 9): online lookups, materialization and online state."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from featurestore_service.api.deps import ReadGuard, WriteGuard, check_read_key, int_param
from featurestore_service.api.representations import JSON
from featurestore_service.api.routes.featuresets import FastRoute

router = APIRouter(tags=["online"])

ONLINE_EXAMPLE = {
    "features": ["customer_features:recency_days", "customer_features:tenure_days"],
    "entities": {"customer_id": ["C00001", "C00002"]},
    "full_feature_names": False,
}
ONLINE_DOC = {
    "requestBody": {
        "required": True,
        "content": {JSON: {"example": ONLINE_EXAMPLE, "schema": {"type": "object"}}},
    },
    "responses": {
        "200": {
            "description": "Feast's answer: metadata.feature_names and one result per column "
            "(values, statuses PRESENT / NOT_FOUND / OUTSIDE_MAX_AGE, event_timestamps)",
            "content": {JSON: {"schema": {"type": "object"}}},
        }
    },
}
DESCRIPTION = (
    "Feast feature server's request and answer. References: set:feature, set:*, set@3:feature "
    "(the pinned version must be the one online). Entity columns first; tables sharing an entity "
    "are joined. At most CAIRN_ONLINE_MAX_ENTITIES entity rows per request."
)


async def online_features(request: Request) -> Response:
    # Served through FAST_ROUTES (ahead of FastAPI's routing and dependency solving).
    check_read_key(request)
    service = request.app.state.online
    return Response(await service.lookup(await request.body()), media_type=JSON)


for path in ("/api/v1/online-features", "/get-online-features"):
    router.add_api_route(
        path,
        online_features,
        methods=["POST"],
        summary="Latest feature values of entity keys (Feast's get-online-features)",
        description=DESCRIPTION,
        openapi_extra=ONLINE_DOC,
        dependencies=[ReadGuard],
        operation_id="online_features" + path.replace("/", "_").replace("-", "_"),
    )


@router.post(
    "/api/v1/featuresets/{name}/materialize",
    dependencies=[WriteGuard],
    summary="Write a feature table version into the online store now and make it live",
    description="The latest live version, or ?version=N (which then stays online until the "
    "next version of the set is written). Answers with the online state once it is live.",
)
async def materialize(name: str, request: Request) -> Response:
    version = int_param(request.query_params, "version", None, 1)
    state = await request.app.state.materializer.materialize_version(name, version)
    return Response(_state_json(state), media_type=JSON)


@router.get(
    "/api/v1/featuresets/{name}/online",
    dependencies=[ReadGuard],
    summary="Online state: live version, key count, materialized_at, pending version",
)
async def online_state(name: str, request: Request) -> Response:
    state = await request.app.state.materializer.state(name)
    return Response(_state_json(state), media_type=JSON)


def _state_json(state: object) -> bytes:
    import orjson

    summary = state.summary()  # type: ignore[attr-defined]
    live = state.live  # type: ignore[attr-defined]
    summary["name"] = state.name  # type: ignore[attr-defined]
    summary["entities"] = live.entities if live else None
    summary["features"] = live.features if live else None
    summary["ttl"] = live.ttl if live else None
    return orjson.dumps(summary)


FAST_ROUTES = [
    FastRoute(path, online_features, methods=["POST"])
    for path in ("/api/v1/online-features", "/get-online-features")
]

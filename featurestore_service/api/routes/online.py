"""Entity-keyed serving (DESIGN 9): online lookups, materialization and online state."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from cairn.openapi import problems
from cairn.web import CairnRoute
from featurestore_service.api.deps import ReadGuard, WriteGuard, check_read_key, int_param
from featurestore_service.api.representations import JSON
from featurestore_service.api.routes.featuresets import FastRoute
from featurestore_service.metrics.skew import SkewSampler

router = APIRouter(tags=["online"], route_class=CairnRoute)

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
    "are joined; two columns of one name are a 422 unless full_feature_names (set__feature). "
    "At most CAIRN_ONLINE_MAX_ENTITIES entity rows per request."
)


async def online_features(request: Request) -> Response:
    # Served through FAST_ROUTES (ahead of FastAPI's routing and dependency solving).
    check_read_key(request)
    service = request.app.state.online
    body = await request.body()
    skew: SkewSampler = request.app.state.skew
    if skew.rate <= 0:  # off by default: no cost on the hot path
        return Response(await service.lookup(body), media_type=JSON)
    served: list[tuple[str, int]] = []
    answer = await service.lookup(body, served)
    if skew.chosen():
        _sample_for_skew(skew, answer, served)
    return Response(answer, media_type=JSON)


def _sample_for_skew(skew: SkewSampler, answer: bytes, served: list[tuple[str, int]]) -> None:
    """Hands served values to the training/serving skew sampler (metrics/skew.py): each set's
    columns go to that set's own sample, however many sets one answer spans."""
    answered = orjson.loads(answer)
    names = answered["metadata"]["feature_names"]
    results = answered["results"]
    # Feature columns come last; the entity columns before them are the request's key columns
    # that some set is keyed by (others are not echoed).
    start = len(names) - sum(count for _, count in served)
    for name, count in served:
        columns = [
            (names[i].removeprefix(f"{name}__"), results[i]["values"], results[i]["statuses"])
            for i in range(start, start + count)
        ]
        start += count
        rows = [
            {column: values[i] for column, values, statuses in columns if statuses[i] == "PRESENT"}
            for i in range(len(columns[0][1]) if columns else 0)
        ]
        skew.record(name, [row for row in rows if row])


for path in ("/api/v1/online-features", "/get-online-features"):
    router.add_api_route(
        path,
        online_features,
        methods=["POST"],
        summary="Latest feature values of entity keys (Feast's get-online-features)",
        description=DESCRIPTION,
        openapi_extra=ONLINE_DOC,
        dependencies=[ReadGuard],
        responses=problems(400, 404, 409, 422),
        operation_id="online_features" + path.replace("/", "_").replace("-", "_"),
    )


@router.post(
    "/api/v1/featuresets/{name}/materialize",
    dependencies=[WriteGuard],
    responses=problems(400, 404, 409, 422),
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
    responses=problems(404),
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

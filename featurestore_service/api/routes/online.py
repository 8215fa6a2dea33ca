"""Entity-keyed serving (DESIGN 9): online lookups, materialization and online state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import State
from starlette.types import Scope

from cairn.front import FrontRoute
from cairn.openapi import problems
from cairn.web import CairnRoute
from featurestore_service.api.deps import ReadGuard, WriteGuard, int_param
from featurestore_service.api.representations import JSON
from featurestore_service.metrics.skew import SkewSampler

if TYPE_CHECKING:
    from cairn.web import CairnApp

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


async def online_answer(state: State, body: bytes) -> bytes:
    """The answer's JSON, and a sample of it for the skew sampler when one is taken."""
    service = state.online
    skew: SkewSampler = state.skew
    if skew.rate <= 0:  # off by default: no cost on the hot path
        answer: bytes = await service.lookup(body)
        return answer
    served: list[tuple[str, int]] = []
    answer = await service.lookup(body, served)
    if skew.chosen():
        _sample_for_skew(skew, answer, served)
    return answer


class OnlineFront(FrontRoute):
    """Both paths answered in front of the middleware stack (``cairn.front``): latency is
    this service's point, and the stack's layers were a fifth of a lookup's CPU."""

    def __init__(self, app: CairnApp, path: str) -> None:
        super().__init__(app, path, "POST")
        self.state = app.state

    async def answer(self, scope: Scope, body: bytes) -> bytes:
        return await online_answer(self.state, body)


async def online_features(request: Request) -> Response:
    # What OnlineFront passes on to the whole stack (CORS, telemetry) is answered here.
    return Response(await online_answer(request.app.state, await request.body()), media_type=JSON)


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


ONLINE_PATHS = ("/api/v1/online-features", "/get-online-features")
for path in ONLINE_PATHS:
    router.add_api_route(
        path,
        online_features,
        methods=["POST"],
        summary="Latest feature values of entity keys (Feast's get-online-features)",
        description=DESCRIPTION,
        openapi_extra=ONLINE_DOC,
        dependencies=[ReadGuard],
        responses=problems(404, 409, 422),
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

"""The plumbing of the Mastro-compatible routes of both services.

Mastro's clients (its UI, crawler and ``mastro-fs``) read Mastro's answers, not Cairn's: errors
are ``{message, status, error}`` (its ``RestErr``), bad input is a 400 (never a 422), a JSON
body is read whatever its content type, and pages are ``{data, pagination}`` with ``0`` for a
missing previous or next page. ``MastroRoute`` renders every error of a route that way, and
says so in the OpenAPI document; the body cap (413) stays problem+json, as it is answered
before any route runs.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response

from cairn.errors import CairnError
from cairn.openapi import MASTRO_ERROR_REF
from cairn.settings import Settings
from cairn.web import CairnRoute, invalid_request

API_PREFIX = "/api/v1"
# Go's zero time: what Mastro sends for a time it never set.
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_BODY_METHODS = {"POST", "PUT", "PATCH"}
# Mastro's RestErr.error values for the statuses it sends; others get the reason's words.
_ERROR_NAMES = {400: "bad_request", 404: "not_found", 500: "internal_server_error"}
_KEEP_PROBLEM = {"413"}  # answered by the body-cap middleware, before the route


def mastro_error(status: int, message: str) -> Response:
    name = _ERROR_NAMES.get(status) or _reason_name(status)
    body = {"message": message, "status": status, "error": name}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _reason_name(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return "error"


def mastro_json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def first_page(page: int) -> int:
    """Mastro's UI asks for page 0 first; Mastro's pager reads it as page 1."""
    return max(page, 1)


def mastro_time(value: Any) -> str:
    """A time as Mastro's Go structs write it (never null: Go's zero time stands for unset)."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return str(value) if value else GO_ZERO_TIME


class MastroRoute(CairnRoute):
    """A Mastro-compatible route: Mastro's error shape and status codes, any body type."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        responses: dict[int | str, dict[str, Any]] = {}
        for status, spec in self.responses.items():
            code = str(status)
            if code.startswith(("4", "5")) and code not in _KEEP_PROBLEM:
                # Validation failures are Mastro's 400, never 422.
                target: int | str = 400 if code == "422" else status
                responses[target] = {
                    "description": spec.get("description", "Error"),
                    "content": {"application/json": {"schema": MASTRO_ERROR_REF}},
                }
            else:
                responses[status] = spec
        if any(str(s) == "400" for s in responses):
            # FastAPI adds its own 422 to routes with parameters unless a 4XX is declared.
            responses.setdefault("4XX", responses.pop(400))
        self.responses = responses

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            if request.method in _BODY_METHODS:
                # Mastro binds any body as JSON, whatever the client called it.
                headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
                request.scope["headers"] = [*headers, (b"content-type", b"application/json")]
            try:
                return await handler(request)
            except CairnError as exc:
                return mastro_error(400 if exc.status == 422 else exc.status, exc.detail)
            except RequestValidationError as exc:
                return mastro_error(400, invalid_request(exc).detail)

        return route


def healthcheck_router(*kinds: str) -> APIRouter:
    """Mastro's ``/healthcheck/<kind>`` probes (its Helm chart's liveness and readiness)."""
    router = APIRouter(tags=["health"])

    async def pong() -> PlainTextResponse:
        return PlainTextResponse("pong")

    for kind in kinds:
        router.add_api_route(
            f"/healthcheck/{kind}",
            pong,
            methods=["GET"],
            summary=f"Mastro's {kind} probe: answers pong",
            response_class=PlainTextResponse,
            operation_id=f"mastro_healthcheck_{kind}",
        )
    return router


def include_mastro(app: FastAPI, router: APIRouter, settings: Settings, *kinds: str) -> None:
    """Mastro's routes under ``/api/v1``, and at the root (as Mastro serves them) unless
    CAIRN_MASTRO_ROOT_ROUTES is false; its health probes at the root."""
    app.include_router(router, prefix=API_PREFIX)
    if settings.mastro_root_routes:
        app.include_router(router)
    app.include_router(healthcheck_router(*kinds))

"""The services' OpenAPI document and the pages that show it.

Shared response declarations live here, in one place, so the document says what the plumbing
in ``cairn.web`` really answers: problem+json for every error status a route can give, the
bearer key where one is needed (per deployment: it follows ``CAIRN_API_KEYS`` and
``CAIRN_READ_NEEDS_KEY``), and ``/docs`` and ``/redoc`` served with assets from the
``fastapi-offline`` package, so they work without reaching a CDN.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.staticfiles import StaticFiles

PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
MASTRO_ERROR_REF = {"$ref": "#/components/schemas/MastroError"}
DOCS_ASSETS = "/docs/assets"
# The documentation pages may load from this server only: no CDN, nothing that tracks readers.
# (ReDoc's footer asks a CDN for its maker's logo and hides it when that fails; inline scripts
# and styles are the pages' own, and ReDoc's search runs in a blob: worker.)
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; frame-ancestors 'self'"
)

# The operation extension a guarded route carries until the document is finished: "write" or
# "read". Whether it becomes a security requirement depends on the deployment's settings.
GUARD_EXTENSION = "x-cairn-guard"

DESCRIPTIONS = {
    304: "Not modified: the ETag in If-None-Match still matches",
    400: "Bad request: the body or a parameter cannot be read; the detail says what to fix",
    401: "An API key is needed (CAIRN_API_KEYS), or the one sent is not valid",
    404: "Not found",
    406: "No representation matches the Accept header",
    409: "Conflict",
    413: "The request body is larger than the server accepts",
    415: "The body's content type is not one this route takes",
    422: "A field or parameter fails validation; errors[] lists each with its path",
    503: "The backend does not answer; retry later",
}


class ProblemField(BaseModel):
    field: str = Field(description="Path of the field or parameter, dotted")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details, as every error of the services is answered."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemField] | None = None


class MastroError(BaseModel):
    """Mastro's error body (its ``RestErr``), sent by the Mastro-compatible routes."""

    message: str
    status: int
    error: str = Field(description="Mastro's name for the status, e.g. bad_request")


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Response declarations for ``statuses``, each a problem+json body."""
    return {
        status: {
            "description": DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
        }
        for status in statuses
    }


def hand_parsed(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAPI text of parameters a route reads by hand, where ``name=`` (an empty value) means
    the parameter is absent, as in an HTML form."""
    return [{**p, "allowEmptyValue": True} if p.get("in") == "query" else p for p in parameters]


def shared_responses(
    *, guard: str | None, methods: Iterable[str], has_parameters: bool
) -> dict[int | str, dict[str, Any]]:
    """What the shared plumbing can answer on any route of this shape.

    Every route reaches the backend (503); routes with parameters or a body validate them (422);
    a body can be too large (413); a guarded route can need a key (401).
    """
    statuses = [503]
    if has_parameters:
        statuses.append(422)
    if set(methods) - {"GET", "HEAD", "OPTIONS"}:
        statuses.append(413)
    if guard is not None:
        statuses.append(401)
    return problems(*sorted(statuses))


def build_openapi(app: FastAPI, *, keys_enabled: bool, read_needs_key: bool) -> dict[str, Any]:
    """The app's document: FastAPI's, plus the Problem schema and this deployment's security."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = Problem.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components["schemas"].update(components["schemas"]["Problem"].pop("$defs", {}))
    components["schemas"]["MastroError"] = MastroError.model_json_schema()
    # FastAPI's own validation-error shape is never sent: 422s are problem+json.
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    if keys_enabled:
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "One of the keys in CAIRN_API_KEYS",
            }
        }
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            guard = operation.pop(GUARD_EXTENSION, None)
            needs_key = keys_enabled and (guard == "write" or (guard and read_needs_key))
            if needs_key:
                operation["security"] = [{"bearer": []}]
            elif guard:
                operation["responses"].pop("401", None)
    app.openapi_schema = schema
    return schema


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """The methods the document lists for ``path`` (for a 405's Allow header: Starlette names
    only those of the first route that matched the path, and several routes may share it)."""
    paths: dict[str, dict[str, Any]] = app.openapi().get("paths", {})
    # A literal path wins over templates it also matches, as it does in routing
    # ("/assets/bulk" is not "/assets/{asset_id}").
    operations = paths.get(path)
    if operations is None:
        table = getattr(app.state, "allowed_methods_table", None)
        if table is None:
            table = [
                (re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", template) + "$"), ops)
                for template, ops in paths.items()
                if "{" in template
            ]
            app.state.allowed_methods_table = table
        operations = {m: op for regex, ops in table if regex.match(path) for m, op in ops.items()}
    methods = {m.upper() for m in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def _contained(page: HTMLResponse) -> HTMLResponse:
    page.headers["content-security-policy"] = DOCS_POLICY
    return page


def _assets() -> Path:
    return Path(str(files("fastapi_offline") / "static"))


def docs_router(guard: Callable[[Request], None]) -> APIRouter:
    """``/openapi.json``, ``/docs`` and ``/redoc``, each behind ``guard``; assets served here."""
    router = APIRouter(include_in_schema=False)

    @router.get("/openapi.json")
    async def openapi(request: Request) -> JSONResponse:
        guard(request)
        return JSONResponse(request.app.openapi())

    @router.get("/docs")
    async def swagger(request: Request) -> HTMLResponse:
        guard(request)
        return _contained(
            get_swagger_ui_html(
                openapi_url="/openapi.json",
                title=f"{request.app.title} - API",
                swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                # Swagger UI would send every spec to its public validator for a badge.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @router.get("/redoc")
    async def redoc(request: Request) -> HTMLResponse:
        guard(request)
        return _contained(
            get_redoc_html(
                openapi_url="/openapi.json",
                title=f"{request.app.title} - API",
                redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )

    return router


def mount_docs(app: FastAPI, guard: Callable[[Request], None]) -> None:
    app.include_router(docs_router(guard))
    # The assets are the public Swagger UI and ReDoc bundles: no key needed to fetch them.
    app.mount(DOCS_ASSETS, StaticFiles(directory=_assets()), name="docs-assets")

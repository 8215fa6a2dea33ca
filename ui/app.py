"""The web UI's FastAPI application: server-rendered pages over the services' HTTP APIs.

Errors render as HTML pages (never problem+json, never a stack trace); ``/healthz``,
``/readyz`` and ``/metrics`` come from Cairn's shared plumbing. The UI is ready as soon as it
runs: a service that is down is shown as a banner, not as an unready UI. When reads need a
key, every page reads with the visitor's own (``ui/visitor.py``): none sends them to sign in.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cairn.errors import CairnError
from cairn.settings import Settings, get_settings
from cairn.web import build_app
from ui.backend import ApiError, Backend, KeyRejected, ServiceDown
from ui.render import STATIC, environment, note_down, render
from ui.routes import assets, featuresets, metrics, search, signin, status
from ui.visitor import SignInNeeded, here, signin_url

log = logging.getLogger("cairn.ui")

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds a strict content security policy and friends to every answer."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, add_headers)


class LongCacheStatic(StaticFiles):
    """Static files are requested with a content fingerprint, so they may be cached long."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        return response


def create_app(
    settings: Settings | None = None, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    settings = settings or get_settings()
    backend = Backend(settings, transport=transport)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await backend.probe_all()
        try:
            yield
        finally:
            await backend.close()

    async def ready() -> None:
        return None

    # Its only writes are the sign-in forms, which refuse another site's post with a page of
    # their own (and sign the visitor out), not the services' problem JSON.
    app = build_app(
        title="Cairn UI",
        service="ui",
        settings=settings,
        ready=ready,
        lifespan=lifespan,
        guard_writes=False,
    )
    app.state.backend = backend
    # Its errors are pages, not problems: a query's bad UTF-8 is searched as Starlette reads it.
    app.refuse_bad_queries = False
    app.state.templates = environment()
    install_html_errors(app)
    app.mount("/static", LongCacheStatic(directory=STATIC), name="static")
    for module in (search, assets, featuresets, metrics, status, signin):
        app.include_router(module.router)
    app.add_middleware(SecurityHeaders)
    return app


def install_html_errors(app: FastAPI) -> None:
    """HTML error pages, replacing the services' problem+json handlers."""

    def page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return render(request, "error.html", status_code=status, title=title, message=message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return page(
                request,
                404,
                "Page not found",
                "There is no page at this address. Search for what you need instead.",
            )
        if exc.status_code == 405:
            return page(request, 405, "Not allowed", "This page can only be read (GET).")
        return page(request, exc.status_code, "Request failed", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return page(request, 400, "Bad address", "Part of this address is not valid.")

    @app.exception_handler(ServiceDown)
    async def _down(request: Request, exc: ServiceDown) -> Response:
        note_down(request, exc)
        return page(
            request,
            503,
            f"{exc.label} unavailable",
            f"The {exc.label.lower()} did not answer, so this page cannot be shown.",
        )

    @app.exception_handler(SignInNeeded)
    async def _sign_in(request: Request, exc: SignInNeeded) -> Response:
        return RedirectResponse(signin_url(exc.next_url), status_code=303)

    @app.exception_handler(KeyRejected)
    async def _rejected(request: Request, exc: KeyRejected) -> Response:
        backend: Backend = request.app.state.backend
        if backend.keys_needed:
            return signin.signin_page(
                request,
                here(request),
                f"The {exc.label.lower()} did not accept your key ({exc.detail}). Sign in "
                "with a key it accepts.",
                401,
            )
        return page(
            request,
            503,
            "Reads need a key",
            f"The {exc.label.lower()} asks for an API key for every read, but this UI was "
            "started with reads open (CAIRN_READ_NEEDS_KEY is not true), so it does not ask "
            "visitors for one. Start the UI with CAIRN_READ_NEEDS_KEY=true as well.",
        )

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> Response:
        if exc.status == 404:
            return page(request, 404, "Not found", exc.detail)
        return page(request, 400, "Bad request", exc.detail)

    @app.exception_handler(CairnError)
    async def _cairn(request: Request, exc: CairnError) -> Response:
        return page(request, exc.status, exc.title, exc.detail)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        try:
            return page(
                request,
                500,
                "Something went wrong",
                "The UI hit an unexpected error; it has been logged. Try again, or "
                "go back to the search.",
            )
        except Exception:
            return HTMLResponse("<h1>Something went wrong</h1>", status_code=500)

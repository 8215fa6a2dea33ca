"""The reference server of the search benchmark: a bare FastAPI app on uvicorn.

One async GET route per stored body (``/bare/<kind>`` answers ``<kind>.json`` from the folder in
``BENCH_BARE_BODIES``), so the reference does what any FastAPI endpoint must do — route,
call, send the same bytes — and nothing that Cairn's search adds.

Served by ``python -m uvicorn benchmarks.bare_app:create_app --factory``, like the catalogue:
one worker, uvicorn's default loop and HTTP parser (uvloop and httptools when installed, as
they are with Cairn's ``uvicorn[standard]`` dependency, for both). ``create_plain_app`` is
uvicorn's share alone, with no FastAPI.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send


def _answer(body: bytes) -> Callable[[], Awaitable[Response]]:
    async def handler() -> Response:
        return Response(body, media_type="application/json")

    return handler


def create_app() -> FastAPI:
    folder = Path(os.environ["BENCH_BARE_BODIES"])
    app = FastAPI(title="bare reference")
    for path in sorted(folder.glob("*.json")):
        # POST too: the online benchmark's requests carry a body, which is not read.
        app.add_api_route(f"/bare/{path.stem}", _answer(path.read_bytes()), methods=["GET", "POST"])
    app.add_api_route("/readyz", _answer(b'{"status":"ready"}'), methods=["GET"])
    return app


def create_plain_app() -> ASGIApp:
    """uvicorn's own share of a request: a plain ASGI callable (no FastAPI, no Starlette)
    that answers ``/plain/<kind>`` with ``<kind>.json`` and nothing else (``/readyz`` too).
    Served by ``python -m uvicorn benchmarks.bare_app:create_plain_app --factory``."""
    folder = Path(os.environ["BENCH_BARE_BODIES"])
    answers = {f"/plain/{p.stem}": p.read_bytes() for p in sorted(folder.glob("*.json"))}
    answers["/readyz"] = b'{"status":"ready"}'

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = answers.get(scope["path"])
        status = 200 if body is not None else 404
        body = body if body is not None else b"{}"
        headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app

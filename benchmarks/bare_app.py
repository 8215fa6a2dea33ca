"""The reference server of the search benchmark: a bare FastAPI app on uvicorn.

One async GET route per stored body (``/bare/<kind>`` answers ``<kind>.json`` from the folder in
``BENCH_BARE_BODIES``), so the reference does what any FastAPI endpoint must do — route,
call, send the same bytes — and nothing that Cairn's search adds.

Served by ``python -m uvicorn benchmarks.bare_app:create_app --factory``, like the catalogue:
one worker, uvicorn's default loop and HTTP parser.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response


def _answer(body: bytes) -> Callable[[], Awaitable[Response]]:
    async def handler() -> Response:
        return Response(body, media_type="application/json")

    return handler


def create_app() -> FastAPI:
    folder = Path(os.environ["BENCH_BARE_BODIES"])
    app = FastAPI(title="bare reference")
    for path in sorted(folder.glob("*.json")):
        app.add_api_route(f"/bare/{path.stem}", _answer(path.read_bytes()), methods=["GET"])
    app.add_api_route("/readyz", _answer(b'{"status":"ready"}'), methods=["GET"])
    return app

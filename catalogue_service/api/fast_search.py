"""The search route's hot path: ``GET /api/v1/assets`` answered by plain ASGI in front of
FastAPI's whole middleware stack (``CairnApp.front``).

Search is the catalogue's most frequent request, and most of its server time went to layers
it does not need. A bare FastAPI endpoint spends about two thirds of its CPU in FastAPI and
Starlette (its ``__call__`` and telemetry check, the app body limit, the error middlewares,
routing, the request and response objects) and a third in uvicorn (bench_search). This
handler skips all of those layers for this one route and does itself what they did here:

- the key check is the read guard's own (``KeyChecker``, only when reads need a key), done
  before anything else, as ``CairnRoute`` does; the body (a GET has none to read) is never
  read, so the body limits have nothing to guard;
- parameters are parsed by the route's own hand parser (``parse_query_string`` reads the
  query string as ``parse_search`` reads ``QueryParams``; the FastAPI route never validated
  them either), so a bad value gets the same 422 naming the parameter;
- a ``CairnError`` becomes the same problem+json the app's handler renders; any other error
  gets the app's own 500 problem (``unexpected_error``, logged with its traceback) and is
  raised on to the server, as Starlette's error middleware does;
- metrics count and time it under the route's template (its path), as ``MetricsMiddleware``
  does;
- the answer is the route's bytes (``splice_page``), with the same headers;
- what this handler cannot do itself goes through the whole stack (``CairnApp.generic``),
  where the FastAPI route answers with the same bytes: other methods, a request with an
  ``Origin`` header when CORS is configured (the CORS middleware adds its headers), and every
  request while FastAPI's OpenTelemetry instrumentation is configured (it traces them).

The FastAPI route stays registered: it documents the route in OpenAPI and answers what this
handler passes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from cairn.errors import CairnError
from cairn.web import HttpMetrics, KeyChecker, problem_response, unexpected_error
from catalogue_service.api.search_params import parse_query_string
from catalogue_service.service import Catalogue, splice_page

PATH = "/api/v1/assets"
log = logging.getLogger("cairn.web")


class SearchFastPath:
    def __init__(
        self,
        generic: ASGIApp,
        catalogue: Catalogue,
        keys: KeyChecker,
        metrics: HttpMetrics,
        cors: bool,
        telemetry: Callable[[], bool],
    ) -> None:
        self.generic = generic
        self.catalogue = catalogue
        self.keys = keys
        self.metrics = metrics
        self.cors = cors
        self.telemetry = telemetry
        # The labelled children of the commonest outcome, looked up once.
        self._ok = metrics.requests.labels(metrics.service, "GET", PATH, "200")
        self._latency = metrics.latency.labels(metrics.service, PATH)

    def _passes_on(self, scope: Scope) -> bool:
        if scope["method"] != "GET":
            return True
        if self.cors and _header(scope, b"origin") is not None:
            return True
        return self.telemetry()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._passes_on(scope):
            await self.generic(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        try:
            try:
                if self.keys.read_needs_key:
                    self.keys.check(_header(scope, b"authorization"))
                query = parse_query_string(scope["query_string"])
                body = splice_page(await self.catalogue.search(query, typos=True))
            except CairnError as exc:
                if exc.status >= 500:
                    log.error("GET %s failed: %s", PATH, exc.detail)
                status = exc.status
                await problem_response(exc.status, exc.problem(PATH))(scope, receive, send)
                return
            except Exception:
                await unexpected_error("GET", PATH)(scope, receive, send)
                raise
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-length", str(len(body)).encode()),
                        (b"content-type", b"application/json"),
                    ],
                }
            )
            status = 200
            await send({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - start
            if status == 200:
                self._ok.inc()
                self._latency.observe(elapsed)
            else:
                self.metrics.record("GET", PATH, status, elapsed)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None

"""Hot routes answered by plain ASGI in front of FastAPI's whole middleware stack
(``CairnApp.front``): what every such route does, whatever it answers.

A bare FastAPI endpoint spends about three quarters of its CPU in FastAPI and Starlette (its
``__call__`` and telemetry check, the body limits, the error middlewares, routing, the request
and response objects) and a quarter in uvicorn (bench_search: 0.10 against 0.025 ms a request
for a plain ASGI callable sending the same bytes). A front route skips those layers for its
one path and does itself what they did there:

- a POST declaring a length past the app's limit for the path gets the same 413 problem
  ``BodyLimitMiddleware`` answers, before anything else (that middleware runs first);
- the key check is the read guard's own (``KeyChecker``, only when reads need a key), done
  before the body is read, as ``CairnRoute`` does; the body is then read up to the limit (a
  chunked body past it is the same 413). A client gone before its body was whole is counted
  as 499 (as proxies log it) and not logged as an error: there is no one left to answer;
- a ``CairnError`` becomes the same problem+json the app's handler renders; any other error
  gets the app's own 500 problem (``unexpected_error``, logged with its traceback) and is
  raised on to the server, as Starlette's error middleware does;
- metrics count and time it under the route's template (its path), as ``MetricsMiddleware``
  does; with CORS configured every answer carries ``Vary: Origin``, as the CORS middleware
  adds it to answers to requests without an ``Origin``;
- what a front route cannot do itself goes through the whole stack (``CairnApp.generic``),
  where the FastAPI route answers with the same bytes: other methods, a request with an
  ``Origin`` header, a browser's (the CORS middleware adds its headers, and
  ``CrossSiteWriteGuard`` refuses a POST from another site), and every request while
  FastAPI's OpenTelemetry instrumentation is configured (it traces them).

The FastAPI route stays registered: it documents the route in OpenAPI and answers what the
front route passes on.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from starlette.types import Receive, Scope, Send

from cairn.errors import CairnError
from cairn.web import body_too_large, problem_response, unexpected_error

if TYPE_CHECKING:
    from cairn.web import CairnApp

log = logging.getLogger("cairn.web")


class ClientGone(Exception):
    """The client disconnected before its request's body was whole: nothing to answer."""


class FrontRoute(ABC):
    """One method on one path, answered in front of the stack by ``answer``'s JSON bytes."""

    def __init__(self, app: CairnApp, path: str, method: str) -> None:
        self.generic = app.generic
        self.keys = app.state.keys
        self.metrics = app.state.http_metrics
        self.telemetry = app.telemetry_enabled
        self.cors = app.state.cors
        self.path = path
        self.method = method
        self.body_limit: int = app.state.body_limit_for(path)
        self._vary = {"vary": "Origin"} if self.cors else None
        # The labelled children of the commonest outcome, looked up once.
        metrics = self.metrics
        self._ok = metrics.requests.labels(metrics.service, method, path, "200")
        self._latency = metrics.latency.labels(metrics.service, path)

    @abstractmethod
    async def answer(self, scope: Scope, body: bytes) -> bytes:
        """The 200 answer's JSON; a ``CairnError`` for a 4xx or 5xx problem."""

    def _passes_on(self, scope: Scope) -> bool:
        if scope["method"] != self.method:
            return True
        if _header(scope, b"origin") is not None:
            return True  # a browser's: CORS headers, and the cross-site write guard
        return self.telemetry()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._passes_on(scope):
            await self.generic(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        try:
            try:
                posted = self.method == "POST"
                if posted:
                    self._check_declared_length(scope)
                if self.keys.read_needs_key:
                    self.keys.check(_header(scope, b"authorization"))
                body = await self._body(receive) if posted else b""
                answer = await self.answer(scope, body)
            except CairnError as exc:
                if exc.status >= 500:
                    log.error("%s %s failed: %s", self.method, self.path, exc.detail)
                status = exc.status
                problem = problem_response(exc.status, exc.problem(self.path), self._vary)
                await problem(scope, receive, send)
                return
            except ClientGone:
                status = 499  # as proxies log it: nobody is left to answer
                return
            except Exception:
                await unexpected_error(self.method, self.path)(scope, receive, send)
                raise
            headers = [
                (b"content-length", str(len(answer)).encode()),
                (b"content-type", b"application/json"),
            ]
            if self.cors:
                headers.append((b"vary", b"Origin"))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            status = 200
            await send({"type": "http.response.body", "body": answer})
        finally:
            elapsed = time.perf_counter() - start
            if status == 200:
                self._ok.inc()
                self._latency.observe(elapsed)
            else:
                self.metrics.record(self.method, self.path, status, elapsed)

    def _check_declared_length(self, scope: Scope) -> None:
        declared = _header(scope, b"content-length")
        if declared is None:
            return
        try:
            length = int(declared)
        except ValueError:
            return  # the server's parser refuses such a request before it gets here
        if length > self.body_limit:
            raise body_too_large(self.body_limit)

    async def _body(self, receive: Receive) -> bytes:
        limit = self.body_limit
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise body_too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None

"""What every Cairn HTTP service shares: problem+json errors, the body cap, API keys (checked
before a body is read), JSON parsing that refuses text that is not Unicode, Prometheus metrics,
the health routes and the API documentation pages (``cairn.openapi``).

Middlewares here are plain ASGI (not ``BaseHTTPMiddleware``) because they sit on every request
of latency-sensitive endpoints.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes, urlsplit

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cairn.errors import (
    BadRequest,
    CairnError,
    Forbidden,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
)
from cairn.openapi import (
    GUARD_EXTENSION,
    allowed_methods,
    build_openapi,
    mount_docs,
    problems,
    shared_responses,
)
from cairn.settings import Settings

log = logging.getLogger("cairn.web")
M = TypeVar("M", bound=BaseModel)

PROBLEM_JSON = "application/problem+json"
TELEMETRY_RECHECK_SECONDS = 1.0


def problem_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


def _field_path(loc: tuple[Any, ...]) -> str:
    # Drop FastAPI's "body"/"query" prefix: users think in field names.
    parts = [str(p) for p in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    return ".".join(parts) or "(root)"


def _not_json_entry(reason: str) -> dict[str, str]:
    return {"field": "(body)", "message": f"is not valid JSON: {reason}"}


def _error_entry(error: Any) -> dict[str, str]:
    if error.get("type") == "json_invalid":
        # FastAPI puts the parser's character offset where a field path would be.
        return _not_json_entry((error.get("ctx") or {}).get("error", ""))
    return {
        "field": _field_path(tuple(error.get("loc", ()))),
        "message": str(error.get("msg", "")).removeprefix("Value error, "),
    }


def _fix_these(errors: list[dict[str, str]]) -> InvalidRequest:
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    if len(errors) > 5:
        summary += f"; and {len(errors) - 5} more"
    return InvalidRequest(f"Fix these fields and send again: {summary}", errors=errors)


def invalid_request(exc: RequestValidationError | ValidationError) -> InvalidRequest:
    """A validation failure as a 422 whose detail lists the fields to fix."""
    return _fix_these([_error_entry(e) for e in exc.errors()])


def body_not_json(reason: str) -> InvalidRequest:
    """The 422 for a body the JSON parser refused: the same problem, whichever parser read it
    (FastAPI's for routes with a body model, ``parse_json`` for routes that parse by hand)."""
    return _fix_these([_not_json_entry(reason)])


def body_not_shaped(expected: str, field: str = "(body)") -> InvalidRequest:
    """The 422 for a body that is JSON but not of the shape a route that parses by hand takes
    (an array where an object is expected, say): what a route with a body model answers,
    naming what was expected."""
    return _fix_these([{"field": field, "message": f"must be {expected}"}])


def _not_json(request: Request, exc: RequestValidationError) -> InvalidRequest | None:
    """The body was refused whole because it was not sent as JSON: FastAPI parses a body as
    JSON only under a JSON content type (a guard against cross-site form posts), and what
    ``curl -d`` sends by default is a form's."""
    sent = request.headers.get("content-type", "")
    media = sent.split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return None
    if not any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors()):
        return None
    shown = f"content-type {sent!r}" if sent else "no content-type"
    message = f"the body was sent with {shown}; send JSON with content-type: application/json"
    return InvalidRequest(
        f"Fix this and send again: {message} (curl: -H 'content-type: application/json').",
        errors=[{"field": "(body)", "message": message}],
    )


def validated(model: type[M], data: Any) -> M:
    """``model`` validated from ``data``; failures become a 422 listing the fields to fix."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc) from None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CairnError)
    async def _cairn(request: Request, exc: CairnError) -> Response:
        if exc.status >= 500:
            log.error("%s %s failed: %s", request.method, request.url.path, exc.detail)
        return problem_response(exc.status, exc.problem(request.url.path))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        problem = _not_json(request, exc) or invalid_request(exc)
        return problem_response(422, problem.problem(request.url.path))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route {request.method} {request.url.path}; see /docs for the API."
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs."
        body = {
            "type": "about:blank",
            "title": detail if exc.status_code >= 500 else _reason(exc.status_code),
            "status": exc.status_code,
            "detail": detail,
            "instance": request.url.path,
        }
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            allowed = allowed_methods(request.app, request.url.path)
            if allowed:
                headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
                headers["allow"] = ", ".join(allowed)
        return problem_response(exc.status_code, body, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return unexpected_error(request.method, request.url.path)


def unexpected_error(method: str, path: str) -> Response:
    """The 500 answer to an error nothing handled, logged with its traceback (call it from
    inside the ``except`` block)."""
    log.exception("unhandled error on %s %s", method, path)
    body = {
        "type": "about:blank",
        "title": "Internal error",
        "status": 500,
        "detail": "The server hit an unexpected error; it has been logged.",
        "instance": path,
    }
    return problem_response(500, body)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# Body limits of their own, by path: (a pattern the whole path matches, its limit).
PathLimits = tuple[tuple[re.Pattern[str], int], ...]


def path_limits(limits: dict[str, int] | None) -> PathLimits:
    """``limits`` (a regular expression per path, its body limit) compiled."""
    return tuple((re.compile(pattern), limit) for pattern, limit in (limits or {}).items())


class BodyLimitMiddleware:
    """Answers 413 before reading past ``limit`` bytes of a request body."""

    def __init__(self, app: ASGIApp, limit: int, limits_by_path: PathLimits = ()):
        self.app = app
        self.limit = limit
        self.limits_by_path = limits_by_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        limit = path_body_limit(scope["path"], self.limit, self.limits_by_path)
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > limit:
                    await self._reject(scope, send, limit)
                    return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._reject(scope, send, limit)

    @staticmethod
    async def _reject(scope: Scope, send: Send, limit: int) -> None:
        body = orjson.dumps(body_too_large(limit).problem(scope["path"]))
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


def path_body_limit(path: str, limit: int, limits_by_path: PathLimits) -> int:
    """The body limit of ``path``: that of the first pattern it matches whole, else ``limit``."""
    for pattern, path_limit in limits_by_path:
        if pattern.fullmatch(path):
            return path_limit
    return limit


def body_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than {limit} bytes; split it into smaller requests."
    )


class HttpMetrics:
    """The request counter and latency histogram of one service, per route template (never
    per raw path); shared by ``MetricsMiddleware`` and the routes answered in front of the
    middleware stack (``CairnApp.front``)."""

    def __init__(self, registry: CollectorRegistry, service: str):
        self.requests = Counter(
            "cairn_http_requests",
            "HTTP requests served",
            ["service", "method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "cairn_http_request_seconds",
            "HTTP request latency",
            ["service", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.service = service

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(self.service, method, route, str(status)).inc()
        self.latency.labels(self.service, route).observe(seconds)


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def from_another_site(headers: Headers) -> bool:
    """Whether a browser sent this request from a page of another origin.

    "same-site" counts too: a sibling host (``evil.example.com`` beside ``cairn.example.com``,
    another port of ``localhost``) may be anyone's. A browser without ``Sec-Fetch-Site`` still
    sends ``Origin`` with a POST: its host is compared with the one asked (not its scheme,
    which a proxy ending TLS changes). curl and client libraries send neither.
    """
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")  # "none": the user's own doing
    origin = headers.get("origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc.lower() != headers.get("host", "").lower()


class CrossSiteWriteGuard:
    """Refuses a write a browser sends from another site (403), unless CORS allows its origin.

    Without keys (the default) anyone who can reach a service may write to it, and a browser
    is one of them: a page on any site could POST a `text/plain` body, which browsers send
    cross-site without asking first, to a service on the user's machine.
    """

    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin in self.allowed or not from_another_site(headers):
            await self.app(scope, receive, send)
            return
        refused = Forbidden(
            f"A page on {origin or 'another site'} may not send {scope['method']} requests "
            "here: writes from other sites are refused. To allow that origin, add it to "
            "CAIRN_CORS_ORIGINS; scripts and client libraries, which send no Origin, are not "
            "affected."
        )
        await problem_response(403, refused.problem(scope["path"]))(scope, receive, send)


class MetricsMiddleware:
    """Counts requests and times them per route template (never per raw path)."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            self.metrics.record(scope["method"], route, status, time.perf_counter() - start)


def _not_utf8(query: bytes) -> str | None:
    """Why the percent-decoded ``query`` is not UTF-8, or None when it is."""
    try:
        unquote_to_bytes(query).decode()
    except UnicodeDecodeError as exc:
        return f"{exc.reason} at byte {exc.start} once decoded"
    return None


class CairnApp(FastAPI):
    """FastAPI, with a few hot routes answered in front of its middleware stack.

    ``front`` maps a path to a plain ASGI handler that answers it instead of the stack (the
    handler hands a request it does not take on to ``generic``, the whole stack). Such a
    handler does for itself what the stack's layers would have done on its route: see
    ``cairn.front``.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.front: dict[str, ASGIApp] = {}
        # A query string that is not UTF-8 is a 422 problem; the web UI, whose errors are
        # pages, turns this off and searches for what Starlette decodes.
        self.refuse_bad_queries = True
        self._otel_on = False
        self._otel_checked_at = -TELEMETRY_RECHECK_SECONDS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["method"] == "HEAD":
                # FastAPI's routes answer GET only, though HTTP asks every GET resource to
                # answer HEAD too (and a 405 says it does): HEAD is the GET, headers only.
                await self({**scope, "method": "GET"}, receive, _without_body(send))
                return
            # Starlette decodes a query's bad UTF-8 as U+FFFD, so `q=%ff` would search for a
            # character nobody typed: refused here, before the front routes and the stack.
            query = scope["query_string"]
            if b"%" in query and self.refuse_bad_queries and (bad := _not_utf8(query)):
                await self._refuse_query(scope, receive, send, bad)
                return
            handler = self.front.get(scope["path"])
            if handler is not None:
                await handler(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _refuse_query(self, scope: Scope, receive: Receive, send: Send, why: str) -> None:
        detail = (
            f"The query string is not valid UTF-8 ({why}); percent-encode the UTF-8 bytes of "
            "each character, as a browser or `curl --data-urlencode` does."
        )
        response = problem_response(422, InvalidRequest(detail).problem(scope["path"]))
        await response(scope, receive, send)

    async def generic(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request through FastAPI's whole stack: middlewares, routing, handlers."""
        await super().__call__(scope, receive, send)

    def telemetry_enabled(self) -> bool:
        """Whether FastAPI's own OpenTelemetry instrumentation traces requests (a provider was
        configured); front handlers leave requests to the stack then. Asking costs about as
        much as a small request's routing, and OpenTelemetry's global providers are set once
        and never unset, so a yes is kept and a no is asked again after a second."""
        if not self._otel_on:
            now = time.monotonic()
            if now - self._otel_checked_at >= TELEMETRY_RECHECK_SECONDS:
                self._otel_checked_at = now
                native = getattr(self, "_native_telemetry", None)
                self._otel_on = bool(native is not None and native.enabled())
        return self._otel_on


def _without_body(send: Send) -> Send:
    """``send`` for a HEAD request: the GET's status and headers (its content-length too, as
    HTTP wants), no body bytes."""

    async def headers_only(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {**message, "body": b""}
        await send(message)

    return headers_only


class KeyChecker:
    """Bearer keys compared in constant time; keys are never logged or echoed."""

    def __init__(self, settings: Settings):
        self._keys = [k.get_secret_value().encode() for k in settings.api_keys]
        self.read_needs_key = settings.read_needs_key

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> None:
        if not self._keys:
            return
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthorized(
                "This server needs an API key for this request: send "
                "'Authorization: Bearer <key>' (the keys are set with CAIRN_API_KEYS)."
            )
        given = authorization[7:].strip().encode()
        ok = False
        for key in self._keys:
            # Compare against every key so timing does not reveal which one matched.
            ok |= hmac.compare_digest(given, key)
        if not ok:
            raise Unauthorized("The API key is not valid; check the key you were given.")


# OpenAPI text of the `label=k:v` filter, documented by hand on the hand-parsed search routes.
LABEL_PARAMETER = {
    "name": "label",
    "in": "query",
    "schema": {"type": "array", "items": {"type": "string"}},
    "description": "key:value, repeat for AND",
    "style": "form",
    "explode": True,
}


# Set in the request scope once CairnRoute has checked the key, so the guard dependency that
# runs again later (after the body is read) does not compare the key twice.
_KEY_CHECKED = "cairn.key_checked"


async def write_guard(request: Request) -> None:
    """FastAPI dependency for every route that changes data (async: no threadpool hop)."""
    if not request.scope.get(_KEY_CHECKED):
        request.app.state.keys.check(request.headers.get("authorization"))


async def read_guard(request: Request) -> None:
    keys: KeyChecker = request.app.state.keys
    if keys.read_needs_key and not request.scope.get(_KEY_CHECKED):
        keys.check(request.headers.get("authorization"))


# orjson's messages for text that is not valid Unicode (lone surrogates, bad UTF-8).
_UNICODE_ERRORS = ("surrogate", "UTF-8")
# A \uD800-\uDFFF escape: only bodies holding one need the (orjson) surrogate check.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


# Every digit as "0", everything else as " ": a run of 20 digits is then found by a plain
# substring search, about ten times quicker than a regular expression over a bulk body.
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_TWENTY_DIGITS = b"0" * 20
# What a JSON number can follow (besides the start of the text and a minus sign).
_BEFORE_A_NUMBER = frozenset(b"[:, \t\r\n")


# Both parsers stop at some depth (orjson at 1024 levels, the standard library where Python's
# recursion limit falls): the reason given either way, as a parser's own words name no fix.
_TOO_DEEP = "the body nests arrays or objects too deeply (hundreds of levels); send flatter JSON"


def parse_json(raw: bytes) -> Any:
    """``raw`` parsed with orjson, which refuses lone surrogates and invalid UTF-8 outright.

    Text that is not valid Unicode is a 422 (the value could never be stored or sent back);
    anything else the parser refuses is the 422 a route with a body model answers
    (``body_not_json``), so a client sees one answer to one mistake on every route.
    """
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in exc.msg:
            raise body_not_json(_TOO_DEEP) from exc
        if any(marker in exc.msg for marker in _UNICODE_ERRORS):
            raise InvalidRequest(
                f"The request body holds text that is not valid Unicode ({exc}); send UTF-8 "
                "text without lone surrogate escapes such as \\ud800.",
                errors=[{"field": "(body)", "message": str(exc)}],
            ) from exc
        raise body_not_json(str(exc)) from exc
    if _has_long_integer(raw):
        # orjson reads an integer beyond 64 bits as a float, silently rounding it; the standard
        # library keeps it exact, so validation refuses it with its field, as on the routes
        # FastAPI parses. Only bodies with such a number pay for the second parse.
        try:
            return json.loads(raw)
        except RecursionError as exc:  # shallower than orjson's limit, deeper than Python's
            raise body_not_json(_TOO_DEEP) from exc
    return parsed


def _has_long_integer(raw: bytes) -> bool:
    """Whether ``raw`` (JSON) may hold an integer of 20 digits or more: a run of 20 digits
    that begins a number, i.e. comes after ``[``, ``:``, ``,``, whitespace or the start, with
    at most a minus sign between. Runs inside text mostly come after letters (one crawled id in
    about 3,000 has one), and a bulk body with one was parsed twice for it."""
    zeros = raw.translate(_DIGITS_AS_ZERO)
    at = zeros.find(_TWENTY_DIGITS)
    while at != -1:
        before = at - 1
        if before >= 0 and raw[before] == 0x2D:  # "-"
            before -= 1
        if before < 0 or raw[before] in _BEFORE_A_NUMBER:
            return True
        end = zeros.find(b" ", at)  # the run's end: every non-digit became a space
        if end == -1:
            return False
        at = zeros.find(_TWENTY_DIGITS, end)
    return False


async def json_body(request: Request) -> Any:
    """The request body parsed with ``parse_json``."""
    return parse_json(await request.body())


class _UnicodeCheckedRequest(Request):
    """FastAPI's body parsing (the standard library's, exact for big integers), refusing lone
    surrogate escapes, which json.loads lets through into strings no encoder can write."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            raw = await self.body()
            if _SURROGATE_ESCAPE.search(raw):
                try:
                    orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    # A json.JSONDecodeError: FastAPI answers 422 with the parser's reason.
                    if "surrogate" in exc.msg:
                        raise
            try:
                self._json = json.loads(raw)
            except UnicodeDecodeError as exc:
                raise json.JSONDecodeError(
                    f"the body is not UTF-8 text ({exc.reason} at byte {exc.start})", "", 0
                ) from exc
            except RecursionError as exc:
                # FastAPI would answer "There was an error parsing the body", which says
                # nothing about what to change.
                raise json.JSONDecodeError(_TOO_DEEP, "", 0) from exc
        return self._json


class CairnRoute(APIRoute):
    """The route class of every API router of the services.

    A route guarded by ``write_guard`` or ``read_guard`` checks the key before FastAPI reads
    and parses the body, so a client without a key gets its 401 at once and cannot make the
    server parse a 16 MiB body first. JSON bodies with lone surrogates are refused with a 422
    (``_UnicodeCheckedRequest``). The route's OpenAPI entry gets the responses the shared
    plumbing can give (``cairn.openapi.shared_responses``) and its guard, which
    ``cairn.openapi.build_openapi`` turns into a security requirement where keys are needed.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        guard = self._guard()
        dependant = self.dependant
        has_parameters = bool(
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or self.body_field
        )
        self.responses = {
            **shared_responses(
                guard=guard, methods=self.methods or (), has_parameters=has_parameters
            ),
            **self.responses,
        }
        if guard is not None:
            self.openapi_extra = {**(self.openapi_extra or {}), GUARD_EXTENSION: guard}

    def _guard(self) -> str | None:
        calls = {d.dependency for d in self.dependencies}
        if write_guard in calls:
            return "write"
        if read_guard in calls:
            return "read"
        return None

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        guard = {"write": write_guard, "read": read_guard}.get(self._guard() or "")

        async def route(request: Request) -> Response:
            if guard is not None:
                await guard(request)
                request.scope[_KEY_CHECKED] = True
            return await handler(_UnicodeCheckedRequest(request.scope, request.receive))

        return route


# Each label filter is a clause of a search: a thousand overran SQLite's expression depth.
MAX_LABEL_FILTERS = 100


def check_label_count(count: int) -> None:
    if count > MAX_LABEL_FILTERS:
        raise BadRequest(f"{count} labels are given; send at most {MAX_LABEL_FILTERS}.")


def parse_labels(values: list[str]) -> list[tuple[str, str]]:
    """``label=key:value`` query parameters as pairs (repeated means AND)."""
    check_label_count(len(values))
    pairs = []
    for value in values:
        key, sep, val = value.partition(":")
        if not sep or not key:
            raise BadRequest(
                f"label={value!r} must look like key:value, for example label=domain:retail."
            )
        pairs.append((key, val))
    return pairs


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in if_none_match.split(","))


# Raises when the service cannot serve requests; returns what it cannot do meanwhile, if any.
ReadyCheck = Callable[[], Awaitable[str | None]]


def meta_guard(request: Request, kind: str) -> None:
    """``/metrics`` (kind "metrics") and the API documentation (kind "docs") need a key when
    keys are set, unless CAIRN_OPEN_METRICS or CAIRN_OPEN_DOCS opens them."""
    settings: Settings = request.app.state.settings
    if not (settings.open_metrics if kind == "metrics" else settings.open_docs):
        request.app.state.keys.check(request.headers.get("authorization"))


def health_router(ready: ReadyCheck) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="The backend answers", responses=problems(503))
    async def readyz() -> Response:
        try:
            degraded = await ready()
        except Exception as exc:
            body = {
                "type": "https://cairn.dev/problems/not-ready",
                "title": "Not ready",
                "status": 503,
                "detail": f"The backend does not answer: {exc}",
            }
            return problem_response(503, body)
        body = (
            {"status": "ready"} if degraded is None else {"status": "ready", "degraded": degraded}
        )
        return Response(orjson.dumps(body), media_type="application/json")

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        meta_guard(request, "metrics")
        data = generate_latest(request.app.state.metrics_registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return router


def build_app(
    *,
    title: str,
    service: str,
    settings: Settings,
    ready: ReadyCheck,
    lifespan: Any = None,
    body_limits: dict[str, int] | None = None,
    guard_writes: bool = True,
) -> CairnApp:
    """A FastAPI app with Cairn's shared plumbing; the caller adds its routers.
    ``body_limits``: a body limit (bytes) by path, each a regular expression the whole path
    matches, for routes whose bodies may exceed ``max_body_bytes`` (uploads).
    ``guard_writes``: refuse writes from other sites' pages (``CrossSiteWriteGuard``)."""
    from cairn import __version__

    # The documentation routes are Cairn's own (cairn.openapi): local assets, and a key check.
    app = CairnApp(
        title=title,
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.keys = KeyChecker(settings)
    app.openapi = lambda: build_openapi(  # type: ignore[method-assign]
        app, keys_enabled=app.state.keys.enabled, read_needs_key=settings.read_needs_key
    )
    mount_docs(app, lambda request: meta_guard(request, "docs"))
    registry = CollectorRegistry()
    app.state.metrics_registry = registry
    install_error_handlers(app)
    app.include_router(health_router(ready))
    limits = path_limits(body_limits)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes, limits_by_path=limits)
    # The same limits for the routes answered in front of the stack (cairn.front).
    app.state.body_limit_for = partial(
        path_body_limit, limit=settings.max_body_bytes, limits_by_path=limits
    )
    if guard_writes:
        app.add_middleware(CrossSiteWriteGuard, allowed_origins=settings.cors_origins)
    app.state.http_metrics = HttpMetrics(registry, service)
    app.add_middleware(MetricsMiddleware, metrics=app.state.http_metrics)
    app.state.cors = bool(settings.cors_origins)
    if settings.cors_origins:
        # Browsers on these origins (e.g. Mastro's UI served elsewhere) may call the API.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    return app

"""What both services' clients share: the request description, errors, sync and async senders.

Each client method builds a ``Call`` (method, path, parameters, body, how to read the answer)
once; ``SyncTransport`` and ``AsyncTransport`` send it. So the sync and async clients cannot
drift apart.

The async clients also keep the ``Health`` of their service (what the last call or ``probe``
saw), can give up quickly (``connect_timeout``, ``retries``) and can send another key per
caller (``with_api_key``): what a server-side caller such as the web UI needs.

CairnError (cairn.errors)
├── the class of the problem+json status (NotFound, Unauthorized, ...; 5xx keeps its status)
└── Unavailable
    ├── ServiceUnreachable   nothing answered (refused, dropped, timed out)
    └── BadAnswer            an answer the client cannot read (not JSON, not the model)
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Self, TypeVar

import httpx

from cairn import __version__
from cairn.errors import (
    BadRequest,
    CairnError,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from cairn.redact import redact_url

T = TypeVar("T")

ERRORS: dict[int, type[CairnError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    406: NotAcceptable,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    503: Unavailable,
}
CHUNK = 1024 * 1024


class ServiceUnreachable(Unavailable):
    """The service did not answer at all (not running, wrong URL, network down).

    ``reason`` says it in a few words, for a status line.
    """

    title = "Service unreachable"

    def __init__(self, detail: str, reason: str = "did not answer", **kwargs: Any):
        super().__init__(detail, **kwargs)
        self.reason = reason


class BadAnswer(Unavailable):
    """The service answered 2xx with something the client cannot read."""

    title = "Unreadable answer"
    status = 502

    def __init__(self, detail: str, reason: str = "gave an answer that cannot be read"):
        super().__init__(detail)
        self.reason = reason


@dataclass(slots=True)
class Health:
    """What a client last saw of its service; ``ok`` is None until it first asked."""

    ok: bool | None = None
    detail: str = ""
    checked_at: float = 0.0  # time.monotonic() of the last answer or failure
    latency_ms: float | None = None

    @property
    def state(self) -> str:
        return "unknown" if self.ok is None else ("up" if self.ok else "down")

    def mark(self, ok: bool, detail: str = "", latency_ms: float | None = None) -> None:
        self.ok, self.detail, self.checked_at = ok, detail, time.monotonic()
        if latency_ms is not None:
            self.latency_ms = latency_ms


@dataclass(slots=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: list[tuple[str, Any]] = field(default_factory=list)
    json: Any = None
    content: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    ok: tuple[int, ...] = (200,)


def raise_for_problem(response: httpx.Response, ok: tuple[int, ...] = (200,)) -> None:
    """Raises the ``cairn.errors`` class of a problem+json answer (its detail says what to fix)."""
    if response.status_code in ok:
        return
    detail = f"HTTP {response.status_code} from {response.request.url}"
    errors: list[dict[str, Any]] = []
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = str(body.get("detail") or body.get("title") or detail)
        errors = body.get("errors") or []
    error = ERRORS.get(response.status_code, CairnError)(detail, errors=errors)
    error.status = response.status_code
    raise error


def headers(api_key: str | None, service: str) -> dict[str, str]:
    out = {"user-agent": f"cairn-client/{__version__} ({service})"}
    if api_key:
        out["authorization"] = f"Bearer {api_key}"
    return out


class SyncTransport:
    def __init__(self, base_url: str, headers: dict[str, str], timeout: float, **kwargs: Any):
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, **kwargs)

    def send(self, call: Call[T]) -> T:
        try:
            response = self.http.request(
                call.method,
                call.path,
                params=call.params or None,
                json=call.json,
                content=call.content,
                headers=call.headers,
            )
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc) from exc
        raise_for_problem(response, call.ok)
        return call.read(response)

    def stream_to(self, call: Call[Any], sink: Callable[[bytes], object]) -> httpx.Headers:
        """Sends ``call`` and hands the answer's body to ``sink`` piece by piece."""
        try:
            with self.http.stream(
                call.method,
                call.path,
                params=call.params or None,
                content=call.content,
                headers=call.headers,
            ) as response:
                if response.status_code not in call.ok:
                    response.read()
                    raise_for_problem(response, call.ok)
                for chunk in response.iter_bytes(CHUNK):
                    sink(chunk)
                return response.headers
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc) from exc

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    """Sends ``Call``s and records the service's ``Health`` from every answer.

    ``retries``: further attempts of a GET whose connection dropped (after a short random
    pause); a timeout is never retried, since a slow service would only double the wait.
    """

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        timeout: float,
        *,
        connect_timeout: float | None = None,
        retries: int = 0,
        **kwargs: Any,
    ):
        self.base_url = base_url.rstrip("/")
        # The key goes on each request, not on the pool, so with_api_key can share the pool.
        headers = dict(headers)
        key = headers.pop("authorization", None)
        self.auth = {"authorization": key} if key else {}
        limit = httpx.Timeout(timeout, connect=connect_timeout or timeout)
        self.http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=limit, **kwargs
        )
        self.retries = max(0, retries)
        self.health = Health()

    def with_api_key(self, api_key: str | None) -> AsyncTransport:
        """This transport (same pool, same health) sending ``api_key``; None sends no key."""
        twin = copy.copy(self)
        twin.auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
        return twin

    async def send(self, call: Call[T]) -> T:
        response, latency = await self._answer(call)
        try:
            raise_for_problem(response, call.ok)
        except CairnError as exc:
            if exc.status >= 500:
                self.health.mark(False, f"answered {exc.status}: {exc.detail[:500]}", latency)
            else:
                self.health.mark(True, "", latency)  # a refusal is still an answer
            raise
        try:
            result = call.read(response)
        except ValueError as exc:  # JSON, pydantic and Arrow errors are all ValueErrors
            error = BadAnswer(
                f"{redact_url(self.base_url)}{call.path} answered with something that cannot "
                f"be read ({type(exc).__name__})"
            )
            self.health.mark(False, error.reason, latency)
            raise error from exc
        self.health.mark(True, "", latency)
        return result

    async def _answer(self, call: Call[Any]) -> tuple[httpx.Response, float]:
        """The answer to ``call`` and its latency in ms; a dropped GET is retried."""
        attempts = 1 + (self.retries if call.method == "GET" else 0)
        attempt = 1
        while True:
            start = time.perf_counter()
            try:
                response = await self.http.request(
                    call.method,
                    call.path,
                    params=call.params or None,
                    json=call.json,
                    content=call.content,
                    headers={**self.auth, **call.headers},
                )
                return response, (time.perf_counter() - start) * 1000
            except httpx.TransportError as exc:
                if attempt >= attempts or isinstance(exc, httpx.TimeoutException):
                    error = _unreachable(self.base_url, exc)
                    self.health.mark(False, error.reason)
                    raise error from exc
            attempt += 1
            await asyncio.sleep(random.uniform(0.02, 0.1))

    async def probe(self, timeout: float = 1.5) -> Health:
        """Asks ``/readyz`` (no key needed) and records the answer."""
        start = time.perf_counter()
        try:
            response = await self.http.get("/readyz", timeout=timeout)
        except httpx.TransportError as exc:
            self.health.mark(False, _unreachable(self.base_url, exc).reason)
            return self.health
        latency = (time.perf_counter() - start) * 1000
        if response.status_code == 200:
            self.health.mark(True, "ready", latency)
        else:
            self.health.mark(False, f"not ready: {_short_detail(response)}", latency)
        return self.health

    async def stream_to(
        self, call: Call[Any], sink: Callable[[bytes], Awaitable[object]]
    ) -> httpx.Headers:
        """Sends ``call`` and hands the answer's body to ``sink`` piece by piece."""
        start = time.perf_counter()
        try:
            async with self.http.stream(
                call.method,
                call.path,
                params=call.params or None,
                headers={**self.auth, **call.headers},
            ) as response:
                latency = (time.perf_counter() - start) * 1000
                if response.status_code not in call.ok:
                    await response.aread()
                    failed = response.status_code >= 500  # a refusal is still an answer
                    reason = f"answered {response.status_code}: {_short_detail(response)}"
                    self.health.mark(not failed, reason if failed else "", latency)
                    raise_for_problem(response, call.ok)
                async for chunk in response.aiter_bytes(CHUNK):
                    await sink(chunk)
                self.health.mark(True, "", latency)
                return response.headers
        except httpx.TransportError as exc:
            error = _unreachable(self.base_url, exc)
            self.health.mark(False, error.reason)
            raise error from exc

    async def aclose(self) -> None:
        await self.http.aclose()


class AsyncServiceClient:
    """What both async clients share: health, probing, a per-caller key.

    Their constructors take ``timeout`` (seconds to wait for an answer), ``connect_timeout``
    (seconds to connect; default ``timeout``) and ``retries`` (see ``AsyncTransport``), so a
    caller with a person waiting can give up quickly and say so.
    """

    _t: AsyncTransport

    @property
    def base_url(self) -> str:
        return self._t.base_url

    @property
    def health(self) -> Health:
        """What the last call or probe saw of the service."""
        return self._t.health

    async def probe(self, timeout: float = 1.5) -> Health:
        """Checks the service's ``/readyz`` within ``timeout`` seconds."""
        return await self._t.probe(timeout)

    def with_api_key(self, api_key: str | None) -> Self:
        """This client sending ``api_key`` instead (None: no key); it shares the connections
        and the health, so closing either closes both."""
        twin = copy.copy(self)
        twin._t = self._t.with_api_key(api_key)
        return twin


def _unreachable(base_url: str, exc: Exception) -> ServiceUnreachable:
    if isinstance(exc, httpx.TimeoutException):
        reason = "did not answer in time"
    elif isinstance(exc, httpx.ConnectError):
        reason = "refused the connection (is it running?)"
    else:
        reason = f"the connection failed ({type(exc).__name__})"
    return ServiceUnreachable(
        f"Cannot reach {redact_url(base_url)} ({type(exc).__name__}: {exc}); is the service "
        "running and is the URL right?",
        reason,
    )


def _short_detail(response: httpx.Response) -> str:
    """The problem+json ``detail`` of an answer, cut short, else its reason phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
        if isinstance(detail, str):
            return detail[:500]
    return response.reason_phrase or f"HTTP {response.status_code}"


def file_chunks(path: str, chunk: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while piece := handle.read(chunk):
            yield piece


async def afile_chunks(path: str, chunk: int = CHUNK) -> AsyncIterator[bytes]:
    import anyio

    async with await anyio.open_file(path, "rb") as handle:
        while piece := await handle.read(chunk):
            yield piece

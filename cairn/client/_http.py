"""What both services' clients share: the request description, errors, sync and async senders.

Each client method builds a ``Call`` (method, path, parameters, body, how to read the answer)
once; ``SyncTransport`` and ``AsyncTransport`` send it. So the sync and async clients cannot
drift apart.

Both transports retry through ``cairn.retry`` (the crawler's mechanism) by ``retry_policy``;
a client's timeout and retries default to CAIRN_HTTP_TIMEOUT and CAIRN_HTTP_RETRIES
(``client_limits``). The async clients also keep the ``Health`` of their service (what the
last call or ``probe`` saw), can give up quickly (``connect_timeout``, ``retries``) and can
send another key per caller (``with_api_key``): what a server-side caller such as the web UI
needs.

CairnError (cairn.errors)
├── the class of the problem+json status (NotFound, Unauthorized, ...; 5xx keeps its status)
└── Unavailable
    ├── ServiceUnreachable   nothing answered (refused, dropped, timed out)
    └── BadAnswer            an answer the client cannot read (not JSON, not the model)
"""

from __future__ import annotations

import copy
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
from cairn.retry import RetryableStatus, RetryPolicy, acall_with_retries, call_with_retries
from cairn.settings import Settings

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
    # What the service's last readiness answer said it cannot do meanwhile (its ``degraded``).
    degraded: str = ""

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
    # Whether sending it twice does what sending it once does; None: by its method (a POST
    # is not, unless its Call says so).
    idempotent: bool | None = None


# What the clients try again (DESIGN 8), as ``retry_policy`` chooses per call:
# - a call that may be sent twice (GET, PUT, DELETE, and the POSTs that read or land once:
#   lookups, bulk upserts by id, OpenLineage events, materializing): connection failures and
#   429, 502, 503 and 504;
# - a POST that creates something (a feature-set version: a second copy is a second
#   version): only when the server surely did not act on it: no connection (nothing was sent)
#   and 429. Not 503, since the feature store answers 503 after storing a version whose
#   checks it could not keep (featurestore_service/service.py, _commit); not 502 and 504,
#   which a proxy sends after the request may have reached the service;
# - a body streamed from a file can be sent once: only a failed connection.
# Timeouts are not retried: CAIRN_HTTP_TIMEOUT bounds how long a caller waits for a slow
# service, and trying again would multiply that wait (and the load on the slow service).
SAFE_RETRY_STATUSES = frozenset({429, 502, 503, 504})
NOT_ACTED_STATUSES = frozenset({429})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


def retry_policy(call: Call[Any], attempts: int) -> RetryPolicy:
    replayable = call.content is None or isinstance(call.content, bytes | bytearray | str)
    idempotent = call.idempotent
    if idempotent is None:
        idempotent = call.method in IDEMPOTENT_METHODS
    resend = idempotent and replayable
    if resend:
        statuses: frozenset[int] = SAFE_RETRY_STATUSES
    else:
        statuses = NOT_ACTED_STATUSES if replayable else frozenset()
    return RetryPolicy(attempts, statuses, resend=resend, timeouts=False)


def client_limits(
    settings: Settings, timeout: float | None, retries: int | None
) -> tuple[float, int]:
    """A client's timeout and retries: its own arguments, else CAIRN_HTTP_TIMEOUT and
    CAIRN_HTTP_RETRIES (which counts attempts: one more than the retries)."""
    return (
        settings.http_timeout if timeout is None else timeout,
        settings.http_retries - 1 if retries is None else max(0, retries),
    )


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
    """Sends ``Call``s, each tried again as ``retry_policy`` allows, ``retries`` times at most."""

    def __init__(
        self,
        base_url: str,
        headers: dict[str, str],
        timeout: float,
        *,
        retries: int = 0,
        **kwargs: Any,
    ):
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, **kwargs)
        self.retries = max(0, retries)

    def send(self, call: Call[T]) -> T:
        response = self._answer(call, stream=False)
        raise_for_problem(response, call.ok)
        return call.read(response)

    def stream_to(self, call: Call[Any], sink: Callable[[bytes], object]) -> httpx.Headers:
        """Sends ``call`` and hands the answer's body to ``sink`` piece by piece (retried
        only until the answer starts: ``sink`` may have taken part of it by then)."""
        response = self._answer(call, stream=True)
        try:
            if response.status_code not in call.ok:
                response.read()
                raise_for_problem(response, call.ok)
            for chunk in response.iter_bytes(CHUNK):
                sink(chunk)
            return response.headers
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc) from exc
        finally:
            response.close()

    def _answer(self, call: Call[Any], *, stream: bool) -> httpx.Response:
        def attempt() -> httpx.Response:
            request = self.http.build_request(
                call.method,
                call.path,
                params=call.params or None,
                json=call.json,
                content=call.content,
                headers=call.headers,
            )
            return self.http.send(request, stream=stream)

        policy = retry_policy(call, 1 + self.retries)
        try:
            return call_with_retries(attempt, what=f"{call.method} {call.path}", policy=policy)
        except RetryableStatus as exc:
            return exc.response  # the last answer: raise_for_problem says what it was
        except httpx.TransportError as exc:
            raise _unreachable(self.base_url, exc) from exc

    def close(self) -> None:
        self.http.close()


class AsyncTransport:
    """Sends ``Call``s and records the service's ``Health`` from every answer.

    ``retries``: further attempts of a call, as ``retry_policy`` allows (after a jittered
    backoff); a timeout is never retried, since a slow service would only double the wait.
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

    async def _answer(
        self, call: Call[Any], *, stream: bool = False
    ) -> tuple[httpx.Response, float]:
        """The answer to ``call`` (retried as ``retry_policy`` allows) and the latency in ms
        of the attempt that gave it."""
        start = time.perf_counter()

        async def attempt() -> httpx.Response:
            nonlocal start
            start = time.perf_counter()
            request = self.http.build_request(
                call.method,
                call.path,
                params=call.params or None,
                json=call.json,
                content=call.content,
                headers={**self.auth, **call.headers},
            )
            return await self.http.send(request, stream=stream)

        policy = retry_policy(call, 1 + self.retries)
        try:
            response = await acall_with_retries(
                attempt, what=f"{call.method} {call.path}", policy=policy
            )
        except RetryableStatus as exc:
            response = exc.response  # the last answer: raise_for_problem says what it was
        except httpx.TransportError as exc:
            error = _unreachable(self.base_url, exc)
            self.health.mark(False, error.reason)
            raise error from exc
        return response, (time.perf_counter() - start) * 1000

    async def probe(self, timeout: float = 1.5) -> Health:
        """Asks ``/readyz`` (no key needed) and records the answer."""
        start = time.perf_counter()
        try:
            response = await self.http.get("/readyz", timeout=timeout)
        except httpx.TransportError as exc:
            self.health.mark(False, _unreachable(self.base_url, exc).reason)
            return self.health
        latency = (time.perf_counter() - start) * 1000
        self.health.degraded = _degraded(response) if response.status_code == 200 else ""
        if response.status_code == 200:
            self.health.mark(True, "ready", latency)
        else:
            self.health.mark(False, f"not ready: {_short_detail(response)}", latency)
        return self.health

    async def stream_to(
        self, call: Call[Any], sink: Callable[[bytes], Awaitable[object]]
    ) -> httpx.Headers:
        """Sends ``call`` and hands the answer's body to ``sink`` piece by piece (retried
        only until the answer starts: ``sink`` may have taken part of it by then)."""
        response, latency = await self._answer(call, stream=True)
        try:
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
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()


class AsyncServiceClient:
    """What both async clients share: health, probing, a per-caller key.

    Their constructors take ``timeout`` (seconds to wait for an answer; default
    CAIRN_HTTP_TIMEOUT), ``connect_timeout`` (seconds to connect; default ``timeout``) and
    ``retries`` (see ``AsyncTransport``; default one fewer than CAIRN_HTTP_RETRIES), so a
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


def _degraded(response: httpx.Response) -> str:
    """What a ready service says it cannot do meanwhile, or nothing."""
    try:
        degraded = response.json().get("degraded")
    except (ValueError, AttributeError):
        return ""
    return degraded if isinstance(degraded, str) else ""


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

"""What both services' clients share: the request description, errors, sync and async senders.

Each client method builds a ``Call`` (method, path, parameters, body, how to read the answer)
once; ``SyncTransport`` and ``AsyncTransport`` send it. So the sync and async clients cannot
drift apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

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
    """The service did not answer at all (not running, wrong URL, network down)."""

    title = "Service unreachable"


@dataclass(slots=True)
class Call(Generic[T]):
    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: list[tuple[str, str]] = field(default_factory=list)
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
    def __init__(self, base_url: str, headers: dict[str, str], timeout: float, **kwargs: Any):
        self.base_url = base_url.rstrip("/")
        self.http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, **kwargs
        )

    async def send(self, call: Call[T]) -> T:
        try:
            response = await self.http.request(
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

    async def aclose(self) -> None:
        await self.http.aclose()


def _unreachable(base_url: str, exc: Exception) -> ServiceUnreachable:
    return ServiceUnreachable(
        f"Cannot reach {base_url} ({type(exc).__name__}: {exc}); is the service running "
        "and is the URL right?"
    )


def file_chunks(path: str, chunk: int = CHUNK) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while piece := handle.read(chunk):
            yield piece


async def afile_chunks(path: str, chunk: int = CHUNK) -> AsyncIterator[bytes]:
    import anyio

    async with await anyio.open_file(path, "rb") as handle:
        while piece := await handle.read(chunk):
            yield piece

"""The UI's only way to the data: the catalogue's and the feature store's public HTTP APIs.

A service that does not answer never becomes a 500: calls raise ``ServiceDown``, which pages
turn into a banner, and every answer (or failure) updates the health the status bar shows.

BackendError
├── ServiceDown      the service did not answer, or answered 5xx: show a banner
└── ApiError         the service answered 4xx: show its ``detail`` (404 becomes a not-found page)
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from cairn.settings import Settings

log = logging.getLogger("cairn.ui")

# A person is waiting for the page: give up quickly and say so, rather than hang.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0
PROBE_TIMEOUT = 1.5
HEALTH_TTL = 10.0
ATTEMPTS = 2  # one quick retry (with jitter) on a dropped connection, for idempotent GETs


class BackendError(Exception):
    pass


class ServiceDown(BackendError):
    def __init__(self, service: ServiceClient, reason: str):
        super().__init__(f"{service.label} at {service.base_url}: {reason}")
        self.service = service.name
        self.label = service.label
        self.url = service.base_url
        self.reason = reason


class ApiError(BackendError):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(slots=True)
class Health:
    name: str
    label: str
    url: str
    ok: bool | None = None  # None: not checked yet
    detail: str = ""
    checked_at: float = 0.0
    latency_ms: float | None = None

    @property
    def state(self) -> str:
        return "unknown" if self.ok is None else ("up" if self.ok else "down")


@dataclass(slots=True)
class ServiceClient:
    name: str
    label: str
    base_url: str
    client: httpx.AsyncClient
    health: Health = field(init=False)

    def __post_init__(self) -> None:
        self.health = Health(self.name, self.label, self.base_url)

    def _mark(self, ok: bool, detail: str = "", latency_ms: float | None = None) -> None:
        h = self.health
        h.ok, h.detail, h.checked_at = ok, detail, time.monotonic()
        if latency_ms is not None:
            h.latency_ms = latency_ms

    async def get(
        self, path: str, params: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """GET with one retry on a dropped connection; 5xx and transport errors are ServiceDown."""
        last: Exception | None = None
        for attempt in range(ATTEMPTS):
            start = time.perf_counter()
            try:
                response = await self.client.get(path, params=params, headers=headers)
            except httpx.TimeoutException:
                # Retrying a slow service only doubles the wait.
                self._mark(False, "did not answer in time")
                raise ServiceDown(self, "did not answer in time") from None
            except httpx.TransportError as exc:
                last = exc
                if attempt + 1 < ATTEMPTS:
                    await asyncio.sleep(random.uniform(0.02, 0.1))
                continue
            if response.status_code >= 500:
                detail = _detail(response)
                self._mark(False, f"answered {response.status_code}: {detail}")
                raise ServiceDown(self, f"answered {response.status_code}: {detail}")
            self._mark(True, latency_ms=(time.perf_counter() - start) * 1000)
            return response
        reason = _transport_reason(last)
        self._mark(False, reason)
        raise ServiceDown(self, reason)

    async def get_json(self, path: str, params: Any = None) -> Any:
        response = await self.get(path, params)
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            self._mark(False, "answered with something that is not JSON")
            raise ServiceDown(self, "answered with something that is not JSON") from None

    async def probe(self) -> Health:
        start = time.perf_counter()
        try:
            response = await self.client.get("/readyz", timeout=PROBE_TIMEOUT)
        except httpx.TimeoutException:
            self._mark(False, "did not answer in time")
        except httpx.TransportError as exc:
            self._mark(False, _transport_reason(exc))
        else:
            latency = (time.perf_counter() - start) * 1000
            if response.status_code == 200:
                self._mark(True, "ready", latency)
            else:
                self._mark(False, f"not ready: {_detail(response)}", latency)
        return self.health


def _transport_reason(exc: Exception | None) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "refused the connection (is it running?)"
    if exc is None:
        return "did not answer"
    return f"the connection failed ({type(exc).__name__})"


def _detail(response: httpx.Response) -> str:
    """The problem+json ``detail`` of an error answer, else a short reason."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.reason_phrase or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
        if isinstance(detail, str):
            return detail[:500]
        if isinstance(detail, list) and detail:  # FastAPI's own validation errors
            first = detail[0]
            if isinstance(first, dict):
                return str(first.get("msg", ""))[:500]
    return response.reason_phrase or f"HTTP {response.status_code}"


def seg(value: str | int) -> str:
    """One URL path segment: a user value can never add segments or a query."""
    return quote(str(value), safe="")


class Backend:
    """Async clients for both services, created once per app."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        timeout = httpx.Timeout(min(settings.http_timeout, READ_TIMEOUT), connect=CONNECT_TIMEOUT)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        headers = {"user-agent": "cairn-ui", "accept": "application/json"}
        if settings.api_key is not None and settings.read_needs_key:
            headers["authorization"] = f"Bearer {settings.api_key.get_secret_value()}"

        def client(base_url: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=base_url.rstrip("/"),
                timeout=timeout,
                limits=limits,
                headers=headers,
                transport=transport,
                trust_env=False,
            )

        self.catalogue = ServiceClient(
            "catalogue",
            "Catalogue",
            settings.catalogue_url.rstrip("/"),
            client(settings.catalogue_url),
        )
        self.featurestore = ServiceClient(
            "featurestore",
            "Feature store",
            settings.featurestore_url.rstrip("/"),
            client(settings.featurestore_url),
        )
        self._probing: asyncio.Task[None] | None = None

    @property
    def services(self) -> tuple[ServiceClient, ServiceClient]:
        return (self.catalogue, self.featurestore)

    async def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
        for service in self.services:
            await service.client.aclose()

    # --- health -------------------------------------------------------------------------------

    async def probe_all(self) -> list[Health]:
        return list(await asyncio.gather(*(s.probe() for s in self.services)))

    def health(self) -> list[Health]:
        """Last known health of both services; refreshes in the background when stale."""
        now = time.monotonic()
        stale = any(now - s.health.checked_at > HEALTH_TTL for s in self.services)
        if stale and (self._probing is None or self._probing.done()):
            self._probing = asyncio.create_task(self._refresh())
        return [s.health for s in self.services]

    async def _refresh(self) -> None:
        try:
            await self.probe_all()
        except Exception:  # a probe never takes a page down
            log.exception("health probe failed")

    # --- catalogue ----------------------------------------------------------------------------

    async def search(self, params: list[tuple[str, str]]) -> dict[str, Any]:
        return await self.catalogue.get_json("/api/v1/assets", params)

    async def asset(self, asset_id: str) -> dict[str, Any]:
        return await self.catalogue.get_json(f"/api/v1/assets/{seg(asset_id)}")

    async def asset_by_name(self, name: str) -> dict[str, Any]:
        return await self.catalogue.get_json(f"/api/v1/assets/by-name/{seg(name)}")

    async def lineage(self, asset_id: str, direction: str, depth: int) -> dict[str, Any]:
        return await self.catalogue.get_json(
            f"/api/v1/assets/{seg(asset_id)}/lineage",
            {"direction": direction, "depth": str(depth)},
        )

    async def tags(self, limit: int = 30) -> list[dict[str, Any]]:
        return await self.catalogue.get_json("/api/v1/tags", {"limit": str(limit)})

    # --- feature store ------------------------------------------------------------------------

    async def featuresets(self, params: list[tuple[str, str]]) -> dict[str, Any]:
        return await self.featurestore.get_json("/api/v1/featuresets", params)

    async def featureset(self, name: str, params: Any = None) -> dict[str, Any]:
        return await self.featurestore.get_json(f"/api/v1/featuresets/{seg(name)}", params)

    async def featureset_versions(self, name: str, limit: int = 1000) -> dict[str, Any]:
        return await self.featurestore.get_json(
            f"/api/v1/featuresets/{seg(name)}/versions", {"limit": str(limit)}
        )

    async def featureset_version(
        self, name: str, version: int, params: Any = None
    ) -> dict[str, Any]:
        return await self.featurestore.get_json(
            f"/api/v1/featuresets/{seg(name)}/versions/{seg(version)}", params
        )

    async def online_state(self, name: str) -> dict[str, Any] | None:
        """The feature table's online state, or None when it is not online."""
        try:
            return await self.featurestore.get_json(f"/api/v1/featuresets/{seg(name)}/online")
        except ApiError:
            return None

    async def online_lookup(self, name: str, keys: dict[str, str]) -> dict[str, Any]:
        """Every feature of ``name`` for one entity key (Feast's JSON)."""
        body = {"features": [f"{name}:*"], "entities": {k: [v] for k, v in keys.items()}}
        try:
            response = await self.featurestore.client.post("/api/v1/online-features", json=body)
        except httpx.TransportError as exc:
            raise ServiceDown(self.featurestore, _transport_reason(exc)) from None
        if response.status_code >= 500:
            raise ServiceDown(self.featurestore, f"answered {response.status_code}")
        if response.status_code >= 400:
            raise ApiError(response.status_code, _detail(response))
        return orjson.loads(response.content)

    async def featureset_diff(self, name: str, old: int, new: int) -> dict[str, Any]:
        return await self.featurestore.get_json(
            f"/api/v1/featuresets/{seg(name)}/diff", {"from": str(old), "to": str(new)}
        )

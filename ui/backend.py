"""The UI's only way to the data: ``cairn.client``'s async clients of the two services' APIs.

A service that does not answer never becomes a 500: calls raise ``ServiceDown``, which pages
turn into a banner; the clients keep each service's health, which the status bar shows.
Every read goes out with the visitor's key (``Backend.reader``), never with the UI's own.

BackendError
├── ServiceDown      the service did not answer, answered 5xx or unreadably: show a banner
├── KeyRejected      the service answered 401: the visitor's key (or its absence) was refused
└── ApiError         any other 4xx: show its ``detail`` (404 becomes a not-found page)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel

from cairn.client import (
    AsyncCatalogueClient,
    AsyncFeatureStoreClient,
    BadAnswer,
    Health,
    ServiceUnreachable,
)
from cairn.errors import CairnError
from cairn.redact import redact_url
from cairn.settings import Settings
from cairn.tasks import stop

log = logging.getLogger("cairn.ui")

# A person is waiting for the page: give up quickly and say so, rather than hang.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0
PROBE_TIMEOUT = 1.5
HEALTH_TTL = 10.0
RETRIES = 1  # one quick retry (with jitter) of a GET whose connection dropped


Client = TypeVar("Client", AsyncCatalogueClient, AsyncFeatureStoreClient)


@dataclass(frozen=True, slots=True)
class Service(Generic[Client]):
    """One service as the UI shows it; its client sends no key (``Backend.reader`` adds one)."""

    name: str
    label: str
    client: Client

    @property
    def url(self) -> str:
        # Shown to every visitor (status page, banner, curl lines): a password in
        # CAIRN_CATALOGUE_URL (basic auth at a proxy) must not be.
        return redact_url(self.client.base_url)

    @property
    def health(self) -> Health:
        return self.client.health

    # What the status bar and the status page read.
    @property
    def ok(self) -> bool | None:
        return self.health.ok

    @property
    def state(self) -> str:
        return self.health.state

    @property
    def detail(self) -> str:
        return self.health.detail

    @property
    def latency_ms(self) -> float | None:
        return self.health.latency_ms

    @property
    def degraded(self) -> str:
        return self.health.degraded


class BackendError(Exception):
    pass


class ServiceDown(BackendError):
    def __init__(self, service: Service, reason: str):
        super().__init__(f"{service.label} at {service.url}: {reason}")
        self.service = service.name
        self.label = service.label
        self.url = service.url
        self.reason = reason


class KeyRejected(BackendError):
    def __init__(self, service: Service, detail: str):
        super().__init__(f"{service.label}: {detail}")
        self.service = service.name
        self.label = service.label
        self.detail = detail


class ApiError(BackendError):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _plain(answer: Any) -> Any:
    """An answer as the JSON the API sent (what the templates read)."""
    if isinstance(answer, BaseModel):
        return answer.model_dump(mode="json", by_alias=True)
    if isinstance(answer, list):
        return [_plain(item) for item in answer]
    return answer


async def _ask(service: Service, call: Awaitable[Any]) -> Any:
    try:
        return _plain(await call)
    except (ServiceUnreachable, BadAnswer) as exc:
        raise ServiceDown(service, exc.reason) from None
    except CairnError as exc:
        if exc.status >= 500:
            raise ServiceDown(service, f"answered {exc.status}: {exc.detail[:500]}") from None
        if exc.status == 401:
            raise KeyRejected(service, exc.detail) from None
        raise ApiError(exc.status, exc.detail) from None


class Backend:
    """Both services' clients and their health, created once per app."""

    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None):
        self.keys_needed = settings.read_needs_key
        options: dict[str, Any] = {
            "timeout": min(settings.http_timeout, READ_TIMEOUT),
            "connect_timeout": CONNECT_TIMEOUT,
            "retries": RETRIES,
            "limits": httpx.Limits(max_connections=64, max_keepalive_connections=16),
            "transport": transport,
            "trust_env": False,
        }
        # with_api_key(None): the UI's own CAIRN_API_KEY never reads on a visitor's behalf.
        self.catalogue = Service(
            "catalogue",
            "Catalogue",
            AsyncCatalogueClient(settings.catalogue_url, **options).with_api_key(None),
        )
        self.featurestore = Service(
            "featurestore",
            "Feature store",
            AsyncFeatureStoreClient(settings.featurestore_url, **options).with_api_key(None),
        )
        self._probing: asyncio.Task[None] | None = None

    @property
    def services(self) -> tuple[Service[AsyncCatalogueClient], Service[AsyncFeatureStoreClient]]:
        return (self.catalogue, self.featurestore)

    def reader(self, api_key: str | None) -> Reader:
        return Reader(self, api_key)

    async def close(self) -> None:
        if self._probing is not None:
            # Ended before the clients close: a probe still running would use a closed client.
            probing, self._probing = self._probing, None
            await stop(probing)
        for service in self.services:
            await service.client.aclose()

    # --- health -------------------------------------------------------------------------------

    async def probe_all(self) -> list[Service]:
        await asyncio.gather(*(s.client.probe(PROBE_TIMEOUT) for s in self.services))
        return list(self.services)

    def health(self) -> list[Service]:
        """Last known health of both services; refreshes in the background when stale."""
        now = time.monotonic()
        stale = any(now - s.health.checked_at > HEALTH_TTL for s in self.services)
        if stale and (self._probing is None or self._probing.done()):
            self._probing = asyncio.create_task(self._refresh())
        return list(self.services)

    async def _refresh(self) -> None:
        try:
            await self.probe_all()
        except Exception:  # a probe never takes a page down
            log.exception("health probe failed")


class Reader:
    """The reads pages make, on behalf of one visitor: with their key, or with none."""

    def __init__(self, backend: Backend, api_key: str | None):
        self.catalogue = backend.catalogue
        self.featurestore = backend.featurestore
        self._cat = backend.catalogue.client.with_api_key(api_key)
        self._fs = backend.featurestore.client.with_api_key(api_key)

    async def check_key(self) -> None:
        """Raises ``KeyRejected`` when the key is refused; a small read, on the feature store
        when the catalogue is down."""
        try:
            await _ask(self.catalogue, self._cat.types())
        except ServiceDown:
            await _ask(self.featurestore, self._fs.search(limit=1))

    # --- catalogue ----------------------------------------------------------------------------

    async def search(self, **query: Any) -> dict[str, Any]:
        """``AsyncCatalogueClient.search``'s arguments (q, tags, type, labels, ...)."""
        return await _ask(self.catalogue, self._cat.search(**query))

    async def asset(self, asset_id: str) -> dict[str, Any]:
        return await _ask(self.catalogue, self._cat.get_asset(asset_id))

    async def asset_by_name(self, name: str) -> dict[str, Any]:
        return await _ask(self.catalogue, self._cat.get_asset_by_name(name))

    async def lineage(self, asset_id: str, direction: str, depth: int) -> dict[str, Any]:
        return await _ask(self.catalogue, self._cat.lineage(asset_id, direction, depth))

    async def runs(self, asset_id: str, limit: int = 50) -> list[dict[str, Any]]:
        return await _ask(self.catalogue, self._cat.runs(asset_id, limit))

    async def columns(self, asset_id: str) -> dict[str, Any]:
        return await _ask(self.catalogue, self._cat.columns(asset_id))

    async def tags(self, limit: int = 30) -> list[dict[str, Any]]:
        return await _ask(self.catalogue, self._cat.tags(limit))

    # --- feature store ------------------------------------------------------------------------

    async def featuresets(self, **query: Any) -> dict[str, Any]:
        """``AsyncFeatureStoreClient.search``'s arguments (q, labels, limit, cursor)."""
        return await _ask(self.featurestore, self._fs.search(**query))

    async def featureset(
        self, name: str, version: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """The latest live version (or ``version``); a table's first ``limit`` rows."""
        return await _ask(self.featurestore, self._fs.get(name, version=version, limit=limit))

    async def featureset_versions(self, name: str, limit: int = 1000) -> dict[str, Any]:
        return await _ask(self.featurestore, self._fs.versions(name, limit=limit))

    async def online_state(self, name: str) -> dict[str, Any] | None:
        """The feature table's online state, or None when it is not online."""
        try:
            return await _ask(self.featurestore, self._fs.online_state(name))
        except ApiError:
            return None

    async def online_lookup(self, name: str, keys: dict[str, str]) -> dict[str, Any]:
        """Every feature of ``name`` for one entity key (Feast's JSON)."""
        entities: dict[str, list[Any]] = {k: [v] for k, v in keys.items()}
        answer = await _ask(
            self.featurestore, self._fs.get_online_features([f"{name}:*"], entities)
        )
        return answer.raw

    async def featureset_diff(self, name: str, old: int, new: int) -> dict[str, Any]:
        return await _ask(self.featurestore, self._fs.diff(name, old, new))

    # --- metric store (ui/routes/metrics.py) -------------------------------------------------

    async def featureset_profile(self, name: str, version: int) -> dict[str, Any]:
        return await _ask(self.featurestore, self._fs.profile(name, version))

    async def featureset_drift(
        self, name: str, version: int, against: int | None = None
    ) -> dict[str, Any]:
        return await _ask(self.featurestore, self._fs.drift(name, version, against))

    async def featureset_metrics(self, name: str, limit: int = 50) -> dict[str, Any]:
        return await _ask(self.featurestore, self._fs.metrics_history(name, limit))

    async def asset_profile(self, asset_id: str, version: int | None = None) -> dict[str, Any]:
        return await _ask(self.featurestore, self._fs.asset_profile(asset_id, version))

    async def asset_drift(
        self, asset_id: str, version: int | None = None, against: int | None = None
    ) -> dict[str, Any]:
        return await _ask(self.featurestore, self._fs.asset_drift(asset_id, version, against))

    async def asset_metrics(self, asset_id: str, limit: int = 50) -> dict[str, Any]:
        return await _ask(self.featurestore, self._fs.asset_metrics_history(asset_id, limit))

    async def metric_sets(self, name: str, limit: int = 10) -> dict[str, Any]:
        return await _ask(self.featurestore, self._fs.metric_sets(name, limit))

"""Durable registration of feature sets in the catalogue.

Every write queues a row in the store's outbox in the same transaction as the version, so a
write acknowledged while the catalogue is down is still registered once it is back. This
background task (started in the app's lifespan) sends ``PUT /api/v1/assets/featureset:<name>``
built from the set's latest live version at delivery time; the PUT is idempotent, so several
queued writes of one name become one call, and a repeat after a crash is harmless. Failures
back off exponentially with full jitter, up to ``cap`` seconds, and are retried forever.

A set's tags also change without a write, when the metric store finishes a profile (drifted,
checks failed): the profile worker then queues a registration on its own (``register_again``),
and the metric store keeps the change until that is done, so neither an unreachable catalogue
nor a crash loses the tags.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import orjson

from cairn import __version__
from cairn.redact import redact_url
from cairn.retry import RETRY_STATUSES, backoff_delay
from cairn.settings import Settings
from featurestore_service.backends.base import FeatureSetStore, OutboxEntry
from featurestore_service.service import FeatureStore, catalogue_id

log = logging.getLogger("cairn.featurestore.outbox")

BATCH = 100
IDLE_WAIT = 60.0  # with nothing queued the task sleeps until a write wakes it
MAX_TIMEOUT = 10.0


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class CatalogueRegistrar:
    def __init__(
        self,
        service: FeatureStore,
        settings: Settings,
        *,
        base: float = 0.25,
        cap: float = 5.0,
    ):
        self.service = service
        self.store: FeatureSetStore = service.store
        self.base_url = settings.catalogue_url.rstrip("/")
        self.base = base
        self.cap = cap
        headers = {"user-agent": f"cairn-featurestore/{__version__}"}
        if settings.api_key is not None:
            headers["authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self._headers = headers
        self._timeout = min(settings.http_timeout, MAX_TIMEOUT)
        self._wake = asyncio.Event()
        self.pending = 0

    def notify(self) -> None:
        """A write was committed: deliver now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(headers=self._headers, timeout=self._timeout) as client:
            while True:
                self._wake.clear()
                try:
                    delay = await self.deliver_due(client)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("catalogue registration round failed")
                    delay = self.cap
                # Not wait_for: on 3.11 it can swallow a cancel that arrives as the event is
                # set, and shutdown would hang.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def deliver_due(self, client: httpx.AsyncClient) -> float:
        """Delivers what is due; returns the seconds until the next registration is due."""
        due = await self.store.outbox_due(time.time(), BATCH)
        unreachable: str | None = None
        for entry in due:
            if unreachable is not None:
                # The catalogue did not answer a moment ago: back off without calling again.
                await self._retry(entry, unreachable, transient=True)
                continue
            try:
                await self._deliver(client, entry.name)
            except DeliveryError as exc:
                await self._retry(entry, str(exc), transient=not exc.permanent)
                if not exc.permanent:
                    unreachable = str(exc)
            else:
                await self.store.outbox_done(entry.name, entry.seq)
                if entry.attempts:
                    log.info("registered feature set %s in the catalogue", entry.name)
        self.pending = await self.store.outbox_pending()
        next_at = await self.store.outbox_next_due()
        if next_at is None:
            return IDLE_WAIT
        return min(IDLE_WAIT, max(0.0, next_at - time.time()))

    async def register_again(self, name: str) -> None:
        """Queues ``name``'s registration without a write, for what changed its asset after the
        write (the metric store's drift and check flags), and delivers it like a write's."""
        await self.store.outbox_enqueue(name, datetime.now(UTC))
        self.notify()

    async def _deliver(self, client: httpx.AsyncClient, name: str) -> None:
        asset = await self.service.catalogue_asset(name)
        if asset is None:
            return
        url = f"{self.base_url}/api/v1/assets/{quote(catalogue_id(name), safe=':')}"
        try:
            response = await client.put(
                url, content=orjson.dumps(asset), headers={"content-type": "application/json"}
            )
        except httpx.TransportError as exc:
            raise DeliveryError(
                f"cannot reach the catalogue at {redact_url(self.base_url)} ({type(exc).__name__})"
            ) from exc
        if response.status_code in (200, 201):
            return
        detail = response.text[:300]
        permanent = response.status_code not in RETRY_STATUSES
        raise DeliveryError(
            f"the catalogue answered HTTP {response.status_code}: {detail}", permanent=permanent
        )

    async def _retry(self, entry: OutboxEntry, error: str, *, transient: bool) -> None:
        attempts = entry.attempts + 1
        delay = backoff_delay(attempts, self.base, self.cap if transient else 60 * self.cap)
        await self.store.outbox_retry(entry.name, attempts, time.time() + delay, error)
        if attempts == 1 or attempts % 20 == 0:
            level = logging.WARNING if transient else logging.ERROR
            log.log(
                level,
                "registration of feature set %s in the catalogue failed (attempt %d, %s); "
                "it stays queued and is retried",
                entry.name,
                attempts,
                error,
            )

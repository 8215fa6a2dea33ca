"""The UI's backend ends its background health probe before it closes its clients."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from cairn.settings import Settings
from ui.backend import Backend


def test_close_ends_a_probe_that_dropped_its_cancel() -> None:
    # A probe inside an HTTP call can lose a cancel (Python 3.11's wait_for returns a result
    # that arrives with it); closing the clients under it left it running on closed clients.
    settings = Settings(catalogue_url="http://127.0.0.1:9", featurestore_url="http://127.0.0.1:9")
    backend = Backend(settings, transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    rounds = 0

    async def probe_all() -> list[object]:
        nonlocal rounds
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        while True:  # goes on as if never cancelled
            rounds += 1
            await asyncio.sleep(0.01)

    backend.probe_all = probe_all  # type: ignore[method-assign]

    async def run() -> None:
        backend.health()  # stale at start: a probe begins in the background
        task = backend._probing
        assert task is not None
        await asyncio.sleep(0)
        async with asyncio.timeout(10):
            await backend.close()
        assert task.done()  # before asyncio.run's own cancels at its end
        assert rounds > 0  # it did drop the first cancel

    asyncio.run(run())

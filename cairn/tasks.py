"""Ending the background tasks of a service or a command for good."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop(task: asyncio.Task[Any], patience: float = 0.25) -> None:
    """Cancels ``task`` and returns once it has ended; raises what it failed with, if not
    the cancel.

    One cancel is not always enough on Python 3.11: when the awaited result arrives together
    with the cancel, ``asyncio.wait_for`` returns the result and drops the cancel, and
    libraries call it deep inside (PyMongo around each socket write). The task then goes on
    as if never cancelled, and whoever awaits it waits for ever (``cairn reindex`` hung so:
    the mongo store's indexer dropped 17 cancels in 400 closes under load, some twice). So
    the task is cancelled again every ``patience`` seconds until it ends.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=patience)
    if not task.cancelled():
        task.result()

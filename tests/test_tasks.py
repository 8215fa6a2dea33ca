"""cairn.tasks.stop: a background task ends even when a cancel is dropped on its way."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable

import pytest

from cairn.tasks import stop


async def _within(seconds: float, awaitable: Awaitable[object]) -> None:
    # Fails rather than hangs: the bug this guards against is a wait for ever.
    async with asyncio.timeout(seconds):
        await awaitable


def test_a_task_that_drops_the_first_cancel_is_still_stopped() -> None:
    rounds = 0

    async def drops_one_cancel() -> None:
        nonlocal rounds
        with contextlib.suppress(asyncio.CancelledError):  # as a library that drops it
            await asyncio.sleep(30)
        while True:
            rounds += 1
            await asyncio.sleep(0.01)

    async def run() -> asyncio.Task[None]:
        task = asyncio.create_task(drops_one_cancel())
        await asyncio.sleep(0)
        await _within(5, stop(task, patience=0.1))
        return task

    task = asyncio.run(run())
    assert task.cancelled()
    assert rounds > 0  # it did go on after the first cancel, and was cancelled again


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for drops it on 3.11 only")
def test_a_cancel_dropped_by_wait_for_on_3_11_does_not_hang_the_stop() -> None:
    # The way `cairn reindex` hung: the indexer's awaited result arrived with the cancel, and
    # asyncio.wait_for (inside PyMongo) returned the result instead of raising.
    results: list[int] = []

    async def run() -> asyncio.Task[None]:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        started = asyncio.Event()

        async def indexer() -> None:
            started.set()
            results.append(await asyncio.wait_for(ready, timeout=30))
            await asyncio.sleep(30)  # the loop's next wait: only a second cancel ends it

        task = asyncio.create_task(indexer())
        await started.wait()
        await asyncio.sleep(0)
        ready.set_result(7)
        await _within(5, stop(task, patience=0.1))
        return task

    task = asyncio.run(run())
    assert results == [7]  # the first cancel was dropped: the result came back
    assert task.cancelled()


def test_stop_raises_what_the_task_failed_with() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    async def run() -> None:
        task = asyncio.create_task(fails())
        await asyncio.sleep(0)
        await stop(task)

    with pytest.raises(ValueError, match="broken"):
        asyncio.run(run())


def test_stop_of_a_finished_task_returns_at_once() -> None:
    async def run() -> None:
        task = asyncio.create_task(asyncio.sleep(0))
        await task
        await _within(1, stop(task))

    asyncio.run(run())

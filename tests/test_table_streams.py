"""The Arrow stream of a stored table: every row once, in order, whatever the batching, and a
client that leaves mid-stream leaves no decode running or slot taken."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore_service.tables import STREAM_BATCH_ROWS, DecodeSlots, arrow_stream

T = TypeVar("T")
ROWS = STREAM_BATCH_ROWS * 3 + 1234  # several batches and a short last one


def _table(path: Path) -> pa.Table:
    rng = np.random.default_rng(4)
    table = pa.table(
        {
            "id": pa.array(np.arange(ROWS)),
            "x": pa.array(rng.standard_normal(ROWS)),
            "s": pa.array([f"v{i % 97}" for i in range(ROWS)]),
        }
    )
    pq.write_table(table, path, row_group_size=50_000)  # batches span row groups
    return table


async def _collect(path: Path, columns: list[str] | None, limit: int | None) -> pa.Table:
    parts = [bytes(part) async for part in arrow_stream(path, columns, limit, DecodeSlots(1))]
    return pa.ipc.open_stream(b"".join(parts)).read_all()


def test_stream_holds_every_row_in_order(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    table = _table(path)
    assert asyncio.run(_collect(path, None, None)).equals(table)
    assert asyncio.run(_collect(path, ["s", "id"], None)).equals(table.select(["s", "id"]))
    limited = asyncio.run(_collect(path, None, STREAM_BATCH_ROWS + 7))
    assert limited.equals(table.slice(0, STREAM_BATCH_ROWS + 7))
    assert asyncio.run(_collect(path, None, 0)).num_rows == 0


def test_stream_left_mid_way_frees_its_slot(tmp_path: Path) -> None:
    """The next batch decodes while one is sent; a client that goes away then must not leave
    that decode holding the slot, nor break the next request."""
    path = tmp_path / "t.parquet"
    table = _table(path)

    async def leave_then_read() -> pa.Table:
        slots = DecodeSlots(1)
        stream = arrow_stream(path, None, None, slots)
        received = 0
        async for part in stream:
            received += len(part)
            if received > 1_000_000:  # inside the first batch or two
                break
        await stream.aclose()
        # The decode that was running finishes in its thread and hands its slot back.
        for _ in range(200):
            if slots._limiter is not None and slots._limiter.borrowed_tokens == 0:
                break
            await asyncio.sleep(0.01)
        assert slots._limiter is not None and slots._limiter.borrowed_tokens == 0
        parts = [bytes(p) async for p in arrow_stream(path, None, None, slots)]
        return pa.ipc.open_stream(b"".join(parts)).read_all()

    assert asyncio.run(leave_then_read()).equals(table)


class SlowSlots(DecodeSlots):
    """Decodes that take a while, so a cancellation surely comes while one runs."""

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        def slow() -> T:
            time.sleep(0.1)
            return func(*args)

        return await super().run(slow)


def test_stream_cancelled_mid_way_lets_the_decode_finish(tmp_path: Path) -> None:
    """A server cancels a stream whose client went away: the batch being decoded in its
    thread finishes before the reader is closed (no "generator already executing"), and its
    slot comes back."""
    path = tmp_path / "t.parquet"
    _table(path)

    async def cancel_mid_way() -> None:
        slots = SlowSlots(1)
        problems: list[dict[str, object]] = []
        asyncio.get_running_loop().set_exception_handler(
            lambda _, context: problems.append(context)
        )
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in arrow_stream(path, None, None, slots):
                started.set()
                await asyncio.sleep(0)  # as a server's send would

        task = asyncio.create_task(consume())
        await started.wait()
        await asyncio.sleep(0.03)  # the next batch is being decoded now
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # and nothing else
            await task
        for _ in range(200):
            if slots._limiter is not None and slots._limiter.borrowed_tokens == 0:
                break
            await asyncio.sleep(0.01)
        assert slots._limiter is not None and slots._limiter.borrowed_tokens == 0
        assert problems == []

    asyncio.run(cancel_mid_way())

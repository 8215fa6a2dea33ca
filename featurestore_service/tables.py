"""Reading a stored Parquet file back out: JSON row pages, an Arrow IPC stream, a Parquet subset.

Memory stays bounded whatever the table: reads go batch by batch through the row groups they
need (a row group decodes to at most CAIRN_TABLE_MAX_ROW_GROUP_BYTES, checked at upload by
``featurestore_service.table_limits``), column chunks are read through a small buffer rather
than loaded whole, and every decode runs in a worker thread under ``DecodeSlots``, so parallel
requests wait for a slot instead of multiplying memory. After a request, pyarrow's memory pool
hands what it no longer needs back to the system.

JSON has no NaN or infinities; float values that are not finite go out as the strings "NaN",
"Infinity" and "-Infinity" (the spelling of Protocol Buffers' JSON mapping and of JavaScript's
``String(x)``; Python's ``float()`` and JavaScript's ``Number()`` read them back), never as null,
which means a missing value. Arrow and Parquet carry them as floats.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import decimal
import functools
import math
from collections.abc import AsyncGenerator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from cairn.errors import BadRequest, Unavailable
from cairn.memory import trim
from cairn.models import TableInfo
from featurestore_service.table_limits import READ_BUFFER_BYTES

STREAM_BATCH_ROWS = 64 * 1024
# Body buffers of at least this size go out as views of Arrow memory; smaller pieces (message
# headers, padding) are joined, so a batch is a few socket writes, not dozens.
ZERO_COPY_BYTES = 64 * 1024

T = TypeVar("T")


class DecodeSlots:
    """At most ``slots`` Parquet decodes at once (CAIRN_TABLE_DECODE_CONCURRENCY); others wait.

    Each decode runs in a worker thread; the limiter is made on first use, inside the event loop.
    """

    def __init__(self, slots: int):
        self.slots = slots
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.slots)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)


def open_table(path: Path) -> pq.ParquetFile:
    """A stored table, read through a buffer: neither a row group nor a column chunk is loaded
    whole (pyarrow's default, pre-buffering, reads every column chunk of a row group first)."""
    return pq.ParquetFile(path, buffer_size=READ_BUFFER_BYTES, pre_buffer=False)


@contextlib.contextmanager
def damaged_file(what: str, sha256: str | None) -> Iterator[None]:
    """Around a decode of a stored version's Parquet file (``what``, e.g. "churn version 3"):
    pyarrow failing on it means the file is damaged, as it was checked whole at upload; a 503
    naming it rather than a 500."""
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # the system's error (a full disk writing a subset), not the file's
        raise Unavailable(
            f"The Parquet file of {what} ({sha256}.parquet) is damaged and cannot be read "
            f"({exc}); restore it from a backup."
        ) from None


def use_returning_pool() -> None:
    """Makes mimalloc pyarrow's default pool where this build has it.

    Measured on a 1,000,000 x 20 table read batch by batch and released afterwards
    (``release_memory``): mimalloc kept 13-38 MiB, jemalloc with a decay of 0 kept 71-76 MiB
    and glibc's malloc 68-87 MiB; behind ``cairn up`` after a table's profile and two Arrow
    GETs the process held 256 MiB with mimalloc against 284 MiB with jemalloc
    (bench_footprint)."""
    # A pyarrow built without mimalloc keeps its default; release_memory still trims it.
    if "mimalloc" in pa.supported_memory_backends():
        pa.set_memory_pool(pa.mimalloc_memory_pool())


def release_memory() -> None:
    """Hands memory pyarrow's pool keeps for reuse back to the system (mimalloc and jemalloc
    otherwise hold on to the peak of the largest read for the life of the process), and what
    glibc's heaps keep of the request's Python objects (``cairn.memory.trim``)."""
    pa.default_memory_pool().release_unused()
    trim()


def check_columns(info: TableInfo, columns: list[str] | None) -> list[str] | None:
    """The projection, checked against the table's columns (400 naming the unknown ones)."""
    if not columns:
        return None
    return picked(columns, [c.name for c in info.columns], "column", "table")


def picked(asked: list[str], known: list[str], kind: str, holder: str) -> list[str]:
    """``asked``, each name once in the order asked, when ``known`` has them all; else a 400
    naming the unknown ones and listing the ``holder``'s own."""
    have = set(known)
    unknown = [name for name in asked if name not in have]
    if unknown:
        has = f"has: {', '.join(known)}" if known else f"has no {kind}s"
        raise BadRequest(f"Unknown {kind}(s) {', '.join(map(repr, unknown))}; this {holder} {has}")
    return list(dict.fromkeys(asked))


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    # Nanosecond timestamps (pandas' default) come out of pyarrow as pandas.Timestamp, a
    # datetime subclass orjson does not take.
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    raise TypeError(f"cannot encode {type(value).__name__}")


def read_rows(
    path: Path, columns: list[str] | None, offset: int, limit: int
) -> tuple[list[str], bytes, int]:
    """Column names, the JSON array of rows ``offset``..``offset+limit``, and the row count."""
    parquet = open_table(path)
    page = _page(parquet, columns, offset, limit)
    rows = page.to_pylist()
    floats = [field.name for field in page.schema if _has_floats(field.type)]
    del page
    release_memory()
    if floats:
        for row in rows:
            for name in floats:
                row[name] = finite_or_named(row[name])
    body = orjson.dumps(rows, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    return _names(parquet, columns), body, parquet.metadata.num_rows


def _names(parquet: pq.ParquetFile, columns: list[str] | None) -> list[str]:
    return columns or parquet.schema_arrow.names


def _page(parquet: pq.ParquetFile, columns: list[str] | None, offset: int, limit: int) -> pa.Table:
    """Rows ``offset``..``offset+limit``, read from the row groups that hold them only, in
    batches no larger than the page needs."""
    metadata = parquet.metadata
    schema = parquet.schema_arrow
    groups: list[int] = []
    skip = offset  # rows to drop from the first group read
    start = 0
    for index in range(metadata.num_row_groups):
        end = start + metadata.row_group(index).num_rows
        if end <= offset:
            skip -= end - start
        elif start < offset + limit:
            groups.append(index)
        start = end
    pieces: list[pa.RecordBatch] = []
    remaining = limit
    if groups:
        batches = parquet.iter_batches(
            batch_size=min(STREAM_BATCH_ROWS, skip + limit),
            row_groups=groups,
            columns=columns,
            use_threads=False,
        )
        for batch in batches:
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            piece = batch.slice(skip, remaining)
            skip = 0
            pieces.append(piece)
            remaining -= piece.num_rows
            if remaining == 0:
                break
    names = _names(parquet, columns)
    return pa.Table.from_batches(pieces, pa.schema([schema.field(name) for name in names]))


def _has_floats(kind: pa.DataType) -> bool:
    if pa.types.is_floating(kind):
        return True
    if pa.types.is_dictionary(kind):
        return _has_floats(kind.value_type)
    return any(_has_floats(kind.field(i).type) for i in range(kind.num_fields))


def finite_or_named(value: Any) -> Any:
    """``value`` with every NaN and infinity (at any depth) replaced by its JSON name."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [finite_or_named(item) for item in value]
    if isinstance(value, dict):
        return {key: finite_or_named(item) for key, item in value.items()}
    if isinstance(value, tuple):  # map entries come out as (key, value) pairs
        return tuple(finite_or_named(item) for item in value)
    return value


def _arrow_chunks(
    path: Path, columns: list[str] | None, limit: int | None
) -> Generator[list[bytes | memoryview], None, None]:
    parquet = open_table(path)
    schema = parquet.schema_arrow
    if columns:
        schema = pa.schema([schema.field(name) for name in columns])
    sink = ChunkSink()
    remaining = limit
    with pa.ipc.new_stream(sink, schema) as writer:
        yield sink.take()
        if remaining != 0:
            batch_rows = STREAM_BATCH_ROWS if limit is None else min(STREAM_BATCH_ROWS, limit)
            for batch in parquet.iter_batches(
                batch_size=batch_rows, columns=columns, use_threads=False
            ):
                if remaining is not None:
                    batch = batch.slice(0, remaining)
                    remaining -= batch.num_rows
                writer.write_batch(batch)
                yield sink.take()
                if remaining == 0:
                    break
    release_memory()
    yield sink.take()  # the end-of-stream marker


class ChunkSink:
    """A write-only file for pyarrow's IPC writer that hands out what was written so far.

    The writer passes each record batch's body buffers as pyarrow Buffers; they go out as views
    of that memory, not copies (the view keeps the batch alive until the socket has it).
    """

    closed = False

    def __init__(self) -> None:
        self._parts: list[Any] = []

    def write(self, data: Any) -> int:
        self._parts.append(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> list[bytes | memoryview]:
        out: list[bytes | memoryview] = []
        small: list[Any] = []
        for part in self._parts:
            if len(part) < ZERO_COPY_BYTES:
                small.append(part)
                continue
            if small:
                out.append(b"".join(small))
                small = []
            out.append(memoryview(part))
        if small:
            out.append(b"".join(small))
        self._parts.clear()
        return out


async def arrow_stream(
    path: Path, columns: list[str] | None, limit: int | None, decodes: DecodeSlots | None = None
) -> AsyncGenerator[bytes | memoryview, None]:
    """The table as an Arrow IPC stream, one record batch at a time, each decoded in a slot.

    The next batch decodes while this one is sent, so decoding and sending overlap on two
    cores. Arrow's own decoding threads (``use_threads``) would overlap them too, but each of
    those keeps the allocator pages it touched (about 40 MiB after a 1M x 20 table) where
    ``release_memory``, which frees the calling thread's, cannot reach them.
    """
    run = decodes.run if decodes is not None else anyio.to_thread.run_sync
    chunks = _arrow_chunks(path, columns, limit)
    pending = asyncio.ensure_future(run(next, chunks, None))
    try:
        while True:
            # Shielded: a client gone mid-stream cancels this, not the decode in its thread.
            parts = await asyncio.shield(pending)
            if parts is None:
                return
            pending = asyncio.ensure_future(run(next, chunks, None))
            for part in parts:
                yield part
    finally:
        if pending.done():
            chunks.close()
        else:
            # The batch being decoded finishes in its thread first (a generator cannot be
            # closed while it runs), then the reader is closed.
            pending.add_done_callback(functools.partial(_close_after, chunks))


def _close_after(chunks: Generator[Any, None, None], decode: asyncio.Future[Any]) -> None:
    if not decode.cancelled():
        decode.exception()  # nobody waits for this batch any more: its error is not news
    # Cancelled only when the event loop shuts down, maybe mid-decode: the generator then
    # closes when it is collected.
    with contextlib.suppress(ValueError):
        chunks.close()


def write_subset(source: Path, target: Path, columns: list[str] | None, limit: int | None) -> None:
    """A new Parquet file with only ``columns`` and the first ``limit`` rows."""
    parquet = open_table(source)
    schema = parquet.schema_arrow
    if columns:
        schema = pa.schema([schema.field(name) for name in columns])
    remaining = limit
    try:
        with pq.ParquetWriter(target, schema) as writer:
            if remaining == 0:
                return
            batch_rows = STREAM_BATCH_ROWS if limit is None else min(STREAM_BATCH_ROWS, limit)
            for batch in parquet.iter_batches(
                batch_size=batch_rows, columns=columns, use_threads=True
            ):
                if remaining is not None:
                    batch = batch.slice(0, remaining)
                    remaining -= batch.num_rows
                writer.write_batch(batch)
                if remaining == 0:
                    break
    finally:
        release_memory()

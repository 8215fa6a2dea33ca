"""Reading a stored Parquet file back out: JSON row pages, an Arrow IPC stream, a Parquet subset.

Everything streams or reads only the row groups it needs; nothing loads a whole 256 MiB table.
Blocking pyarrow work runs in worker threads, one batch at a time.
"""

from __future__ import annotations

import base64
import decimal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from cairn.errors import BadRequest
from cairn.models import TableInfo

STREAM_BATCH_ROWS = 64 * 1024


def check_columns(info: TableInfo, columns: list[str] | None) -> list[str] | None:
    """The projection, checked against the table's columns (400 naming the unknown ones)."""
    if not columns:
        return None
    known = {c.name for c in info.columns}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise BadRequest(
            f"Unknown column(s) {', '.join(map(repr, unknown))}; this table has: "
            + ", ".join(c.name for c in info.columns)
        )
    return list(dict.fromkeys(columns))


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot encode {type(value).__name__}")


def read_rows(
    path: Path, columns: list[str] | None, offset: int, limit: int
) -> tuple[list[str], bytes, int]:
    """Column names, the JSON array of rows ``offset``..``offset+limit``, and the row count.

    Only the row groups that hold the page are read.
    """
    parquet = pq.ParquetFile(path)
    metadata = parquet.metadata
    names = columns or parquet.schema_arrow.names
    pieces: list[pa.Table] = []
    start = 0
    wanted_end = offset + limit
    for index in range(metadata.num_row_groups):
        count = metadata.row_group(index).num_rows
        end = start + count
        if end > offset and start < wanted_end:
            group = parquet.read_row_group(index, columns=columns)
            pieces.append(group.slice(max(0, offset - start), wanted_end - max(start, offset)))
        start = end
        if start >= wanted_end:
            break
    rows = pa.concat_tables(pieces).to_pylist() if pieces else []
    body = orjson.dumps(rows, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    return names, body, metadata.num_rows


def _arrow_chunks(path: Path, columns: list[str] | None, limit: int | None) -> Iterator[bytes]:
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    if columns:
        schema = pa.schema([schema.field(name) for name in columns])
    sink = _Sink()
    remaining = limit
    with pa.ipc.new_stream(sink, schema) as writer:
        yield sink.take()
        if remaining != 0:
            for batch in parquet.iter_batches(
                batch_size=STREAM_BATCH_ROWS, columns=columns, use_threads=True
            ):
                if remaining is not None:
                    batch = batch.slice(0, remaining)
                    remaining -= batch.num_rows
                writer.write_batch(batch)
                yield sink.take()
                if remaining == 0:
                    break
    yield sink.take()  # the end-of-stream marker


class _Sink:
    """A write-only file for pyarrow's IPC writer that hands out what was written so far."""

    closed = False

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: Any) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


async def arrow_stream(
    path: Path, columns: list[str] | None, limit: int | None
) -> AsyncIterator[bytes]:
    """The table as an Arrow IPC stream, one record batch at a time."""
    chunks = _arrow_chunks(path, columns, limit)
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, chunks, None)
            if chunk is None:
                return
            if chunk:
                yield chunk
    finally:
        chunks.close()


def write_subset(source: Path, target: Path, columns: list[str] | None, limit: int | None) -> None:
    """A new Parquet file with only ``columns`` and the first ``limit`` rows."""
    parquet = pq.ParquetFile(source)
    schema = parquet.schema_arrow
    if columns:
        schema = pa.schema([schema.field(name) for name in columns])
    remaining = limit
    with pq.ParquetWriter(target, schema) as writer:
        if remaining == 0:
            return
        for batch in parquet.iter_batches(
            batch_size=STREAM_BATCH_ROWS, columns=columns, use_threads=True
        ):
            if remaining is not None:
                batch = batch.slice(0, remaining)
                remaining -= batch.num_rows
            writer.write_batch(batch)
            if remaining == 0:
                break

"""The entity frame a caller sent: a Parquet file or an Arrow IPC stream spooled to disk.

Opening it reads it through once, one batch at a time, so a truncated or corrupt body is a 400
before any answer is sent, and the rows are counted and the event times checked for nulls. The
join then reads it again, batch by batch: a frame larger than memory is fine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cairn.errors import BadRequest, InvalidRequest
from featurestore_service.pit.base import ENTITY_TIMESTAMP
from featurestore_service.table_limits import (
    TableLimits,
    check_decoded_size,
    check_ipc_batch_sizes,
)

PARQUET = "parquet"
ARROW = "arrow"


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def is_time_type(dtype: pa.DataType) -> bool:
    return pa.types.is_timestamp(dtype) or pa.types.is_date(dtype)


class EntityFrame:
    """Join keys, ``event_timestamp`` and any other columns, read batch by batch from disk."""

    def __init__(
        self,
        path: Path,
        kind: str,
        batch_rows: int = 64 * 1024,
        max_row_group_bytes: int | None = None,
    ) -> None:
        if kind not in (PARQUET, ARROW):
            raise ValueError(f"kind is {PARQUET!r} or {ARROW!r}")
        self.path = Path(path)
        self.kind = kind
        self.batch_rows = batch_rows
        what = "Parquet file" if kind == PARQUET else "Arrow IPC stream"
        try:
            if kind == PARQUET and max_row_group_bytes is not None:
                # A 200 KB file of one long dictionary value repeated decodes to gigabytes in
                # the scan below: measured first, as uploads are. Only a row group's size is
                # bounded, since the frame is read one batch at a time, however long it is.
                limits = TableLimits(sys.maxsize, max_row_group_bytes, sys.maxsize)
                check_decoded_size(self.path, limits)
            elif max_row_group_bytes is not None:
                # Compressed IPC batches are bombs the same way; measured from their metadata.
                check_ipc_batch_sizes(self.path, max_row_group_bytes)
            self.schema = self._open_schema()
            self.num_rows, self.timestamp_nulls = self._scan()
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise BadRequest(
                f"The body is not a readable {what} ({_reason(exc)}); send the entity frame "
                "as the body, written by pyarrow, pandas or polars."
            ) from None
        self._check()

    def _open_schema(self) -> pa.Schema:
        if self.kind == PARQUET:
            return pq.ParquetFile(self.path).schema_arrow
        with pa.memory_map(str(self.path)) as source:
            return pa.ipc.open_stream(source).schema

    def batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The frame's rows in order, ``batch_rows`` at a time (the last batch may be shorter)."""
        if self.kind == PARQUET:
            parquet = pq.ParquetFile(self.path)
            yield from parquet.iter_batches(batch_size=self.batch_rows, columns=columns)
            return
        with pa.memory_map(str(self.path)) as source:
            for batch in pa.ipc.open_stream(source):
                if columns is not None:
                    batch = batch.select(columns)
                # Writers choose their own batch sizes; re-cut them so memory stays bounded.
                for start in range(0, batch.num_rows, self.batch_rows):
                    yield batch.slice(start, self.batch_rows)

    def _scan(self) -> tuple[int, int]:
        """Rows, and nulls in event_timestamp; every column is decoded once on the way."""
        rows = nulls = 0
        has_time = ENTITY_TIMESTAMP in self.schema.names
        for batch in self.batches():
            batch.validate(full=True)
            rows += batch.num_rows
            if has_time:
                nulls += batch.column(ENTITY_TIMESTAMP).null_count
        return rows, nulls

    def _check(self) -> None:
        names = self.schema.names
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise InvalidRequest(
                f"The entity frame has duplicate column names ({', '.join(map(repr, twice))}); "
                "make them unique.",
                errors=[{"field": "entity_frame", "message": "duplicate column names"}],
            )
        if ENTITY_TIMESTAMP not in names:
            raise InvalidRequest(
                f"The entity frame has no {ENTITY_TIMESTAMP!r} column; add one with each row's "
                f"time (UTC; a naive timestamp is read as UTC). Its columns are: "
                + ", ".join(names[:50]),
                errors=[{"field": ENTITY_TIMESTAMP, "message": "missing column"}],
            )
        dtype = self.schema.field(ENTITY_TIMESTAMP).type
        if not is_time_type(dtype):
            raise InvalidRequest(
                f"Column {ENTITY_TIMESTAMP!r} of the entity frame is {dtype}, not a timestamp; "
                "write it as a timestamp (a naive one is read as UTC) or a date.",
                errors=[{"field": ENTITY_TIMESTAMP, "message": f"is {dtype}, not a timestamp"}],
            )
        if self.timestamp_nulls:
            raise InvalidRequest(
                f"Column {ENTITY_TIMESTAMP!r} of the entity frame has {self.timestamp_nulls} "
                f"null value(s) in {self.num_rows} rows; every row needs its time.",
                errors=[{"field": ENTITY_TIMESTAMP, "message": "null values"}],
            )
        if self.num_rows == 0:
            raise InvalidRequest(
                "The entity frame has no rows; send at least one row of join keys and "
                f"{ENTITY_TIMESTAMP}.",
                errors=[{"field": "entity_frame", "message": "no rows"}],
            )

"""The checks every uploaded Parquet file passes on the local disk before it is stored."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cairn.errors import BadRequest
from cairn.models import MAX_COLUMNS, SchemaField, TableInfo
from featurestore_service.table_limits import TableLimits, check_decoded_size
from featurestore_service.tables import release_memory


def inspect_parquet(path: Path, size: int, sha256: str, limits: TableLimits) -> TableInfo:
    """Reads the footer, refuses a table past the decoded-size limits (413) and decodes every
    column chunk once, so a served file is known readable.

    Sizes are checked from the footer before any page is decoded; decoding then goes one batch
    of one column at a time, so memory stays near a batch, whatever the file claims.
    """
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _unreadable(exc) from None
    if len(schema) == 0:
        raise BadRequest("The Parquet file has no columns; send a table with at least one.")
    if len(schema) > MAX_COLUMNS:
        raise BadRequest(f"The Parquet file has {len(schema)} columns; the limit is {MAX_COLUMNS}.")
    names = schema.names
    if len(set(names)) != len(names):
        raise BadRequest("The Parquet file has duplicate column names; make them unique.")
    if any(not name or len(name) > 1024 for name in names):
        raise BadRequest("Every column needs a name of 1 to 1024 characters.")
    try:
        check_decoded_size(path, limits)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _unreadable(exc) from None
    finally:
        release_memory()
    metadata = parquet.metadata
    return TableInfo(
        rows=metadata.num_rows,
        columns=[SchemaField(name=f.name, type=str(f.type), nullable=f.nullable) for f in schema],
        row_groups=metadata.num_row_groups,
        size_bytes=size,
        sha256=sha256,
    )


def _unreadable(exc: Exception) -> BadRequest:
    return BadRequest(
        f"The body is not a readable Parquet file ({_reason(exc)}); send the bytes of a "
        ".parquet file, for example one written by pyarrow or pandas."
    )


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]

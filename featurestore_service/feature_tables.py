"""Feature tables (DESIGN 9): checking a declaration against the Parquet file it describes.

A declaration (``FeatureTableSpec``: entities, timestamp, created_timestamp, ttl) comes with an
upload or is inherited from the previous version; either way the uploaded file must have every
named column, key columns of an integer or string type without nulls, and time columns of a
timestamp or date type. A failure is a 400 naming the column, raised before the file is
installed, so nothing is stored.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cairn.errors import InvalidRequest
from cairn.models import FeatureTableSpec, TableInfo


def _problem(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"The feature table declaration does not fit the Parquet file: {message}",
        errors=[{"field": field, "message": message}],
    )


def is_key_type(dtype: pa.DataType) -> bool:
    return (
        pa.types.is_integer(dtype) or pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
    )


def is_time_type(dtype: pa.DataType) -> bool:
    return pa.types.is_timestamp(dtype) or pa.types.is_date(dtype)


def feature_columns(info: TableInfo, spec: FeatureTableSpec) -> list[str]:
    """The table's feature columns: every column but the keys and the time columns."""
    skip = set(spec.key_columns())
    return [c.name for c in info.columns if c.name not in skip]


def check_table(path: Path, info: TableInfo, spec: FeatureTableSpec, origin: str) -> None:
    """Raises a 400 naming the first column that does not fit ``spec``.

    ``origin`` says where the declaration came from ("declared", "inherited from version 3"),
    so the message tells the user which one to fix.
    """
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    names = set(schema.names)
    for kind, columns in (
        ("entities", spec.entities),
        ("timestamp", [spec.timestamp]),
        ("created_timestamp", [spec.created_timestamp] if spec.created_timestamp else []),
    ):
        for column in columns:
            if column not in names:
                raise _problem(
                    kind,
                    f"column {column!r} ({kind}, {origin}) is not in the file; its columns "
                    f"are {', '.join(schema.names[:50])}",
                )
    for column in spec.entities:
        dtype = schema.field(column).type
        if not is_key_type(dtype):
            raise _problem(
                "entities",
                f"entity column {column!r} is {dtype}; a join key must be an integer or a string",
            )
    times = (("timestamp", spec.timestamp), ("created_timestamp", spec.created_timestamp))
    for kind, time_column in times:
        if time_column is None:
            continue
        column = time_column
        dtype = schema.field(column).type
        if not is_time_type(dtype):
            raise _problem(
                kind,
                f"{kind} column {column!r} is {dtype}, not a timestamp or a date; write it as a "
                "Parquet timestamp (a naive one is read as UTC)",
            )
    for column in [*spec.entities, spec.timestamp]:
        nulls = _null_count(parquet, column)
        if nulls:
            raise _problem(
                "entities" if column in spec.entities else "timestamp",
                f"column {column!r} has {nulls} null value(s) in {info.rows} rows; every row "
                "of a feature table needs its key and its event time",
            )
    if not feature_columns(info, spec):
        raise _problem("entities", "the file has no feature columns besides keys and times")


def _null_count(parquet: pq.ParquetFile, column: str) -> int:
    total = 0
    for group in range(parquet.metadata.num_row_groups):
        total += (
            parquet.read_row_group(group, columns=[column], use_threads=False).column(0).null_count
        )
    return total

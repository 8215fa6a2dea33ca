"""Feature tables (DESIGN 9): checking a declaration against the Parquet file it describes.

A declaration (``FeatureTableSpec``: entities, timestamp, created_timestamp, ttl) comes with an
upload or is inherited from the previous version; either way the uploaded file must have every
named column, key columns of an integer or string type (dictionary-encoded or not) without
nulls, and time columns of a timestamp or date type. A failure is a 400 naming the column,
raised before the file is installed, so nothing is stored.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cairn.errors import InvalidRequest
from cairn.models import FeatureTableSpec, TableInfo


def _problem(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"The feature table declaration does not fit the Parquet file: {message}",
        errors=[{"field": field, "message": message}],
    )


def key_value_type(dtype: pa.DataType) -> pa.DataType:
    """The type a key column's values have: a dictionary-encoded column (what pandas writes for
    a ``category``) holds its dictionary's values, and keys are compared as those."""
    return dtype.value_type if pa.types.is_dictionary(dtype) else dtype


def is_key_type(dtype: pa.DataType) -> bool:
    dtype = key_value_type(dtype)
    return (
        pa.types.is_integer(dtype) or pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
    )


_DICTIONARY = re.compile(r"dictionary<values=(.+), indices=\w+, ordered=[01]>")


def key_type_name(type_name: str) -> str:
    """A key column's type as its values have it, from the name a version's schema records
    (``dictionary<values=string, indices=int32, ordered=0>`` is ``string``)."""
    match = _DICTIONARY.fullmatch(type_name)
    return match.group(1) if match else type_name


def decoded(array: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``array`` with its dictionary (if any) expanded to the values, for comparing keys."""
    if pa.types.is_dictionary(array.type):
        return array.cast(array.type.value_type)
    return array


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
    for kind, time_column in times:
        far = _far_times(parquet, time_column) if time_column else 0
        if far:
            raise _problem(
                kind,
                f"{kind} column {time_column!r} has {far} time(s) outside the range of a "
                "microsecond timestamp (about 292,000 years either side of 1970), which serving "
                "and point-in-time joins compare in; fix or drop those rows",
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


# A time column's unit, in microseconds: materializing and point-in-time joins turn every time
# into int64 microseconds since 1970, which a coarser unit can overflow.
_MICROS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}
_MICROS_PER_DAY = 86_400_000_000
_INT64_MAX = 2**63 - 1


def _far_times(parquet: pq.ParquetFile, column: str) -> int:
    """How many times of ``column`` (a timestamp or a date) int64 microseconds cannot hold."""
    dtype = parquet.schema_arrow.field(column).type
    if pa.types.is_date32(dtype):
        per, as_int = _MICROS_PER_DAY, pa.int32()
    elif pa.types.is_date64(dtype):
        per, as_int = _MICROS_PER_UNIT["ms"], pa.int64()
    else:
        per, as_int = _MICROS_PER_UNIT[dtype.unit], pa.int64()
    if per == 1:
        return 0
    bound = _INT64_MAX // per
    far = 0
    for group in range(parquet.metadata.num_row_groups):
        values = parquet.read_row_group(group, columns=[column], use_threads=False).column(0)
        ints = pc.cast(values, as_int)
        outside = pc.or_(pc.less(ints, -bound), pc.greater(ints, bound))
        far += pc.sum(outside).as_py() or 0
    return far


def _null_count(parquet: pq.ParquetFile, column: str) -> int:
    total = 0
    for group in range(parquet.metadata.num_row_groups):
        total += (
            parquet.read_row_group(group, columns=[column], use_threads=False).column(0).null_count
        )
    return total

"""Declared data checks (DESIGN 10), evaluated exactly on a table, with a failing sample.

A check is ``{"type": ..., "column": ..., "on_fail": "warn"|"reject", ...}``; types:
``row_count`` (min/max), ``not_null``, ``unique``, ``range`` (min/max), ``allowed_values``
(values), ``freshness`` (max_age in seconds, over a timestamp column). Only the column a check
names is read, one at a time, so memory is one column whatever the table's width.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cairn.models import Check

SAMPLE = 5


def _problem(check: Check, columns: list[str]) -> str | None:
    if check.type == "row_count":
        return None
    if check.column is None:
        return f"check {check.label()} needs a column"
    if check.column not in columns:
        return f"column {check.column!r} is not in the table (columns: {', '.join(columns[:20])})"
    if check.type == "allowed_values" and check.values is None:
        return f"check {check.label()} needs values"
    if check.type == "freshness" and check.max_age is None:
        return f"check {check.label()} needs max_age"
    return None


def _sample(values: pa.Array | pa.ChunkedArray) -> list[Any]:
    return [_shown(v) for v in values.slice(0, SAMPLE).to_pylist()]


def _shown(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    if isinstance(value, float) and value != value:
        return "NaN"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def evaluate(
    checks: list[Check], source: Path | BinaryIO | pa.Table, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Results of ``checks`` on a Parquet file (path or open file) or a table in memory."""
    now = now or datetime.now(UTC)
    if isinstance(source, pa.Table):
        return _evaluate(checks, source.num_rows, source.schema.names, source.column, now)
    with pq.ParquetFile(source) as handle:

        def column(name: str) -> pa.ChunkedArray:
            return handle.read(columns=[name]).column(0)

        rows = handle.metadata.num_rows
        return _evaluate(checks, rows, handle.schema_arrow.names, column, now)


def _evaluate(
    checks: list[Check],
    rows: int,
    names: list[str],
    read: Callable[[str], pa.ChunkedArray],
    now: datetime,
) -> list[dict[str, Any]]:
    results = []
    for check in checks:
        result: dict[str, Any] = {
            "name": check.label(),
            "type": check.type,
            "column": check.column,
            "on_fail": check.on_fail,
        }
        problem = _problem(check, names)
        if problem is not None:
            results.append({**result, "passed": False, "observed": problem, "failing": []})
            continue
        column = read(check.column) if check.column is not None else None
        try:
            passed, observed, failing = _run(check, rows, column, now)
        except (pa.ArrowException, TypeError, ValueError, AttributeError) as exc:
            # A range over text, a freshness over numbers: the check fails and says why.
            kind = column.type if column is not None else "?"
            passed, observed, failing = False, f"cannot evaluate on a {kind} column: {exc}", []
        results.append({**result, "passed": passed, "observed": observed, "failing": failing})
    return results


def _allowed(allowed: list[Any], values: pa.ChunkedArray) -> pa.Array:
    """The allowed values the column's type holds exactly. One it cannot hold (1.5 or 300 for
    an int8 column) matches no value; an unsafe cast made them 1 and 44, which then passed."""
    held = []
    for value in allowed:
        try:
            held.append(pa.array([value]).cast(values.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
            continue
    return pa.concat_arrays(held) if held else pa.array([], values.type)


def _integers_outside(values: pa.ChunkedArray, low: float | None, high: float | None) -> Any:
    """Which integers lie outside [low, high], compared exactly. Arrow compares an integer
    column with a float bound by casting the column to double, which rounds past 2**53 and
    refuses int64 and uint64 values beyond it; the bounds are brought to the column's type
    instead (an integer is below ``low`` exactly when it is below ``ceil(low)``)."""
    signed = pa.types.is_signed_integer(values.type)
    bits = values.type.bit_width
    smallest = -(1 << (bits - 1)) if signed else 0
    largest = (1 << (bits - signed)) - 1
    mask: Any = pa.array([False] * len(values))
    # A bound past the type's range holds every value, or none (an infinite one too).
    if low is not None and low > smallest:
        below = pc.less(values, pa.scalar(math.ceil(low), values.type)) if low <= largest else True
        mask = pc.or_(mask, below)
    if high is not None and high < largest:
        above = (
            pc.greater(values, pa.scalar(math.floor(high), values.type))
            if high >= smallest
            else True
        )
        mask = pc.or_(mask, above)
    return mask


def _run(
    check: Check, rows: int, column: pa.ChunkedArray | None, now: datetime
) -> tuple[bool, Any, list[Any]]:
    if check.type == "row_count":
        low = check.min if check.min is not None else float("-inf")
        high = check.max if check.max is not None else float("inf")
        return low <= rows <= high, rows, []
    assert column is not None
    if pa.types.is_dictionary(column.type):
        # A pandas category: checked as its values (is_in matches no dictionary-typed set).
        column = column.cast(column.type.value_type)
    if check.type == "not_null":
        nulls = column.null_count
        where = pc.indices_nonzero(pc.is_null(column)) if nulls else pa.array([], pa.uint64())
        return nulls == 0, nulls, [f"row {i}" for i in _sample(where)]
    if check.type == "unique":
        counted = pc.value_counts(column.drop_null())
        repeated = counted.filter(pc.greater(counted.field("counts"), 1))
        return len(repeated) == 0, len(repeated), _sample(repeated.field("values"))
    if check.type == "range":
        values = column.drop_null()
        if pa.types.is_integer(values.type):
            mask = _integers_outside(values, check.min, check.max)
        else:
            if not pa.types.is_floating(values.type):
                values = pc.cast(values, pa.float64())
            mask = pc.is_nan(values)
            if check.min is not None:
                mask = pc.or_(mask, pc.less(values, check.min))
            if check.max is not None:
                mask = pc.or_(mask, pc.greater(values, check.max))
        bad = values.filter(mask)
        return len(bad) == 0, len(bad), _sample(bad)
    if check.type == "allowed_values":
        assert check.values is not None
        values = column.drop_null()
        bad = values.filter(pc.invert(pc.is_in(values, value_set=_allowed(check.values, values))))
        return len(bad) == 0, len(bad), _sample(bad)
    # freshness: the newest timestamp of the column is at most max_age old.
    assert check.max_age is not None
    newest = pc.max(column).as_py()
    if newest is None:
        return False, None, []
    if isinstance(newest, datetime):
        moment = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
    else:
        moment = datetime(newest.year, newest.month, newest.day, tzinfo=UTC)
    age = (now - moment).total_seconds()
    return age <= check.max_age, {"newest": moment.isoformat(), "age_seconds": age}, []

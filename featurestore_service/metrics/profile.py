"""Column profiles of Arrow data, in one streaming pass over record batches.

Per column: rows, nulls, NaN and infinities, distinct (HyperLogLog, ``hll``), min/max/mean/
stddev over finite values, quantiles and a histogram (a KLL sketch from Apache DataSketches,
whose serialised form is kept so drift can compare whole distributions later), and the most
frequent values of string and boolean columns. A duration is a number of its unit, a time of
day a number of its unit since midnight (its min and max shown as times); an interval, which
has no order, gets counts only. Memory is bounded per column whatever the row count: the
sketches are fixed-size and the frequency table is pruned (``TOP_KEEP``).
"""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from datasketches import kll_doubles_sketch

from cairn.epochs import epoch_text, epoch_unit
from featurestore_service.metrics.hll import HyperLogLog, hash_strings
from featurestore_service.table_limits import READ_BUFFER_BYTES

KLL_K = 200  # normalised rank error ≈ 1.3 % (DataSketches' documented bound, 99 % confidence)
QUANTILES = (0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0)
HISTOGRAM_BINS = 20
TOP_SHOWN = 20  # top values kept in a profile
TOP_KEEP = 10_000  # frequency-table entries kept while counting; past TOP_LIMIT it is pruned
TOP_LIMIT = 50_000
MAX_SHOWN_CHARS = 200  # a huge string is shown (and keyed) by its first characters
BATCH_ROWS = 65_536


def kind_of(dtype: pa.DataType) -> str:
    if pa.types.is_boolean(dtype):
        return "boolean"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "numeric"
    if pa.types.is_duration(dtype):
        return "numeric"  # a length of time: profiled as its count of the type's unit
    if pa.types.is_interval(dtype):
        return "other"  # months, days and nanoseconds apart: neither ordered nor one number
    if pa.types.is_temporal(dtype):
        return "temporal"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_dictionary(dtype):
        # A pandas category: profiled as its values (decoded in update); times stay "other",
        # as their labels are read off the column's own type.
        value_kind = kind_of(dtype.value_type)
        return value_kind if value_kind in ("numeric", "boolean", "string") else "other"
    return "other"


class ColumnProfiler:
    def __init__(self, name: str, dtype: pa.DataType):
        self.name = name
        self.dtype = dtype
        self.kind = kind_of(dtype)
        self.rows = 0
        self.nulls = 0
        self.nan = 0
        self.infinite = 0
        self.finite = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.low: Any = None
        self.high: Any = None
        self.hll = HyperLogLog()
        self.kll = kll_doubles_sketch(KLL_K) if self.kind in ("numeric", "temporal") else None
        self.parts: list[pa.Table] = []  # value counts of string columns, merged lazily
        self.part_rows = 0
        self.counts_exact = True
        self.shift: float | None = None  # first finite value: sums are taken around it

    def update(self, column: pa.Array | pa.ChunkedArray) -> None:
        self.rows += len(column)
        self.nulls += column.null_count
        if pa.types.is_dictionary(column.type) and self.kind != "other":
            column = column.cast(column.type.value_type)
        if pa.types.is_duration(column.type):
            column = pc.cast(column, pa.int64())  # Arrow has no min_max for durations
        if self.kind in ("numeric", "temporal"):
            self._numbers(column)
        elif self.kind in ("string", "boolean"):
            self._categories(column)
        else:
            self._other(column)

    def _numbers(self, column: pa.Array | pa.ChunkedArray) -> None:
        if self.kind == "temporal":
            # Bounds kept as numbers and shown as times in result(): a time Python's datetime
            # cannot hold (a feature table may hold any microsecond timestamp) would raise here.
            column = _as_int64(column)
            low_high = pc.min_max(column)
            self._extend(low_high["min"].as_py(), low_high["max"].as_py())
        values = pc.cast(column.drop_null(), pa.float64(), safe=False)
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        array = _numpy_view(values, np.float64)
        finite_mask = np.isfinite(array)
        finite = array if finite_mask.all() else array[finite_mask]
        self.nan += int(np.count_nonzero(np.isnan(array)))
        self.infinite += int(np.count_nonzero(np.isinf(array)))
        self.hll.add_numbers(array)
        if finite.size == 0:
            return
        if self.shift is None:
            self.shift = float(finite[0])
        # Sums around the first value, so stddev keeps its digits when values are far from 0.
        centred = finite - self.shift
        self.finite += int(finite.size)
        self.total += float(centred.sum())
        self.total_sq += float(np.dot(centred, centred))
        if self.kind == "numeric":
            self._extend(float(finite.min()), float(finite.max()))
        assert self.kll is not None
        # The binding refuses read-only arrays (Arrow hands out zero-copy views).
        self.kll.update(finite if finite.flags.writeable else finite.copy())

    def _extend(self, low: Any, high: Any) -> None:
        if low is not None and (self.low is None or low < self.low):
            self.low = low
        if high is not None and (self.high is None or high > self.high):
            self.high = high

    def _categories(self, column: pa.Array | pa.ChunkedArray) -> None:
        # Counting stays in Arrow: per-batch value counts are merged with a group-by when they
        # pile up, so Python never loops over values; only values pruned from the table (past
        # TOP_LIMIT distinct) are hashed into the HyperLogLog.
        if self.kind == "boolean":
            column = pc.cast(column, pa.string())
        values = column.drop_null()
        if len(values) == 0:
            return
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        counted = pc.value_counts(values)
        self.parts.append(
            pa.table({"values": counted.field("values"), "counts": counted.field("counts")})
        )
        self.part_rows += len(counted)
        low_high = pc.min_max(values)
        self._extend(low_high["min"].as_py(), low_high["max"].as_py())
        if self.part_rows > TOP_LIMIT:
            self._merge()

    def _merge(self) -> pa.Table:
        if not self.parts:
            return COUNTS_SCHEMA.empty_table()
        merged = pa.concat_tables(self.parts, promote_options="permissive")
        if len(self.parts) > 1:
            merged = _summed(merged)
        if len(merged) > TOP_LIMIT:
            order = pc.sort_indices(merged, sort_keys=[("counts", "descending")])
            merged = merged.take(order)
            dropped = merged.column("values").slice(TOP_KEEP)
            self.hll.add_hashes(hash_strings(dropped.to_pylist()))
            merged = merged.slice(0, TOP_KEEP)
            self.counts_exact = False
        self.parts = [merged]
        self.part_rows = len(merged)
        return merged

    def _other(self, column: pa.Array | pa.ChunkedArray) -> None:
        # Nested and binary values: counts only; distinct over their text form is not worth it.
        return

    def _shown_bound(self, value: Any) -> Any:
        """A temporal column's min or max as its date or time; the number of its unit when
        Python's datetime cannot hold it (past year 9999)."""
        if self.kind != "temporal" or value is None:
            return value
        storage = pa.int32() if self.dtype.bit_width == 32 else pa.int64()
        try:
            return pa.array([value], storage).view(self.dtype)[0].as_py()
        except (OverflowError, ValueError):
            return value

    def result(self) -> tuple[dict[str, Any], str | None]:
        count = self.rows - self.nulls
        out: dict[str, Any] = {
            "name": self.name,
            "type": str(self.dtype),
            "kind": self.kind,
            "rows": self.rows,
            "count": count,
            "nulls": self.nulls,
            "null_rate": (self.nulls / self.rows) if self.rows else 0.0,
            "distinct": None if self.kind == "other" else min(self.hll.estimate(), count),
            "nan": self.nan,
            "infinite": self.infinite,
            "min": _json_value(self._shown_bound(self.low)),
            "max": _json_value(self._shown_bound(self.high)),
            "mean": None,
            "stddev": None,
            "quantiles": None,
            "histogram": None,
            "top": None,
            "top_exact": None,
        }
        sketch = None
        if self.kll is not None and not self.kll.is_empty():
            if self.finite and self.shift is not None:
                mean_c = self.total / self.finite
                variance = max(0.0, self.total_sq / self.finite - mean_c * mean_c)
                if self.kind == "numeric":
                    out["mean"] = mean_c + self.shift
                    out["stddev"] = math.sqrt(variance)
            out["quantiles"] = {str(q): float(self.kll.get_quantile(q)) for q in QUANTILES}
            out["histogram"] = histogram(self.kll)
            sketch = base64.b64encode(self.kll.serialize()).decode("ascii")
        if self.kind in ("string", "boolean"):
            merged = self._merge()
            if self.counts_exact:
                out["distinct"] = len(merged)
            else:
                self.hll.add_hashes(hash_strings(merged.column("values").to_pylist()))
                out["distinct"] = min(self.hll.estimate(), count)
            order = pc.sort_indices(
                merged, sort_keys=[("counts", "descending"), ("values", "ascending")]
            )
            top = merged.take(order[:TOP_SHOWN]).to_pylist()
            out["top"] = [{"value": _shown(t["values"]), "count": t["counts"]} for t in top]
            out["top_exact"] = self.counts_exact
        return out, sketch


# What an empty frequency table holds (the value type a merge of several widens to).
COUNTS_SCHEMA = pa.schema([("values", pa.large_string()), ("counts", pa.int64())])


def _summed(counts: pa.Table) -> pa.Table:
    """One row per distinct value, its counts added up, in order of first appearance.

    Not ``Table.group_by``: that loads pyarrow's query engine and datasets, which import
    pandas where it is installed (about 36 MiB a service then keeps for good).
    """
    encoded = pc.dictionary_encode(counts.column("values").combine_chunks())
    indices = _numpy_view(encoded.indices, np.int32)
    weights = _numpy_view(counts.column("counts").combine_chunks(), np.int64)
    # Float weights add exactly while a value's total stays below 2**53 rows.
    sums = np.bincount(indices, weights=weights, minlength=len(encoded.dictionary))
    return pa.table(
        {
            "values": encoded.dictionary,
            "counts": pa.Array.from_buffers(
                pa.int64(), len(sums), [None, pa.py_buffer(sums.astype(np.int64))]
            ),
        }
    )


def _numpy_view(array: pa.Array, dtype: type[np.generic]) -> np.ndarray:
    """A null-free fixed-width array as numpy, without a copy. Not ``Array.to_numpy``: that
    imports pandas where it is installed."""
    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    width = np.dtype(dtype).itemsize
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * width
    )


def histogram(kll: kll_doubles_sketch, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """Equal-width bins between min and max, their counts read from the sketch's PMF."""
    low, high = float(kll.get_min_value()), float(kll.get_max_value())
    n = kll.n
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return {"edges": [low, high], "counts": [n]}
    step = (high - low) / bins
    splits = [low + step * i for i in range(1, bins)]
    if len(set(splits)) != len(splits):
        return {"edges": [low, high], "counts": [n]}
    masses = kll.get_pmf(splits, inclusive=False)
    return {
        "edges": [low, *splits, high],
        "counts": [round(m * n) for m in masses],
    }


def _as_int64(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    dtype = column.type
    if pa.types.is_date32(dtype) or pa.types.is_time32(dtype):
        # Arrow casts these to their own 32-bit width only.
        return pc.cast(column, pa.int32()).cast(pa.int64())
    if pa.types.is_timestamp(dtype) or pa.types.is_date64(dtype):
        return (
            column.view(pa.int64()) if isinstance(column, pa.Array) else pc.cast(column, pa.int64())
        )
    return pc.cast(column, pa.int64(), safe=False)


def _shown(value: str) -> str:
    return value if len(value) <= MAX_SHOWN_CHARS else value[:MAX_SHOWN_CHARS] + "…"


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return _shown(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def profile_batches(
    schema: pa.Schema, batches: Iterable[pa.RecordBatch], *, rows: int | None = None
) -> dict[str, Any]:
    """The profile of a stream of batches; ``rows`` is the full row count when sampled."""
    profilers = [ColumnProfiler(f.name, f.type) for f in schema]
    seen = 0
    for batch in batches:
        seen += batch.num_rows
        for profiler, column in zip(profilers, batch.columns, strict=True):
            profiler.update(column)
    return _profile_of(profilers, seen, rows)


def _profile_of(profilers: list[ColumnProfiler], seen: int, rows: int | None) -> dict[str, Any]:
    columns = []
    sketches: dict[str, str] = {}
    for profiler in profilers:
        column, sketch = profiler.result()
        columns.append(column)
        if sketch is not None:
            sketches[profiler.name] = sketch
    total = seen if rows is None else rows
    return {
        "rows": total,
        "profiled_rows": seen,
        "sampled": seen < total,
        "computed_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "columns": columns,
        "sketches": sketches,
    }


def sampled(
    batches: Iterable[pa.RecordBatch], rows: int, limit: int, seed: int
) -> Iterator[pa.RecordBatch]:
    """Each row kept with probability limit / rows (seeded, so a profile is reproducible)."""
    if rows <= limit:
        yield from batches
        return
    masks = _SampleMasks(rows, limit, seed)
    for batch in batches:
        yield batch.filter(masks.next(batch.num_rows))


class _SampleMasks:
    """The keep-or-drop draws of ``sampled``, batch after batch: row i is kept when the i-th
    uniform draw of a generator seeded with ``seed`` is below limit / rows, however the rows
    are split into batches, so every column read apart draws the same rows."""

    def __init__(self, rows: int, limit: int, seed: int):
        self.rate = limit / rows
        self.rng = np.random.default_rng(seed)

    def next(self, count: int) -> pa.Array:
        keep = self.rng.random(count) < self.rate
        # Built from the bits, not with pa.array(): that imports pandas where it is installed.
        bits = pa.py_buffer(np.packbits(keep, bitorder="little"))
        return pa.Array.from_buffers(pa.bool_(), count, [None, bits])


def profile_table(table: pa.Table, *, sample_rows: int = 0, seed: int = 0) -> dict[str, Any]:
    batches: Iterable[pa.RecordBatch] = table.to_batches(max_chunksize=BATCH_ROWS)
    if sample_rows:
        batches = sampled(batches, table.num_rows, sample_rows, seed)
    return profile_batches(table.schema, batches, rows=table.num_rows)


def profile_parquet(
    source: Path | BinaryIO, *, sample_rows: int = 0, seed: int | None = None
) -> dict[str, Any]:
    """Streams a Parquet file one column at a time, batch by batch: memory is one batch of
    one column plus the sketches.

    Past ``sample_rows`` rows, evenly spaced row groups are read until they hold that many
    rows, and each row is then kept with the probability that brings the sample to size: a
    remote file is never read whole for a profile.
    """
    # Buffered, not pre-buffered (pyarrow's default): a picked row group's column chunks are
    # then not held whole, so memory does not grow with the row group.
    with pq.ParquetFile(source, pre_buffer=False, buffer_size=READ_BUFFER_BYTES) as handle:
        meta = handle.metadata
        rows = meta.num_rows
        groups = list(range(meta.num_row_groups))
        if sample_rows and rows > sample_rows and len(groups) > 1:
            sizes = [meta.row_group(i).num_rows for i in groups]
            step = max(1, len(groups) * sample_rows // rows)
            picked: list[int] = []
            for start in range(0, len(groups), max(1, len(groups) // step)):
                picked.append(groups[start])
                if sum(sizes[i] for i in picked) >= sample_rows:
                    break
            groups = sorted(picked)
        schema = handle.schema_arrow
        read = sum(meta.row_group(i).num_rows for i in groups)
        if sample_rows and read > sample_rows:
            seed = seed or random.randrange(1 << 30)
        else:
            sample_rows = 0
        names = schema.names
        if not names or len(set(names)) != len(names):
            # Columns are read by name: a file without any or with a name twice is read whole.
            batches: Iterable[pa.RecordBatch] = handle.iter_batches(
                batch_size=BATCH_ROWS, row_groups=groups, use_threads=False
            )
            if sample_rows:
                batches = sampled(batches, read, sample_rows, cast(int, seed))
            return profile_batches(schema, batches, rows=rows)
        profilers = [ColumnProfiler(f.name, f.type) for f in schema]
        seen = 0
        for profiler in profilers:
            # A reader decodes every column it reads side by side, each with its own buffers
            # and pages (about 80 MiB at 64k rows x 20 columns): one column at a time keeps a
            # few MiB. Each column sees the same batches, and the same sampled rows, as a read
            # of all columns would give it.
            masks = _SampleMasks(read, sample_rows, cast(int, seed)) if sample_rows else None
            seen = 0
            for batch in handle.iter_batches(
                batch_size=BATCH_ROWS, row_groups=groups, columns=[profiler.name], use_threads=False
            ):
                column = batch.column(0)
                if masks is not None:
                    column = column.filter(masks.next(len(column)))
                seen += len(column)
                profiler.update(column)
                del batch, column
        return _profile_of(profilers, seen, rows)


def profile_csv(
    source: BinaryIO, *, sample_rows: int = 0, delimiter: str = ",", encoding: str = "utf8"
) -> tuple[dict[str, Any], pa.Table]:
    """The first ``sample_rows`` rows of a CSV file (all when 0), streamed; also returns them
    (checks of a CSV file run on what was read). A prefix, so ``sampled`` says when it stopped
    early: the file's row count is then unknown and ``rows`` is what was read. ``delimiter``
    and ``encoding``: the file's, as its schema was read (``crawler.enrich.csv_dialect``)."""
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(encoding=encoding),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
    )
    kept: list[pa.RecordBatch] = []
    seen = 0
    stopped = False
    for batch in reader:
        if sample_rows and seen + batch.num_rows > sample_rows:
            batch = batch.slice(0, sample_rows - seen)
            stopped = True
        kept.append(batch)
        seen += batch.num_rows
        if stopped:
            break
    table = pa.Table.from_batches(kept, schema=reader.schema)
    profile = profile_batches(table.schema, table.to_batches(max_chunksize=BATCH_ROWS))
    profile["sampled"] = stopped
    return profile, table


def with_dates(column: dict[str, Any]) -> dict[str, Any]:
    """A column's profile as the API shows it: a date or timestamp column's quantiles as ISO
    8601 text, and its histogram with ``labels`` (each edge as ISO) beside the numeric
    ``edges`` that charts and drift use."""
    unit = epoch_unit(str(column.get("type", "")))
    if unit is None:
        return column
    out = dict(column)
    quantiles = column.get("quantiles")
    if isinstance(quantiles, dict):
        out["quantiles"] = {
            q: epoch_text(v, unit) if isinstance(v, int | float) else v
            for q, v in quantiles.items()
        }
    histogram = column.get("histogram")
    if isinstance(histogram, dict) and isinstance(histogram.get("edges"), list):
        labels = [epoch_text(e, unit) for e in histogram["edges"] if isinstance(e, int | float)]
        out["histogram"] = {**histogram, "labels": labels}
    out["epoch_unit"] = unit
    return out


def sketch_of(encoded: str) -> kll_doubles_sketch:
    return kll_doubles_sketch.deserialize(base64.b64decode(encoded))

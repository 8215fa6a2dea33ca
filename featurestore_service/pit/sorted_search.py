"""The point-in-time engine: binary searches over a sorted index of each feature table.

For each table, ``TableIndex`` reads the keys, the event times, the tie-break columns and the
wanted features once, and sorts the rows by (entity key, event time, created time, row in the
file). An entity row's answer is then the last index entry at or below (its key, its time): one
``numpy.searchsorted`` per batch, then a gather of the feature columns. Batches of the entity
frame are answered in order, so the answer keeps the frame's order without sorting it.

How keys and times become one sortable number. Keys (one or several columns, integers or
strings) are coded 0..K-1 by their position among the table's distinct keys; an entity key the
table does not have gets no code. Times are ranked among the table's distinct event times
(1..T), and an entity row's time becomes the count of distinct table times at or below it. With
R = T + 1, ``code * R + rank`` orders rows by key, then time, and a table row is at or below an
entity row exactly when it sorts at or below it under the same code. K and T are at most the
table's row count, so the number fits in 64 bits for any table below three billion rows.

Times are compared in the table's own unit. A finer entity time is floored to that unit, which
changes no comparison because every table time is a whole number of units; its ttl cutoff is
counted from the next whole unit instead (``ttl_cutoffs``), as the floor would make it younger.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cairn.errors import InvalidRequest
from featurestore_service.pit.base import ENTITY_TIMESTAMP, FeatureTable
from featurestore_service.pit.entity_frame import EntityFrame
from featurestore_service.tables import damaged_file

UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
INT64_MIN = np.iinfo(np.int64).min
INT64_MAX = np.iinfo(np.int64).max
_SIGN = np.uint64(1 << 63)
# Fixed-width types gathered as raw values with numpy (ten times faster than pyarrow's take
# with null indices); anything else (strings, lists, booleans, decimals) goes through take.
_FIXED = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_timestamp,
    pa.types.is_date,
    pa.types.is_time,
    pa.types.is_duration,
)


def _problem(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, errors=[{"field": field, "message": message}])


def _key_kind(dtype: pa.DataType) -> str | None:
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_integer(dtype):
        return "integer"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    return None


def _plain(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _time_unit(dtype: pa.DataType) -> str:
    if pa.types.is_timestamp(dtype):
        return str(dtype.unit)
    return "s"  # a date is a whole number of days: seconds hold it exactly


def _counts(array: pa.Array, unit: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Times as int64 counts of their own unit (0 where null), whether each is not null, and
    the factor to multiply by (or the divisor to floor by) to count them in ``unit``."""
    array = _plain(array)
    dtype = array.type
    per = UNITS_PER_SECOND[unit]
    if pa.types.is_date32(dtype):
        raw = array.cast(pa.int32()).cast(pa.int64())
        source_per, days = 1, 86_400  # a date counts days: 1/86,400 per second
    elif pa.types.is_date64(dtype):
        raw, source_per, days = array.cast(pa.int64()), 1_000, 1
    else:
        raw, source_per, days = array.cast(pa.int64()), UNITS_PER_SECOND[str(dtype.unit)], 1
    valid = raw.is_valid().to_numpy(zero_copy_only=False)
    values = raw.fill_null(0).to_numpy()
    if per * days >= source_per:
        return values, valid, per * days // source_per, 1
    return values, valid, 1, source_per // (per * days)


def time_values(array: pa.Array, unit: str) -> np.ndarray:
    """Times as int64 counts of ``unit`` since the epoch, UTC (naive times are UTC already).

    Nulls become the smallest int64, so they sort first and never win a tie. A time beyond
    what ``unit`` counts in int64 (a date in 2300 against nanoseconds) is held at the end of
    that range, which keeps every comparison with a time of ``unit``: it is later (or earlier)
    than all of them. A finer time is floored to ``unit``, which changes no comparison either.
    """
    values, valid, factor, divisor = _counts(array, unit)
    if factor > 1:
        limit = INT64_MAX // factor
        out = np.clip(values, -limit, limit) * factor
        out[values > limit] = INT64_MAX
        out[values < -limit] = INT64_MIN
    elif divisor > 1:
        out = np.floor_divide(values, divisor)
    else:
        out = values  # the unit itself
    return np.where(valid, out, INT64_MIN)


def ttl_cutoffs(array: pa.Array, times: np.ndarray, unit: str, ttl: int) -> np.ndarray:
    """For each time of ``array`` (``times`` is its ``time_values``), the time just before
    ``ttl`` seconds before it in ``unit``, held inside int64: a row (whose time int64 holds) is
    within the ttl, at most ``ttl`` old as online serving and Feast count it, exactly when its
    time is greater. Exact for any time and ttl, where ``times - ttl`` alone could overflow and
    wrap around."""
    span = ttl * UNITS_PER_SECOND[unit] + 1
    if span >= 2**64:
        return np.full(len(times), INT64_MIN, dtype=np.int64)
    values, valid, factor, divisor = _counts(array, unit)
    if divisor > 1:
        # A time between two ticks of ``unit`` was floored to the earlier one: from there a
        # row ttl old by the tick is ttl and a fraction old by the time itself. Counted from
        # the next tick (the ceiling), a row's whole-unit time is within the ttl exactly when
        # it is. The floor of a finer time is far from INT64_MAX: adding 1 cannot overflow.
        times = times + (valid & (values % divisor != 0))
    # As unsigned offsets from INT64_MIN both ends fit, and the floor stops at INT64_MIN.
    offsets = times.view(np.uint64) ^ _SIGN
    step = np.uint64(span)
    cutoffs = ((np.maximum(offsets, step) - step) ^ _SIGN).view(np.int64)
    held = np.flatnonzero(times == INT64_MAX)
    if not len(held):
        return cutoffs
    # Times held at INT64_MAX may have been later still: their cutoffs from their own counts.
    for row in held:
        exact = int(values[row]) * factor // divisor - span
        cutoffs[row] = min(max(exact, INT64_MIN), INT64_MAX)
    return cutoffs


class _Column:
    """One feature column ready to gather: raw numpy values when fixed-width, else Arrow."""

    __slots__ = ("array", "type", "valid", "values")

    def __init__(self, array: pa.Array) -> None:
        self.type = array.type
        self.array = array
        self.values: np.ndarray | None = None
        self.valid: np.ndarray | None = None
        if any(test(array.type) for test in _FIXED) and array.type.bit_width % 8 == 0:
            width = array.type.bit_width // 8
            kind = "f" if pa.types.is_floating(array.type) else "i"
            buffer = array.buffers()[1]
            raw = np.frombuffer(buffer, dtype=f"<{kind}{width}", count=len(array) + array.offset)
            self.values = raw[array.offset :]
            if array.null_count:
                self.valid = array.is_valid().to_numpy(zero_copy_only=False)

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    def gather(self, rows: np.ndarray, found: np.ndarray, all_found: bool) -> pa.Array:
        """Values at ``rows``; null where ``found`` is false or the value itself is null."""
        if self.values is not None:
            valid = found if self.valid is None else found & self.valid[rows]
            bitmap = None if all_found and self.valid is None else _bitmap(valid)
            return pa.Array.from_buffers(
                self.type, len(rows), [bitmap, pa.py_buffer(self.values[rows])]
            )
        indices = pa.array(rows, mask=None if all_found else ~found)
        return pc.take(self.array, indices)


def _bitmap(valid: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


@dataclass(slots=True)
class _KeyStep:
    """How the codes of one more key column fold into the codes so far (composite keys)."""

    width: int  # distinct values of the new column
    combined: np.ndarray  # sorted distinct (code so far * width + new code) of the table


class TableIndex:
    """One feature table's rows sorted for point-in-time lookups, and its feature columns."""

    def __init__(self, table: FeatureTable) -> None:
        self.table = table
        parquet = pq.ParquetFile(table.path)
        schema = parquet.schema_arrow
        time_columns = [table.timestamp]
        if table.created_timestamp:
            time_columns.append(table.created_timestamp)
        wanted = list(dict.fromkeys([*table.entities, *time_columns, *table.features]))
        missing = [c for c in wanted if c not in schema.names]
        if missing:
            raise _problem(
                "features",
                f"Feature table {table.label} has no column(s) {', '.join(map(repr, missing))}",
            )
        data = parquet.read(columns=wanted)
        self.key_types = [schema.field(c).type for c in table.entities]
        self.unit = _time_unit(schema.field(table.timestamp).type)
        times = time_values(data.column(table.timestamp), self.unit)
        keys = [_plain(data.column(c)) for c in table.entities]
        # Rows a lookup can never choose: no event time or a null key (the upload check
        # refuses both; an older version may still hold them).
        usable = times != INT64_MIN
        for key in keys:
            if key.null_count:
                usable &= key.is_valid().to_numpy(zero_copy_only=False)

        self.dictionaries: list[pa.Array] = []
        self.steps: list[_KeyStep] = []
        codes = np.zeros(len(times), dtype=np.int64)
        for index, key in enumerate(keys):
            dictionary = pc.unique(key.filter(pa.array(usable)) if not usable.all() else key)
            dictionary = dictionary.drop_null()
            self.dictionaries.append(dictionary)
            column_codes = pc.index_in(key, value_set=dictionary, skip_nulls=True)
            column_codes = column_codes.fill_null(0).to_numpy().astype(np.int64)
            if index == 0:
                codes = column_codes
                continue
            folded = codes * len(dictionary) + column_codes
            combined, codes = np.unique(folded[usable], return_inverse=True)
            full = np.zeros(len(times), dtype=np.int64)
            full[usable] = codes
            codes = full
            self.steps.append(_KeyStep(width=len(dictionary), combined=combined))

        self.times = np.unique(times[usable])  # distinct event times, sorted
        ranks = np.searchsorted(self.times, times) + 1
        self.radix = len(self.times) + 1
        position = codes * self.radix + ranks
        if table.created_timestamp:
            created_type = schema.field(table.created_timestamp).type
            created = time_values(data.column(table.created_timestamp), _time_unit(created_type))
        else:
            created = np.zeros(len(times), dtype=np.int64)
        rows = np.arange(len(times), dtype=np.int64)
        # Sorted by (key, time, created, row): among equal (key, time) the last entry is the
        # one with the greatest created time, then the one written last in the file.
        order = np.lexsort((rows[usable], created[usable], position[usable]))
        self.sorted_positions = position[usable][order]
        self.sorted_rows = rows[usable][order]
        self.sorted_times = times[usable][order]
        self.columns = [_Column(_plain(data.column(c))) for c in table.features]
        self.nbytes = sum(c.nbytes for c in self.columns) + 4 * self.sorted_rows.nbytes

    # --- per request --------------------------------------------------------------------------

    def check_frame(self, schema: pa.Schema) -> None:
        """A 422 naming the first entity column the frame lacks or holds in the wrong type."""
        for column, table_type in zip(self.table.entities, self.key_types, strict=True):
            if column not in schema.names:
                raise _problem(
                    column,
                    f"The entity frame has no column {column!r}, the join key of feature table "
                    f"{self.table.label}; its columns are: {', '.join(schema.names[:50])}",
                )
            frame_type = schema.field(column).type
            if _key_kind(frame_type) != _key_kind(table_type):
                raise _problem(
                    column,
                    f"Column {column!r} of the entity frame is {frame_type}, but feature table "
                    f"{self.table.label} keys it as {table_type}; send it as "
                    f"{_key_kind(table_type)}s.",
                )

    def _codes(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """Each entity row's key code and whether the table has that key at all."""
        found = np.ones(batch.num_rows, dtype=bool)
        codes = np.zeros(batch.num_rows, dtype=np.int64)
        for position, column in enumerate(self.table.entities):
            key = _plain(batch.column(column))
            dictionary = self.dictionaries[position]
            if key.type != dictionary.type:
                if _key_kind(key.type) == "integer":
                    key, dictionary = _common_integers(key, dictionary)
                else:
                    dictionary = dictionary.cast(key.type)
            column_codes = pc.index_in(key, value_set=dictionary, skip_nulls=True)
            found &= column_codes.is_valid().to_numpy(zero_copy_only=False)
            column_codes = column_codes.fill_null(0).to_numpy().astype(np.int64)
            if position == 0:
                codes = column_codes
                continue
            step = self.steps[position - 1]
            folded = codes * step.width + column_codes
            at = np.searchsorted(step.combined, folded)
            inside = at < len(step.combined)
            at = np.where(inside, at, 0)
            found &= inside & (step.combined[at] == folded) if len(step.combined) else False
            codes = at
        return codes, found

    def lookup(self, batch: pa.RecordBatch) -> list[pa.Array]:
        """The feature columns for one batch of entity rows, in the batch's order."""
        if not len(self.sorted_positions):
            return [pa.nulls(batch.num_rows, column.type) for column in self.columns]
        codes, found = self._codes(batch)
        times = time_values(batch.column(ENTITY_TIMESTAMP), self.unit)
        ranks = np.searchsorted(self.times, times, side="right")
        wanted = codes * self.radix + ranks
        at = np.searchsorted(self.sorted_positions, wanted, side="right") - 1
        found &= at >= 0
        at = np.where(found, at, 0)
        # The entry found may belong to the previous key: then this key has no row so early.
        found &= self.sorted_positions[at] > codes * self.radix
        if self.table.ttl is not None:
            column = batch.column(ENTITY_TIMESTAMP)
            cutoffs = ttl_cutoffs(column, times, self.unit, self.table.ttl)
            found &= self.sorted_times[at] > cutoffs
        if not found.any():
            return [pa.nulls(batch.num_rows, column.type) for column in self.columns]
        rows = self.sorted_rows[at]
        all_found = bool(found.all())
        return [column.gather(rows, found, all_found) for column in self.columns]


def _common_integers(key: pa.Array, dictionary: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Both as int64 (unsigned 64-bit values past int64's range cannot match a signed key)."""
    if pa.types.is_uint64(key.type) or pa.types.is_uint64(dictionary.type):
        limit = np.iinfo(np.int64).max
        key = pc.if_else(pc.greater(key, limit), None, key) if pa.types.is_uint64(key.type) else key
        if pa.types.is_uint64(dictionary.type):
            dictionary = dictionary.filter(pc.less_equal(dictionary, limit))
    return key.cast(pa.int64()), dictionary.cast(pa.int64())


class IndexCache:
    """Built indexes by file and columns, least recently used dropped past ``max_bytes``.

    A version's file never changes, so an index is valid for as long as the file exists.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[object, ...], TableIndex] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _key(table: FeatureTable) -> tuple[object, ...]:
        return (
            table.sha256,
            table.entities,
            table.timestamp,
            table.created_timestamp,
            table.ttl,
            table.features,
        )

    def get(self, table: FeatureTable) -> TableIndex:
        key = self._key(table)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return _renamed(hit, table)
        with damaged_file(f"{table.name} version {table.version}", table.sha256):
            index = TableIndex(table)
        with self._lock:
            if index.nbytes <= self.max_bytes and key not in self._items:
                self._items[key] = index
                self._bytes += index.nbytes
                while self._bytes > self.max_bytes:
                    _, dropped = self._items.popitem(last=False)
                    self._bytes -= dropped.nbytes
        return index


def _renamed(index: TableIndex, table: FeatureTable) -> TableIndex:
    """``index`` serving ``table`` (same file and columns, maybe another name or version)."""
    if index.table == table:
        return index
    clone = object.__new__(TableIndex)
    for slot in vars(index):
        setattr(clone, slot, getattr(index, slot))
    clone.table = table
    return clone


class Job:
    """A planned join: the schema is final and every check has passed."""

    def __init__(self, frame: EntityFrame, indexes: list[TableIndex], schema: pa.Schema) -> None:
        self.frame = frame
        self.indexes = indexes
        self._schema = schema

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    @property
    def num_rows(self) -> int:
        return self.frame.num_rows

    def batches(self) -> Iterator[pa.RecordBatch]:
        for batch in self.frame.batches():
            columns = list(batch.columns)
            for index in self.indexes:
                columns.extend(index.lookup(batch))
            yield pa.RecordBatch.from_arrays(columns, schema=self._schema)

    def to_reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(self._schema, self.batches())

    def to_arrow(self) -> pa.Table:
        return self.to_reader().read_all()


class SortedSearchStore:
    """The offline store: point-in-time joins by binary search over cached table indexes."""

    def __init__(self, cache_bytes: int = 512 * 1024 * 1024) -> None:
        self.cache = IndexCache(cache_bytes)

    def get_historical_features(
        self,
        entity_frame: EntityFrame,
        tables: list[FeatureTable],
        metadata: dict[str, str] | None = None,
    ) -> Job:
        fields = list(entity_frame.schema)
        seen = {f.name: "the entity frame" for f in fields}
        indexes = []
        for table in tables:
            index = self.cache.get(table)
            index.check_frame(entity_frame.schema)
            indexes.append(index)
            for name, column in zip(table.output_names, index.columns, strict=True):
                if name in seen:
                    raise _problem(
                        "features",
                        f"Two columns of the answer would be named {name!r} ({seen[name]} and "
                        f"{table.label}); ask with full_feature_names=true for set__feature "
                        "names, or rename the entity frame's column.",
                    )
                seen[name] = f"feature table {table.label}"
                fields.append(pa.field(name, column.type, nullable=True))
        base = dict(entity_frame.schema.metadata or {})
        base.pop(b"pandas", None)  # describes the frame's columns only; readers trip on it
        for key, value in (metadata or {}).items():
            base[key.encode()] = value.encode()
        return Job(entity_frame, indexes, pa.schema(fields, metadata=base))

"""Materialization: the latest row per entity key of a feature-table version, into the store.

The Parquet file is read one record batch at a time (bounded memory, never the whole table):
each batch is reduced to its latest row per key with an Arrow sort, encoded once, and merged
into the target version's rows by the store, which keeps the greater (timestamp,
created_timestamp) per key. Progress is recorded per row group, so a materialization cut short
(a crash, SIGKILL) resumes at the first row group not yet written; merging is idempotent, so a
row group written twice changes nothing. Only when every row is in does the store switch the
live version.

A background task (started with the service) keeps each feature table's live version equal to
its latest live version: it is woken after every committed write of a set, and at start-up it
finishes what a previous process left half done and catches up with writes it never saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio.to_thread
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from cairn.errors import Conflict, NotFound
from cairn.paging import decode_cursor
from featurestore_service.backends.base import FeatureSetQuery, StoredVersion
from featurestore_service.feature_tables import decoded, feature_columns, key_type_name
from featurestore_service.online.base import (
    NO_CREATED,
    Batch,
    OnlineState,
    OnlineStore,
    OnlineTable,
)
from featurestore_service.service import FeatureStore
from featurestore_service.tables import (
    _has_floats,
    _json_default,
    damaged_file,
    finite_or_named,
    open_table,
)

log = logging.getLogger("cairn.featurestore.online")

BATCH_ROWS = 64 * 1024
RETRY_SECONDS = 5.0


def online_table(stored: StoredVersion) -> OnlineTable:
    """How ``stored`` (a feature-table version) is laid out online; Conflict if it is not one."""
    fs = stored.model()
    if fs.table is None or fs.feature_table is None:
        raise Conflict(
            f"Version {fs.version} of {fs.name!r} is not a feature table; upload it with "
            "entities= and timestamp= to serve it online."
        )
    spec = fs.feature_table
    types = {c.name: c.type for c in fs.table.columns}
    features = feature_columns(fs.table, spec)
    return OnlineTable(
        version=fs.version,
        entities=list(spec.entities),
        features=features,
        dtypes={
            **{name: key_type_name(types[name]) for name in spec.entities},
            **{name: types[name] for name in features},
        },
        ttl=spec.ttl,
        unit="ns" if types[spec.timestamp].startswith("timestamp[ns") else "us",
    )


def _stamps(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Counts since the epoch, UTC (a naive timestamp is read as UTC, a date as midnight):
    nanoseconds for a nanosecond column, which microseconds would turn into ties the
    point-in-time join does not see, else microseconds."""
    dtype = column.type
    if pa.types.is_date(dtype):
        column = column.cast(pa.timestamp("us"))
    elif dtype.unit not in ("us", "ns"):
        column = pc.cast(column, pa.timestamp("us", dtype.tz), safe=False)
    return column.cast(pa.int64())


def reduce_batch(batch: pa.RecordBatch, table: OnlineTable, ts: str, cts: str | None) -> Batch:
    """The latest row per key of ``batch``, encoded (later rows win a full tie)."""
    rows = batch.num_rows
    stamps = _stamps(batch.column(ts))
    created = (
        pc.fill_null(_stamps(batch.column(cts)), NO_CREATED)
        if cts
        else pa.array([NO_CREATED] * rows, pa.int64())
    )
    keys = {f"k{i}": decoded(batch.column(name)) for i, name in enumerate(table.entities)}
    order_table = pa.table(
        {**keys, "__ts": stamps, "__cts": created, "__i": pa.array(range(rows), pa.int64())}
    )
    order = pc.sort_indices(
        order_table,
        sort_keys=[(k, "ascending") for k in keys]
        + [(c, "ascending") for c in ("__ts", "__cts", "__i")],
    )
    if rows > 1:
        last = None
        for name in keys:
            column = order_table.column(name).take(order)
            differs = pc.not_equal(column.slice(0, rows - 1), column.slice(1))
            last = differs if last is None else pc.or_(last, differs)
        assert last is not None
        mask = pa.concat_arrays([last.combine_chunks(), pa.array([True])])
        order = order.filter(mask)
    chosen = batch.take(order)
    key_values = [chosen.column(name).to_pylist() for name in table.entities]
    feature_values = [_json_ready(chosen.column(name)) for name in table.features]
    dumps = orjson.dumps
    # bytes(memoryview(...)): orjson's answer keeps the spare capacity of its write buffer, about
    # 4 KiB per call, so 65,536 rows kept as they come would hold ~260 MB (measured); a copy of
    # the exact size is cheap and lets the big buffer go at once.
    return Batch(
        keys=[bytes(memoryview(dumps(list(k)))) for k in zip(*key_values, strict=True)],
        ts=stamps.take(order).to_pylist(),
        cts=created.take(order).to_pylist(),
        values=[
            bytes(memoryview(dumps(list(v), default=_json_default, option=orjson.OPT_NON_STR_KEYS)))
            for v in zip(*feature_values, strict=True)
        ],
    )


def batches(
    path: Path, table: OnlineTable, ts: str, cts: str | None, start_group: int
) -> Generator[tuple[Batch, int | None], None, None]:
    """Reduced batches from row group ``start_group`` on, each with the row groups done after it
    (None until the last batch of a row group)."""
    # Through a buffer: pq.ParquetFile(path) pre-buffers every column chunk of a row group, so
    # memory grew with the row group, which the uploader chose (one can be the whole table).
    parquet = open_table(path)
    columns = list(dict.fromkeys([*table.entities, ts, *([cts] if cts else []), *table.features]))
    for group in range(start_group, parquet.metadata.num_row_groups):
        pending: pa.RecordBatch | None = None
        for batch in parquet.iter_batches(
            batch_size=BATCH_ROWS, row_groups=[group], columns=columns, use_threads=False
        ):
            if pending is not None:
                yield reduce_batch(pending, table, ts, cts), None
            pending = batch
        if pending is not None:
            yield reduce_batch(pending, table, ts, cts), group + 1


class Materializer:
    def __init__(self, service: FeatureStore, online: OnlineStore):
        self.service = service
        self.online = online
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._locks: dict[str, asyncio.Lock] = {}
        self.caught_up = asyncio.Event()  # set once the start-up pass is done

    def notify(self, name: str) -> None:
        """A version of ``name`` was committed or deleted: bring its online rows in line."""
        self._pending.add(name)
        self._wake.set()

    async def run(self) -> None:
        await self._start_up()
        self.caught_up.set()
        while True:
            await self._wake.wait()
            self._wake.clear()
            names, self._pending = self._pending, set()
            for name in sorted(names):
                try:
                    await self.sync(name)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception(
                        "materializing %s failed; retrying in %.0f s", name, RETRY_SECONDS
                    )
                    self._retry_later(name)

    def _retry_later(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(RETRY_SECONDS, self.notify, name)

    async def _start_up(self) -> None:
        """Finishes materializations cut short, then catches up with every feature table."""
        try:
            names = set(await self.online.names()) | await self._feature_tables()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("online store start-up pass failed; retrying in %.0f s", RETRY_SECONDS)
            await asyncio.sleep(RETRY_SECONDS)
            return await self._start_up()
        for name in sorted(names):
            try:
                state = await self.online.state(name)
                if state is not None and state.target is not None:
                    stored = await self.service.store.get(name, state.target.version)
                    if stored is not None and not stored.deleted:
                        await self.materialize(stored, pinned=state.pinned)
                        if state.pinned:
                            continue
                elif state is not None and state.pinned:
                    continue
                await self.sync(name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("materializing %s failed; retrying in %.0f s", name, RETRY_SECONDS)
                self._retry_later(name)

    async def _feature_tables(self) -> set[str]:
        """Names whose latest live version is a feature table (read a page at a time)."""
        found: set[str] = set()
        cursor = None
        while True:
            hits = await self.service.store.search(
                FeatureSetQuery(limit=1000, cursor=cursor, full=False)
            )
            for doc in hits.docs:
                data = orjson.loads(doc)
                if data.get("feature_table"):
                    found.add(data["name"])
            if not hits.next_cursor:
                return found
            cursor = decode_cursor(hits.next_cursor)

    async def sync(self, name: str) -> OnlineState | None:
        """Makes the latest live version of ``name`` the live one online (or clears it)."""
        stored = await self.service.store.latest(name)
        if stored is None or stored.kind != "table" or stored.model().feature_table is None:
            if await self.online.state(name) is not None:
                await self.online.clear(name)
                log.info("%s has no live feature-table version; cleared online", name)
            return None
        state = await self.online.state(name)
        if (
            state is not None
            and state.live is not None
            and state.live.version == stored.version
            and state.target is None
            and not state.pinned
        ):
            return state
        return await self.materialize(stored, pinned=False)

    async def materialize_version(self, name: str, version: int | None) -> OnlineState:
        """``cairn featureset materialize NAME [--version N]``: now, and wait for it."""
        if version is None:
            stored = await self.service.latest(name)
            pinned = False
        else:
            stored = await self.service.get(name, version)
            if stored.deleted:
                raise Conflict(f"Version {version} of {name!r} is deleted; it cannot go online.")
            latest = await self.service.store.latest(name)
            pinned = latest is None or latest.version != version
        state = await self.materialize(stored, pinned=pinned)
        if state is None:
            raise Conflict(f"A newer version of {name!r} took over while this one was written.")
        return state

    async def materialize(self, stored: StoredVersion, *, pinned: bool) -> OnlineState | None:
        table = online_table(stored)
        spec = stored.model().feature_table
        assert spec is not None
        lock = self._locks.setdefault(stored.name, asyncio.Lock())
        async with lock:
            started = asyncio.get_running_loop().time()
            done = await self.online.begin(stored.name, table, pinned=pinned)
            if done:
                log.info("resuming %s version %d at row group %d", stored.name, table.version, done)
            lease = await self.service.checkout(stored)
            chunks = batches(lease.path, table, spec.timestamp, spec.created_timestamp, done)
            rows = 0
            try:
                while True:
                    with damaged_file(f"{stored.name} version {stored.version}", stored.blob):
                        item = await anyio.to_thread.run_sync(next, chunks, None)
                    if item is None:
                        break
                    batch, progress = item
                    rows += len(batch.keys)
                    await self.online.write(stored.name, table.version, batch, progress)
            finally:
                chunks.close()
                lease.release()
            switched = await self.online.switch(stored.name, table.version, datetime.now(UTC))
            if not switched:
                return None
            log.info(
                "materialized %s version %d online (%d reduced rows, %.2f s)",
                stored.name,
                table.version,
                rows,
                asyncio.get_running_loop().time() - started,
            )
            return await self.online.state(stored.name)

    async def state(self, name: str) -> OnlineState:
        state = await self.online.state(name)
        if state is None:
            await self.service.latest(name)  # 404 naming the set when there is none
            raise NotFound(
                f"Feature set {name!r} is not online: it is not a feature table, or it has not "
                f"been materialized yet (cairn featureset materialize {name})."
            )
        return state


def _json_ready(column: pa.Array | pa.ChunkedArray) -> list[Any]:
    """The column's values for a stored row: NaN and infinities as their JSON names, as in
    table rows and in Feast's answers (orjson would write null, which means missing)."""
    values = column.to_pylist()
    kind = column.type
    if not _has_floats(kind):
        return values
    if pa.types.is_floating(kind):
        odd = pc.or_(pc.is_nan(column), pc.is_inf(column))
        if not pc.any(odd).as_py():  # the common case: nothing to rename
            return values
    return [finite_or_named(value) for value in values]

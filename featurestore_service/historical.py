"""Training sets (``POST /api/v1/historical-features``): references resolved to versions, the
entity frame spooled to disk and checked, the point-in-time join streamed out.

Everything that can fail on the caller's input fails before the first byte of the answer: the
references (unknown set, version or feature, a set that is not a feature table, a name two
columns would share), the frame (unreadable, missing or mistyped columns, null times, no rows)
and the join's plan. The answer names the versions it used in the ``Cairn-Feature-Versions``
header and in its Arrow schema metadata, so the same training set can be rebuilt later by
pinning them (``set@3:feature``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from cairn.errors import BadRequest, InvalidRequest
from cairn.models import FeatureSet
from featurestore_service.backends.base import StoredVersion
from featurestore_service.blobstore import Lease
from featurestore_service.feature_tables import feature_columns
from featurestore_service.online.references import Wanted, parse_references
from featurestore_service.pit import EntityFrame, FeatureTable, SortedSearchStore
from featurestore_service.pit.base import RetrievalJob
from featurestore_service.service import FeatureStore
from featurestore_service.tables import ChunkSink

VERSIONS_HEADER = "Cairn-Feature-Versions"
VERSIONS_METADATA = "cairn.feature_versions"
FEATURES_METADATA = "cairn.features"
MAX_FEATURE_COLUMNS = 10_000
FLUSH_BYTES = 4 * 1024 * 1024


def release(leases: list[Lease]) -> None:
    for lease in leases:
        lease.release()


def _field(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(
        f"Fix this and send again: {field}: {message}",
        errors=[{"field": field, "message": message}],
    )


def _table(stored: FeatureSet, path: Path, ref: Wanted, full_feature_names: bool) -> FeatureTable:
    spec = stored.feature_table
    if stored.kind != "table" or stored.table is None or spec is None:
        raise _field(
            "features",
            f"set {stored.name!r} version {stored.version} is not a feature table; upload it "
            "with entities and timestamp declared (DESIGN 9) to join it point-in-time",
        )
    available = feature_columns(stored.table, spec)
    unknown = [f for f in ref.features if f not in available]
    if unknown:
        raise _field(
            "features",
            f"feature table {stored.name!r} version {stored.version} has no feature(s) "
            f"{', '.join(map(repr, unknown[:20]))}; its features are: "
            + ", ".join(available[:100]),
        )
    features = available if ref.star else ref.features
    return FeatureTable(
        name=stored.name,
        version=stored.version,
        path=path,
        sha256=stored.table.sha256,
        entities=tuple(spec.entities),
        timestamp=spec.timestamp,
        created_timestamp=spec.created_timestamp,
        ttl=spec.ttl,
        features=tuple(features),
        output_names=tuple(f"{stored.name}__{f}" if full_feature_names else f for f in features),
    )


class HistoricalFeatures:
    """The facade the historical route calls."""

    def __init__(
        self, features: FeatureStore, cache_bytes: int, max_row_group_bytes: int | None = None
    ) -> None:
        self.features = features
        self.engine = SortedSearchStore(cache_bytes)
        self.max_row_group_bytes = max_row_group_bytes

    async def resolve(
        self, references: list[str], full_feature_names: bool
    ) -> tuple[list[FeatureTable], list[Lease]]:
        """Each referenced set at its pinned version, or its live one (404/422 naming it),
        with its Parquet file checked out until the caller releases the leases (after
        ``plan``, which reads the files into the engine's indexes)."""
        tables: list[FeatureTable] = []
        blobs: list[StoredVersion] = []
        leases: list[Lease] = []
        try:
            for ref in parse_references(references):
                stored = await (
                    self.features.get(ref.name, ref.pinned)
                    if ref.pinned is not None
                    else self.features.latest(ref.name)
                )
                table = _table(stored.model(), Path(), ref, full_feature_names)
                tables.append(table)
                blobs.append(stored)
            columns = sum(len(t.features) for t in tables)
            if columns > MAX_FEATURE_COLUMNS:
                raise _field(
                    "features", f"{columns} feature columns; the limit is {MAX_FEATURE_COLUMNS}"
                )
            # Files last, once every reference is known good: a remote one may be fetched.
            for i, stored in enumerate(blobs):
                lease = await self.features.checkout(stored)
                leases.append(lease)
                tables[i] = replace(tables[i], path=lease.path)
        except BaseException:
            release(leases)
            raise
        return tables, leases

    async def spool(self, chunks: AsyncIterator[bytes]) -> Path:
        """The request body in a temporary file of the data folder (removed on failure)."""
        part = self.features.blobs.temp_path(".entities")
        handle: BinaryIO = await anyio.to_thread.run_sync(part.open, "wb")
        try:
            size = 0
            pending: list[bytes] = []
            pending_bytes = 0
            async for chunk in chunks:
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= FLUSH_BYTES:
                    await anyio.to_thread.run_sync(handle.writelines, pending)
                    size += pending_bytes
                    pending, pending_bytes = [], 0
            await anyio.to_thread.run_sync(handle.writelines, pending)
            size += pending_bytes
            await anyio.to_thread.run_sync(handle.close)
            if size == 0:
                raise BadRequest(
                    "The request body is empty; send the entity frame as the body (Parquet or "
                    "an Arrow IPC stream)."
                )
            return part
        except BaseException:
            handle.close()
            part.unlink(missing_ok=True)
            raise

    def plan(self, frame_path: Path, kind: str, tables: list[FeatureTable]) -> RetrievalJob:
        """Reads and checks the frame, builds (or reuses) the indexes: blocking, run in a thread."""
        frame = EntityFrame(frame_path, kind, max_row_group_bytes=self.max_row_group_bytes)
        versions = versions_text(tables)
        metadata = {
            VERSIONS_METADATA: versions,
            FEATURES_METADATA: orjson.dumps(
                [f"{t.name}@{t.version}:{f}" for t in tables for f in t.features]
            ).decode(),
        }
        return self.engine.get_historical_features(frame, tables, metadata)


def versions_text(tables: list[FeatureTable]) -> str:
    """``set=3,other=1``: the versions a training set was built from."""
    return ",".join(f"{t.name}={t.version}" for t in tables)


def _chunks(job: RetrievalJob, media: str) -> Generator[list[bytes | memoryview], None, None]:
    sink = ChunkSink()
    writer: pa.ipc.RecordBatchStreamWriter | pq.ParquetWriter
    if media == "parquet":
        writer = pq.ParquetWriter(sink, job.schema)
    else:
        writer = pa.ipc.new_stream(sink, job.schema)
    with writer:
        yield sink.take()
        for batch in job.to_reader():
            writer.write_batch(batch)
            yield sink.take()
    yield sink.take()  # the end-of-stream marker, or Parquet's footer


async def stream(job: RetrievalJob, media: str, spooled: Path) -> AsyncIterator[bytes | memoryview]:
    """The answer, one batch at a time from a worker thread; the spooled frame goes after."""
    chunks = _chunks(job, media)
    try:
        while True:
            parts = await anyio.to_thread.run_sync(next, chunks, None)
            if parts is None:
                return
            for part in parts:
                if part:
                    yield part
    finally:
        chunks.close()
        spooled.unlink(missing_ok=True)

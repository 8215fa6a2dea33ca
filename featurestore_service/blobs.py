"""Content-addressed Parquet files for tabular feature sets.

An upload is streamed to a temporary file in the data folder (never held in memory), hashed on
the way, checked to be readable Parquet, fsynced and renamed to ``<sha256>.parquet``; only then
does a version row name it. Equal uploads share one file. A failed or rejected upload leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
import pyarrow as pa
import pyarrow.parquet as pq

from cairn.errors import BadRequest
from cairn.models import SchemaField, TableInfo

log = logging.getLogger("cairn.featurestore.blobs")

FLUSH_BYTES = 4 * 1024 * 1024  # write to disk (off the event loop) in pieces of this size
MAX_COLUMNS = 10_000


@dataclass(slots=True)
class Blob:
    sha256: str
    path: Path
    info: TableInfo


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"

    def open(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():  # uploads cut short by a crash
            leftover.unlink(missing_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.parquet"

    def temp_path(self, suffix: str) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    async def ingest(
        self,
        chunks: AsyncIterator[bytes],
        check: Callable[[Path, TableInfo], None] | None = None,
    ) -> Blob:
        """Streams ``chunks`` to disk, checks they are Parquet and stores them by content.

        ``check`` (run in a worker thread before the file is installed) may refuse the file
        for what it holds, say a feature-table declaration that does not fit; nothing is kept.
        """
        part = self.temp_path(".part")
        digest = hashlib.sha256()
        handle: BinaryIO = await anyio.to_thread.run_sync(part.open, "wb")
        try:
            size = 0
            pending: list[bytes] = []
            pending_bytes = 0
            async for chunk in chunks:
                if not chunk:
                    continue
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= FLUSH_BYTES:
                    await anyio.to_thread.run_sync(_append, handle, digest, pending)
                    size += pending_bytes
                    pending, pending_bytes = [], 0
            if pending:
                await anyio.to_thread.run_sync(_append, handle, digest, pending)
                size += pending_bytes
            if size == 0:
                raise BadRequest(
                    "The request body is empty; send the Parquet file as the body "
                    "(content-type application/vnd.apache.parquet)."
                )
            await anyio.to_thread.run_sync(_sync_close, handle)
            info = await anyio.to_thread.run_sync(inspect_parquet, part, size, digest.hexdigest())
            if check is not None:
                await anyio.to_thread.run_sync(check, part, info)
            final = self.path(info.sha256)
            await anyio.to_thread.run_sync(_install, part, final)
            return Blob(sha256=info.sha256, path=final, info=info)
        finally:
            if not handle.closed:
                handle.close()
            part.unlink(missing_ok=True)


def _append(handle: BinaryIO, digest: hashlib._Hash, pieces: list[bytes]) -> None:
    for piece in pieces:
        digest.update(piece)
        handle.write(piece)


def _sync_close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _install(part: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        return  # the same bytes are already stored
    os.replace(part, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself is durable before the version row names the file
    finally:
        os.close(fd)


def inspect_parquet(path: Path, size: int, sha256: str) -> TableInfo:
    """Reads the footer and decodes every column chunk once, so a served file is known readable.

    One column chunk at a time: memory stays bounded by the largest chunk, not the row group.
    """
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        for group in range(parquet.metadata.num_row_groups):
            for name in schema.names:
                parquet.read_row_group(group, columns=[name], use_threads=False)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise BadRequest(
            f"The body is not a readable Parquet file ({_reason(exc)}); send the bytes of a "
            ".parquet file, for example one written by pyarrow or pandas."
        ) from None
    if len(schema) == 0:
        raise BadRequest("The Parquet file has no columns; send a table with at least one.")
    if len(schema) > MAX_COLUMNS:
        raise BadRequest(f"The Parquet file has {len(schema)} columns; the limit is {MAX_COLUMNS}.")
    names = schema.names
    if len(set(names)) != len(names):
        raise BadRequest("The Parquet file has duplicate column names; make them unique.")
    if any(not name or len(name) > 1024 for name in names):
        raise BadRequest("Every column needs a name of 1 to 1024 characters.")
    metadata = parquet.metadata
    return TableInfo(
        rows=metadata.num_rows,
        columns=[SchemaField(name=f.name, type=str(f.type), nullable=f.nullable) for f in schema],
        row_groups=metadata.num_row_groups,
        size_bytes=size,
        sha256=sha256,
    )


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]

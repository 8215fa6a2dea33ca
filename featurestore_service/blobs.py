"""Content-addressed Parquet files for tabular feature sets.

An upload is streamed to a temporary file in the data folder (never held in memory), hashed on
the way, checked to be readable Parquet within the decoded-size limits, fsynced and renamed to
``<sha256>.parquet``; only then does a version row name it. Equal uploads share one file. A
failed, rejected or abandoned upload leaves nothing behind, and neither does one whose version
row could not be written: the file it put in place is removed again, unless an upload of the
same bytes in this process still needs it or has been stored.
"""

from __future__ import annotations

import contextlib
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
from starlette.requests import ClientDisconnect

from cairn.errors import BadRequest
from cairn.models import SchemaField, TableInfo
from cairn.settings import get_settings
from featurestore_service.table_limits import TableLimits, check_decoded_size
from featurestore_service.tables import DecodeSlots, release_memory

log = logging.getLogger("cairn.featurestore.blobs")

FLUSH_BYTES = 4 * 1024 * 1024  # write to disk (off the event loop) in pieces of this size
MAX_COLUMNS = 10_000


class UploadCutShort(BadRequest):
    """The client closed the connection before the whole body arrived (nobody reads the 400)."""

    title = "Upload cut short"


@dataclass(slots=True)
class _Claim:
    """Uploads of one content hash under way in this process."""

    uploads: int = 0
    installed: bool = False  # one of them put the file in place: it was not there before
    stored: bool = False  # a version row names the file (or may: the store could not say)


@dataclass(slots=True)
class Blob:
    sha256: str
    path: Path
    info: TableInfo
    _claim: _Claim | None = None

    def keep(self) -> None:
        """Keeps the file although the write that was to name it failed (it may have landed)."""
        if self._claim is not None:
            self._claim.stored = True


class BlobStore:
    def __init__(
        self,
        root: Path,
        limits: TableLimits | None = None,
        decodes: DecodeSlots | None = None,
    ):
        if limits is None or decodes is None:
            settings = get_settings()
            limits = limits or TableLimits.from_settings(settings)
            decodes = decodes or DecodeSlots(settings.table_decode_concurrency)
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.limits = limits
        self.decodes = decodes
        self._claims: dict[str, _Claim] = {}

    def open(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():  # uploads cut short by a crash
            leftover.unlink(missing_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.parquet"

    def temp_path(self, suffix: str) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    @contextlib.asynccontextmanager
    async def ingest(
        self,
        chunks: AsyncIterator[bytes],
        check: Callable[[Path, TableInfo], None] | None = None,
    ) -> AsyncIterator[Blob]:
        """Streams ``chunks`` to disk, checks they are Parquet and stores them by content.

        ``check`` (run in a decode slot before the file is installed) may refuse the file for
        what it holds, say a feature-table declaration that does not fit; nothing is kept.
        The blob is yielded while the caller writes the version row that names it; when that
        fails, the file goes again if this upload put it there and nothing else needs it.
        """
        part = self.temp_path(".part")
        claim: _Claim | None = None
        sha256 = ""
        try:
            size, sha256 = await self._receive(chunks, part)
            info = await self.decodes.run(inspect_parquet, part, size, sha256, self.limits)
            if check is not None:
                await self.decodes.run(check, part, info)
            final = self.path(sha256)
            # Claimed before the file is looked for, so a concurrent upload of the same bytes
            # sees the claim whichever of the two installs the file.
            claim = self._claims.setdefault(sha256, _Claim())
            claim.uploads += 1
            if await anyio.to_thread.run_sync(_install, part, final):
                claim.installed = True
            yield Blob(sha256=sha256, path=final, info=info, _claim=claim)
            claim.stored = True
        finally:
            part.unlink(missing_ok=True)
            if claim is not None:
                self._release(sha256, claim)

    def _release(self, sha256: str, claim: _Claim) -> None:
        claim.uploads -= 1
        if claim.uploads:
            return
        del self._claims[sha256]
        if claim.installed and not claim.stored:
            # Sync on purpose: this runs while a failure (or a cancellation) unwinds.
            self.path(sha256).unlink(missing_ok=True)
            log.info("removed %s.parquet: its version could not be stored", sha256)

    async def _receive(self, chunks: AsyncIterator[bytes], part: Path) -> tuple[int, str]:
        """Writes the body to ``part``; its size and SHA-256."""
        digest = hashlib.sha256()
        handle: BinaryIO = await anyio.to_thread.run_sync(part.open, "wb")
        size = 0
        try:
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
        except ClientDisconnect:
            # An expected event, not a server fault: one line, no traceback.
            log.warning("upload cut short by the client after %d bytes; nothing stored", size)
            raise UploadCutShort(
                f"The connection closed after {size} bytes of the body; send the whole file."
            ) from None
        finally:
            if not handle.closed:
                handle.close()
        return size, digest.hexdigest()


def _append(handle: BinaryIO, digest: hashlib._Hash, pieces: list[bytes]) -> None:
    for piece in pieces:
        digest.update(piece)
        handle.write(piece)


def _sync_close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()


def _install(part: Path, final: Path) -> bool:
    """Moves ``part`` to ``final``; False when the same bytes were stored already."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        return False
    os.replace(part, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself is durable before the version row names the file
    finally:
        os.close(fd)
    return True


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

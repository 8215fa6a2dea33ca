"""Content-addressed Parquet files of tabular feature sets, on any :class:`BlobStore`.

An upload is streamed to a temporary file on the local disk (never held in memory), hashed on
the way, checked there to be readable Parquet within the decoded-size limits (table_limits.py)
and fsynced; only then is it put in the blob store as ``<sha256>.parquet`` (a hard link on the
local store, a multipart upload, staged blocks or a WebHDFS CREATE elsewhere), and only then
does a version row name it. Equal uploads share one blob.

No orphans. A failed, rejected or abandoned upload puts nothing in the store. When the version
row cannot be written, the blob this upload put there is deleted again, unless an upload of the
same bytes still needs it or a version names it. What a crash (kill -9) or another process's
failure leaves is found by the sweeper (``sweep``): on start-up and then every
``CAIRN_BLOBS_SWEEP_INTERVAL`` seconds it deletes blobs that no version names and that are
older than ``CAIRN_BLOBS_SWEEP_GRACE`` (the grace covers uploads between their put and their
version row), and the leftovers of uploads cut short.

No acknowledged version loses its blob, whichever processes share the store. Deleting a blob
(the sweeper, or a failed upload cleaning up) is three steps: (a) ``take`` it, withdrawing it
from its key in one atomic step (a rename aside, a delete after a copy aside, an ADLS lease);
(b) ask the database whether a version names it; (c) delete it only if none does and no upload
of this process is storing it, else put it back. An upload is: (1) ``put``, which refreshes
the write time of a blob it finds; (2) write the version row; (3) check that the blob is in
the store, and put it again from the upload's local copy if not; (4) answer 201, or 503 when
(3) failed. If (b) comes after (2), it sees the row and the blob goes back. Otherwise
(a) < (b) < (2) < (3): the check comes after the take, finds no blob and stores the bytes
again before any answer. The two cannot miss each other, whatever the grace. The grace and the
refresh in (1) (best effort) keep sweeps away from blobs in use, so (a)-(c) seldom meet an
upload at all; when they do, a version whose 201 went out between the sweeper's first question
and its take reads 503 until the blob is back, moments later (if the sweeper dies in between,
at the next sweep, or on S3 at the first sweep ``TAKEN_GRACE`` after the take; on ADLS a leased
blob stays readable). A sweep settles another's leftovers (a)-(c) only once their take is over:
S3's take is a copy aside then a delete, and a copy settled before that delete would leave a
blob that an upload refreshes and names between the two with nothing to put back.

Reads: ``checkout`` gives a local path. The local store's files are read in place; blobs of a
remote store go through a bounded read-through cache (``cache.py`` says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from starlette.requests import ClientDisconnect

from cairn.errors import BadRequest, Unavailable
from cairn.models import TableInfo
from cairn.settings import Settings
from connectors.errors import EntryNotFound, VolumeError
from featurestore_service.blobstore.base import (
    BlobError,
    BlobInfo,
    BlobMissing,
    BlobStore,
    blob_key,
    taken_key,
)
from featurestore_service.blobstore.cache import Lease, ReadCache
from featurestore_service.blobstore.parquet import inspect_parquet
from featurestore_service.blobstore.registry import open_blob_store
from featurestore_service.table_limits import TableLimits
from featurestore_service.tables import DecodeSlots

log = logging.getLogger("cairn.featurestore.blobs")

FLUSH_BYTES = 4 * 1024 * 1024  # write to disk (off the event loop) in pieces of this size
SWEEP_BATCH = 500  # blob names asked of the database at once
# Blobs taken before the database is asked again: bounds how long a blob is out of place (and
# an ADLS lease held) while the rest of the batch is taken.
TAKE_BATCH = 32
# Leftovers of sweeps younger than this are left alone: on S3 one may be a take between its
# copy aside and its delete (``BlobStore.list_taken``). Each of the two is one request, which
# the client tries up to CAIRN_HTTP_RETRIES times, each attempt up to a connect and a read
# timeout (CAIRN_HTTP_TIMEOUT) plus at most 20 s of backoff: about 11 minutes per request, 21
# for both, with the defaults. An hour is well above that; slower client settings raise it.
TAKEN_GRACE = 3600.0

Named = Callable[[list[str]], Awaitable[set[str]]]  # which of these hashes a version names


class UploadCutShort(BadRequest):
    """The client closed the connection before the whole body arrived (nobody reads the 400)."""

    title = "Upload cut short"


@dataclass(slots=True)
class _Claim:
    """Uploads of one content hash under way in this process."""

    uploads: int = 0
    installed: bool = False  # one of them put the blob in the store: it was not there before
    stored: bool = False  # a version row names the blob (or may: the store could not say)


@dataclass(slots=True)
class Blob:
    sha256: str
    path: Path  # a local copy of the upload, readable until the ingest block ends
    info: TableInfo
    _claim: _Claim | None = None
    # The version row written for it, when the caller says (``written``): a 503 after the
    # row names that version, so the client does not send the table again as a new one.
    version: tuple[str, int] | None = None

    def written(self, name: str, version: int) -> None:
        self.version = (name, version)

    def keep(self) -> None:
        """Keeps the blob although the write that was to name it failed (it may have landed)."""
        if self._claim is not None:
            self._claim.stored = True


@dataclass(slots=True)
class SweepReport:
    checked: int = 0
    removed: int = 0
    partial: int = 0


class TableBlobs:
    """The uploads, reads and sweeps of table files, on top of one blob store.

    ``work`` is a local folder for uploads on their way in (``tmp``) and, with a remote store,
    the read cache (``cache``); with the default local store it is the store's own folder, so
    an upload is linked into place rather than copied.
    """

    def __init__(
        self,
        store: BlobStore,
        work: Path,
        limits: TableLimits,
        decodes: DecodeSlots,
        cache_bytes: int,
        spool_grace: float = 3600.0,
        taken_grace: float = TAKEN_GRACE,
    ):
        self.store = store
        self.taken_grace = taken_grace  # the age past which a sweep's leftover is settled
        # Spools younger than this may be another process's uploads in flight (two servers
        # on one data folder): only older ones are a crash's leftovers.
        self.spool_grace = spool_grace
        self.root = Path(work)
        self.tmp = self.root / "tmp"
        self.limits = limits
        self.decodes = decodes
        self.cache = ReadCache(self.root / "cache", cache_bytes)
        self.remote = store.local_path(blob_key("0" * 64)) is None
        self._claims: dict[str, _Claim] = {}
        self.last_sweep: SweepReport | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        limits: TableLimits | None = None,
        decodes: DecodeSlots | None = None,
    ) -> TableBlobs:
        """The store ``CAIRN_BLOBS_URL`` names (the data folder's by default)."""
        url = settings.blobs_url or str(settings.featurestore_blobs)
        try:
            store = open_blob_store(url)
        except BlobError as exc:
            raise BlobError(f"CAIRN_BLOBS_URL: {exc}") from None
        return cls(
            store,
            settings.featurestore_blobs,
            limits or TableLimits.from_settings(settings),
            decodes or DecodeSlots(settings.table_decode_concurrency),
            settings.blobs_cache_bytes,
            settings.blobs_sweep_grace,
            _taken_grace(settings),
        )

    def open(self) -> None:
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.remove_stale_spools(time.time() - self.spool_grace)
        if self.remote:
            self.cache.open()

    def remove_stale_spools(self, before: float) -> int:
        """Removes spools (uploads, entity frames, Parquet subsets) last written before
        ``before``: what a crash cut short. Younger ones stay, whoever they belong to."""
        removed = 0
        if not self.tmp.is_dir():  # not opened: nothing was spooled
            return 0
        for leftover in self.tmp.iterdir():
            try:
                if leftover.is_file() and leftover.stat().st_mtime < before:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:  # finished (renamed or removed) meanwhile
                continue
        return removed

    def close(self) -> None:
        self.store.close()

    def temp_path(self, suffix: str) -> Path:
        return self.tmp / f"{uuid.uuid4().hex}{suffix}"

    # --- uploads ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def ingest(
        self,
        chunks: AsyncIterator[bytes],
        named: Named,
        check: Callable[[Path, TableInfo], None] | None = None,
    ) -> AsyncIterator[Blob]:
        """Streams ``chunks`` to disk, checks they are Parquet and stores them by content.

        ``check`` (run in a decode slot before the blob is stored) may refuse the file for
        what it holds, say a feature-table declaration that does not fit; nothing is kept.
        The blob is yielded while the caller writes the version row that names it; when that
        fails, the blob goes again if this upload put it there and nothing else needs it
        (``named``, the database's answer, says whether a version names it by then).
        """
        part = self.temp_path(".part")
        claim: _Claim | None = None
        sha256 = ""
        created = False
        try:
            size, sha256 = await self._receive(chunks, part)
            info = await self.decodes.run(inspect_parquet, part, size, sha256, self.limits)
            if check is not None:
                await self.decodes.run(check, part, info)
            key = blob_key(sha256)
            # Claimed before the store is asked, so a concurrent upload of the same bytes sees
            # the claim whichever of the two puts the blob.
            claim = self._claims.setdefault(sha256, _Claim())
            claim.uploads += 1
            created = await self._put(key, part)
            if created:
                claim.installed = True
            blob = Blob(sha256=sha256, path=part, info=info, _claim=claim)
            yield blob
            claim.stored = True
            # Step (3) of the module docstring: after the version row, never before it.
            await self._still_there(key, part, blob.version)
        finally:
            part.unlink(missing_ok=True)
            if claim is not None and self._release(sha256, claim):
                # Shielded: a cancelled request must not leave the blob taken and unsettled.
                with anyio.CancelScope(shield=True):
                    await self._forget(sha256, named)

    async def _put(self, key: str, part: Path) -> bool:
        def put() -> bool:
            with part.open("rb") as source:
                return self.store.put(key, source)

        try:
            return await anyio.to_thread.run_sync(put)
        except Exception as exc:
            # The source is a checked local file: whatever failed is the store (unreachable,
            # refused, cut off), and the backends leave nothing behind when a put fails.
            reason = str(exc) if isinstance(exc, BlobError | VolumeError) else type(exc).__name__
            log.warning("could not store %s in %s: %s", key, self.store.url, reason)
            raise Unavailable(
                f"The table could not be stored in the blob store ({reason}); nothing was kept, "
                "try again."
            ) from None

    async def _still_there(self, key: str, part: Path, version: tuple[str, int] | None) -> None:
        """Puts the blob again when it was taken (by a sweep, or by another process's failed
        upload of the same bytes) before this upload's version row came to name it.

        When that cannot be made sure of, the version is written but must not be answered
        with a 201: Unavailable, naming the version (``version``, set name and number) that
        is stored, so that the client does not send it again as another version."""

        def check() -> None:
            if self.store.exists(key):
                return
            log.warning("%s was taken while a new version came to name it; storing it again", key)
            # No local copy left when a sweep took it for a crash's leftover: an upload that
            # stalled past the grace, on a data folder another process sweeps.
            with part.open("rb") as source:
                self.store.put(key, source)

        try:
            await anyio.to_thread.run_sync(check)
        except Exception as exc:
            reason = str(exc) if isinstance(exc, BlobError | VolumeError) else type(exc).__name__
            log.error("%s: a version names it, but it could not be made sure of: %s", key, reason)
            what = "The version" if version is None else f"Version {version[1]} of {version[0]!r}"
            # Sending it again would store another version (or a 409 with a pinned version).
            # The file is most likely there, or put back by the sweep that took it; if not,
            # the same bytes uploaded anywhere are stored under the same key, its own.
            raise Unavailable(
                f"{what} was stored, but its table file ({key}) could not be confirmed in the "
                f"blob store ({reason}); no need to send it again. Reading its table answers 503 "
                "only while the file is missing; then uploading the same file (to any feature "
                "set, as a new version) stores it again, for this version too, since table files "
                "are stored by their content."
            ) from None

    def _release(self, sha256: str, claim: _Claim) -> bool:
        """Ends one upload's claim; whether the blob should go (the last upload of these
        bytes in this process put it there, and none stored a version naming it)."""
        claim.uploads -= 1
        if claim.uploads:
            return False
        del self._claims[sha256]
        return claim.installed and not claim.stored

    async def _forget(self, sha256: str, named: Named) -> None:
        """Deletes the blob of a failed upload, unless a version names it by now: another
        process may have stored the same bytes as a version meanwhile."""
        try:
            taken = await anyio.to_thread.run_sync(self.store.take, blob_key(sha256), None)
            if taken is None or not await self._settle([taken], named):
                return  # gone already, or named now: kept
        except Exception as exc:
            log.warning("could not remove %s.parquet (%s); the sweeper will", sha256, exc)
            return
        log.info("removed %s.parquet: its version could not be stored", sha256)

    async def _receive(self, chunks: AsyncIterator[bytes], part: Path) -> tuple[int, str]:
        """Writes the body to ``part``; its size and SHA-256."""
        digest = hashlib.sha256()
        handle: BinaryIO = await anyio.to_thread.run_sync(part.open, "wb")
        size = 0
        pending: list[bytes] = []
        pending_bytes = 0
        try:
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
            # An expected event, not a server fault: one line, no traceback. ``size`` only
            # counts what was flushed to disk; what arrived also holds the pending pieces.
            received = size + pending_bytes
            log.warning("upload cut short by the client after %d bytes; nothing stored", received)
            raise UploadCutShort(
                f"The connection closed after {received} bytes of the body; send the whole file."
            ) from None
        finally:
            if not handle.closed:
                handle.close()
        return size, digest.hexdigest()

    # --- reads --------------------------------------------------------------------------------

    async def checkout(self, sha256: str, what: str = "a table", size: int | None = None) -> Lease:
        """A local path to the blob until the lease is released; 503 when it cannot be had.

        ``size``, the bytes the version stored, is checked against the file: one cut short
        (a copy or restore interrupted, a damaged disk) would otherwise go out as a 200 and
        the table a reader gets would be a broken file or an error half-way through.
        """
        key = blob_key(sha256)
        local = self.store.local_path(key)
        try:
            if local is not None:
                try:
                    found = local.stat().st_size
                except FileNotFoundError:
                    raise BlobMissing(f"no blob {key}") from None
                lease = Lease(local)
            else:
                lease = await self.cache.checkout(key, lambda: self.store.open(key))
                found = lease.path.stat().st_size
            if size is not None and found != size:
                lease.release()
                self.cache.forget(key)  # a copy fetched again once the store's is restored
                log.error(
                    "%s in %s has %d bytes, not the %d stored", key, self.store.url, found, size
                )
                raise Unavailable(
                    f"The Parquet file of {what} ({key}) in the blob store {self.store.url} "
                    f"is damaged: it has {found} bytes where {size} were stored; restore it "
                    "from a backup."
                )
            return lease
        except (BlobMissing, EntryNotFound):  # the second: gone between open and read
            raise Unavailable(
                f"The Parquet file of {what} ({key}) is missing from the blob store "
                f"{self.store.url}; restore it from a backup."
            ) from None
        except (BlobError, VolumeError, OSError) as exc:
            raise Unavailable(
                f"The Parquet file of {what} could not be read from the blob store ({exc}); "
                "try again."
            ) from None

    @contextlib.asynccontextmanager
    async def local(self, sha256: str, what: str = "a table") -> AsyncIterator[Path]:
        lease = await self.checkout(sha256, what)
        try:
            yield lease.path
        finally:
            lease.release()

    # --- orphans ------------------------------------------------------------------------------

    async def sweep(self, named: Named, grace: float) -> SweepReport:
        """Deletes blobs no version names (``named`` says which of some hashes are named)
        that were written more than ``grace`` seconds ago, and stale partial uploads.

        Each candidate is taken, then the database asked again, then it is deleted or put
        back (the module docstring says why in that order). The first question, before any
        take, only spares taking the blobs it already knows are named. A blob the store will
        not take, delete or put back is logged and left to the next sweep; the others are
        settled all the same."""
        report = SweepReport()
        before = time.time() - grace
        # Taken by a sweep that was cut short, or under way in another process: settling
        # those is as safe as settling ours, the database is asked after the take, as long as
        # the take is over, which ``taken_grace`` makes sure of (``BlobStore.list_taken``).
        taken_before = time.time() - self.taken_grace
        try:
            leftovers = await anyio.to_thread.run_sync(
                lambda: list(self.store.list_taken(taken_before))
            )
        except Exception as exc:
            # Not a reason to leave the orphans: they are swept all the same.
            log.warning("could not list the blobs taken by sweeps cut short: %s", exc)
            leftovers = []
        for start in range(0, len(leftovers), TAKE_BATCH):
            report.removed += _swept(
                await self._settle(leftovers[start : start + TAKE_BATCH], named)
            )
        listing = self.store.list_blobs()
        while True:
            batch = await anyio.to_thread.run_sync(_take, listing, SWEEP_BATCH)
            if not batch:
                break
            report.checked += len(batch)
            old = {b.key[:-8] for b in batch if b.modified < before}
            old -= self._claims.keys()  # an upload of this process is about to name it
            if not old:
                continue
            candidates = sorted(old - await named(sorted(old)))
            for start in range(0, len(candidates), TAKE_BATCH):
                some = candidates[start : start + TAKE_BATCH]
                report.removed += _swept(await self._sweep_some(some, before, named))
        report.partial = await anyio.to_thread.run_sync(self.store.remove_partial, before)
        report.partial += await anyio.to_thread.run_sync(self.remove_stale_spools, before)
        self.last_sweep = report
        return report

    async def _sweep_some(self, hashes: list[str], before: float, named: Named) -> list[str]:
        """Takes those of ``hashes`` still written before ``before`` (the store checks, at
        the take) and not claimed by an upload of this process, then settles them."""
        taken: list[str] = []
        try:
            for sha256 in hashes:
                if sha256 in self._claims:  # an upload of these bytes began since the listing
                    continue
                try:
                    name = await anyio.to_thread.run_sync(self.store.take, blob_key(sha256), before)
                except Exception as exc:
                    log.warning("could not take %s.parquet to sweep it: %s", sha256, exc)
                    continue
                if name is not None:
                    taken.append(name)
        except BaseException:
            self._restore_all(taken)
            raise
        return await self._settle(taken, named)

    async def _settle(self, taken: list[str], named: Named) -> list[str]:
        """Deletes the taken blobs no version names, asked now that they are taken, and that
        no upload of this process is storing; puts the others back. The hashes deleted.

        One blob the store refuses to delete or put back is logged and stays taken, for the
        next sweep (``list_taken``): the rest are settled all the same."""
        if not taken:
            return []
        removed: list[str] = []
        pending = list(taken)
        try:
            keep = await named(sorted({taken_key(t)[:-8] for t in taken}))
            while pending:
                name = pending[0]
                sha256 = taken_key(name)[:-8]
                if sha256 in keep or sha256 in self._claims:
                    try:
                        await anyio.to_thread.run_sync(self.store.restore, name)
                    except Exception as exc:
                        log.error(
                            "could not put back %s, which a version names or an upload stores "
                            "(%s); it may read as missing until a later sweep puts it back",
                            name,
                            exc,
                        )
                else:
                    try:
                        if await anyio.to_thread.run_sync(self.store.discard, name):
                            removed.append(sha256)
                    except Exception as exc:
                        log.warning("could not delete %s (%s); the next sweep will", name, exc)
                pending.pop(0)
        except BaseException:
            self._restore_all(pending)
            raise
        return removed

    def _restore_all(self, taken: list[str]) -> None:
        """Puts taken blobs back when a sweep fails or is cancelled between a take and its
        settling. Sync on purpose, like any clean-up that runs while a failure unwinds; what
        cannot be restored now is settled by the next sweep (``list_taken``)."""
        for name in taken:
            try:
                self.store.restore(name)
            except Exception as exc:
                log.warning("could not put %s back (%s); the next sweep will", name, exc)


async def sweep_forever(
    blobs: TableBlobs,
    named: Named,
    grace: float,
    interval: float,
) -> None:
    """Sweeps at start-up, then every ``interval`` seconds; a failed sweep is logged and the
    next one tries again (orphans cost space, not correctness)."""
    while True:
        try:
            report = await blobs.sweep(named, grace)
            log.info(
                "blob sweep of %s: %d blobs checked, %d orphans and %d partial uploads removed",
                blobs.store.url,
                report.checked,
                report.removed,
                report.partial,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "blob sweep of %s failed (%s); next try in %.0f s", blobs.store.url, exc, interval
            )
        await asyncio.sleep(interval)


def _taken_grace(settings: Settings) -> float:
    """``TAKEN_GRACE``, or twice the longest an S3 request may last with retries if more."""
    attempts = max(1, min(settings.http_retries, 10))  # as connectors.s3.make_client
    return max(TAKEN_GRACE, 2 * attempts * (2 * settings.http_timeout + 20))


def _swept(hashes: list[str]) -> int:
    for sha256 in hashes:
        log.info("swept %s.parquet: no version names it", sha256)
    return len(hashes)


def _take(iterator: Iterator[BlobInfo], count: int) -> list[BlobInfo]:
    items = []
    for item in iterator:
        items.append(item)
        if len(items) == count:
            break
    return items


def _append(handle: BinaryIO, digest: hashlib._Hash, pieces: list[bytes]) -> None:
    for piece in pieces:
        digest.update(piece)
        handle.write(piece)


def _sync_close(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()

"""A local read-through cache of remote blobs, bounded in bytes.

Why a cache rather than ranged reads straight from the store: every reader of a table (pyarrow
for the Arrow, Parquet and JSON answers, the online materializer, the point-in-time engine, the
profiler) wants a local file it can memory-map and read many times, and blobs never change
(their key is their content), so a copy fetched once is good until it is evicted. The fetch
itself streams from the store's seekable, ranged file in ``CHUNK`` pieces.

Entries are evicted least recently used first until the total is under ``limit``; an entry in
use (checked out, not yet released) is never evicted, so the cache may exceed its bound while
more than ``limit`` bytes are being read at once, and shrinks back as they are released.
Concurrent checkouts of one key share one fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
import uuid
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread

from featurestore_service.blobstore.base import CHUNK, KEY, fsync_dir

log = logging.getLogger("cairn.featurestore.blobs")


class Lease:
    """A local path to a blob, valid until :meth:`release` (idempotent; also run when the
    lease is garbage collected, so an abandoned response cannot pin an entry for ever)."""

    def __init__(self, path: Path, release: Callable[[], None] | None = None) -> None:
        self.path = path
        self._finalizer = weakref.finalize(self, release) if release is not None else None

    def release(self) -> None:
        if self._finalizer is not None:
            self._finalizer()


class ReadCache:
    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = Path(folder)
        self.limit = max(0, limit)
        self._entries: OrderedDict[str, int] = OrderedDict()  # key -> size, oldest first
        self._pins: Counter[str] = Counter()
        self._loading: dict[str, asyncio.Future[None]] = {}
        self.total = 0
        self.fetches = 0  # blobs copied from the store, for tests and benchmarks
        # The loop whose thread keeps the books; a lease let go elsewhere hands back to it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    def open(self) -> None:
        """Indexes what an earlier run left, least recently read first."""
        self.folder.mkdir(parents=True, exist_ok=True)
        found = []
        for entry in os.scandir(self.folder):
            if KEY.match(entry.name):
                stat = entry.stat()
                found.append((stat.st_atime, entry.name, stat.st_size))
            else:  # a fetch cut short
                Path(entry.path).unlink(missing_ok=True)
        for _, key, size in sorted(found):
            self._entries[key] = size
            self.total += size
        self._evict()

    async def checkout(self, key: str, source: Callable[[], BinaryIO]) -> Lease:
        """The cached copy of ``key``, fetched from ``source()`` first when missing."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # the first checkout, or the app started again (tests)
            self._loop, self._thread = loop, threading.get_ident()
        if key in self._entries and not (self.folder / key).is_file():
            # Removed behind this index's back (an operator freeing space, another process
            # on the same data folder): fetched again rather than failing until a restart.
            log.warning("%s vanished from the read cache; fetching it again", key)
            self.total -= self._entries.pop(key)
        while key not in self._entries:
            loading = self._loading.get(key)
            if loading is not None:
                await asyncio.shield(loading)
                continue
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._loading[key] = future
            try:
                size = await anyio.to_thread.run_sync(self._fetch, key, source)
                self._entries[key] = size
                self.total += size
                self.fetches += 1
                future.set_result(None)
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # retrieved: waiters re-raise it themselves
                raise
            finally:
                del self._loading[key]
        self._entries.move_to_end(key)
        self._pins[key] += 1
        self._evict()
        return Lease(self.folder / key, lambda: self._let_go(key))

    def _fetch(self, key: str, source: Callable[[], BinaryIO]) -> int:
        part = self.folder / f"{uuid.uuid4().hex}.part"
        try:
            with source() as remote, part.open("wb") as local:
                shutil.copyfileobj(remote, local, CHUNK)
                # On disk before its name says it is whole: renamed first, a power loss could
                # leave the key naming a file of the right size but not its bytes, served
                # until evicted. A ``.part`` a crash leaves is removed by ``open``.
                local.flush()
                os.fsync(local.fileno())
            size = part.stat().st_size
            os.replace(part, self.folder / key)
            fsync_dir(self.folder)
        finally:
            part.unlink(missing_ok=True)
        log.info("fetched %s into the read cache (%d bytes)", key, size)
        return size

    def _let_go(self, key: str) -> None:
        """A lease's release, from wherever it comes: Starlette runs a response's background
        release in a worker thread, and the collector runs an abandoned lease's anywhere.
        The books (and the evictions that follow) change only on the loop's thread."""
        if threading.get_ident() == self._thread:
            self._release(key)
            return
        assert self._loop is not None  # a lease exists only after a checkout
        # A closed loop means the process is ending: nothing is left to keep.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._release, key)

    def _release(self, key: str) -> None:
        self._pins[key] -= 1
        if self._pins[key] <= 0:
            del self._pins[key]
        self._evict()

    def _evict(self) -> None:
        if self.total <= self.limit:
            return
        for key in list(self._entries):
            if self.total <= self.limit:
                break
            if self._pins.get(key):
                continue
            # Gone already when the collector released a lease during this loop (a release
            # that evicts, run in the middle of this one).
            size = self._entries.pop(key, None)
            if size is None:
                continue
            self.total -= size
            # Sync on purpose: a removal is one unlink; a reader that opened the file keeps it.
            (self.folder / key).unlink(missing_ok=True)

    def forget(self, key: str) -> None:
        """Drops the copy of ``key`` unless a reader has it checked out (it then stays until
        evicted): the store's blob was found damaged, and may be restored."""
        if key in self._entries and not self._pins.get(key):
            self.total -= self._entries.pop(key)
            (self.folder / key).unlink(missing_ok=True)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

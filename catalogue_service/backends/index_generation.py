"""When the mongo backend's kept search answers stop being true: ``IndexGeneration``.

Elasticsearch answers the mongo backend's searches, and more than one process changes its
index: every catalogue process behind a load balancer (its writes and its outbox indexer)
and ``cairn reindex``. The embedded backend reads a commit counter from its file; here each
process that changed the index moves a counter in MongoDB (``cairn_meta``) once the change is
searchable, and each process reads that counter again every ``POLL_SECONDS`` while searches
come in (none while it is idle).

A kept answer belongs to (this process's own index changes, the shared counter as last read):

- this process moves the first before its write answers, so whoever wrote through a process
  finds the write in that process's next search;
- another process's change is seen once the counter is read again: an answer is kept or
  handed out only while the last read started less than ``MAX_AGE`` ago, so a change made
  elsewhere shows within ``MAX_AGE``, Elasticsearch's own default refresh interval. While the
  counter cannot be read, searches go to Elasticsearch.

A counter that could not be moved (MongoDB unreachable just after the index changed) is
moved by the next poll, or by ``stop`` at the latest: other processes then see the change
late, never not at all. A change whose request timed out may land after the move: the caller
asks for a second move (``moved(again_after=...)``) once it must have landed or failed. The
counter document holds a random epoch beside the count, so a counter made afresh (its
collection dropped) never matches a generation from before.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any

from cairn.mongo import PyMongoError
from cairn.tasks import stop

__all__ = ["IndexGeneration"]

log = logging.getLogger("cairn.catalogue.mongo")

KEY = "search-index:generation"  # in cairn_meta, beside the schema versions
POLL_SECONDS = 0.25
MAX_AGE = 1.0


class IndexGeneration:
    def __init__(self, meta: Any, poll_seconds: float = POLL_SECONDS, max_age: float = MAX_AGE):
        self.meta = meta
        self.poll_seconds = poll_seconds
        self.max_age = max_age
        self._own = 0
        self._shared: tuple[str, int] | None = None  # (epoch, count) as last read
        self._read_at = -math.inf  # when the last successful read started (monotonic)
        self._owed = False  # a move of the shared counter that failed
        self._wanted = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._later: set[asyncio.Task[None]] = set()  # second moves (``again_after``)

    def start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever(), name="cairn-index-gen")

    async def stop(self) -> None:
        if self._later:  # second moves not made yet: one now, rather than none
            self._owed = True
        for task in [*self._later, *([self._poller] if self._poller else [])]:
            await stop(task)
        self._later.clear()
        self._poller = None
        if self._owed:  # a short-lived process (`cairn reindex`) must not take it along
            try:
                await self._move_shared()
                self._owed = False
            except PyMongoError as exc:
                log.error("other catalogue processes may keep stale search answers: %s", exc)

    def current(self) -> tuple[int, str, int] | None:
        """The generation a search about to run belongs to; None: unknown, keep nothing."""
        self._wanted.set()
        if self._shared is None or time.monotonic() - self._read_at > self.max_age:
            return None
        return (self._own, *self._shared)

    async def moved(self, again_after: float | None = None) -> None:
        """After this process changed the index, or tried to. ``again_after``: the change's
        request failed and may still land; move again that many seconds later."""
        self._own += 1
        try:
            await self._move_shared()
        except PyMongoError as exc:
            log.warning("search answers kept by other catalogue processes may lag: %s", exc)
            self._owed = True
            self._wanted.set()
        if again_after is not None:
            task = asyncio.create_task(self._move_later(again_after), name="cairn-index-gen-2")
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def _move_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.moved()

    async def _move_shared(self) -> None:
        await self.meta.update_one(
            {"_id": KEY},
            {"$inc": {"n": 1}, "$setOnInsert": {"epoch": uuid.uuid4().hex}},
            upsert=True,
        )

    async def _poll_forever(self) -> None:
        failing = False
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            started = time.monotonic()
            try:
                if self._owed:
                    # Cleared first: a move failing meanwhile sets it again, and is paid too.
                    self._owed = False
                    try:
                        await self._move_shared()
                    except BaseException:
                        self._owed = True
                        raise
                found = await self.meta.find_one({"_id": KEY}) or {"n": 0}
                shared = (str(found.get("epoch", "")), int(found["n"]))
            except Exception as exc:  # MongoDB's errors, or a counter document not ours
                if not failing:
                    log.warning("cannot read the search index's generation, not keeping: %s", exc)
                failing = True
                self._wanted.set()  # try again, and pay what is owed
            else:
                if failing:
                    log.info("search index generation readable again")
                failing = False
                self._shared = shared
                self._read_at = started
            await asyncio.sleep(self.poll_seconds)

"""Bulk writes' answers kept for a while by the client's ``Idempotency-Key`` header.

A client whose request timed out, or whose connection dropped, cannot know whether the
catalogue wrote the batch, so it sends it again. Without a key the second run finds every item
already written and answers "unchanged" for each: the crawler then reported a crawl that
created 1,000 assets as one that changed nothing. With a key, a request that comes again gets
the first run's answer: at once when that run has finished, else when it does (the work is
never started twice, which matters most on a catalogue already too slow to answer in time).

A key names one body: the same key with another body is refused (422), so a client that reuses
keys by mistake hears of it rather than getting an answer to another request. A run that fails
keeps nothing, so its retry runs afresh. The answers live in this process: behind several
workers, a retry that reaches another one runs again, which is safe (a bulk write is an upsert
by id; its answer then says "unchanged").
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cairn.errors import InvalidRequest

HEADER = "idempotency-key"
# Visible ASCII, as other APIs that take such keys accept (a UUID is the usual choice).
KEY = re.compile(r"[\x21-\x7e]{1,255}")
KEEP_S = 600.0  # longer than a client's retries last (the crawler's: 8 attempts, 30 s each)
KEEP_BYTES = 16 * 1024 * 1024  # about 150 answers of 1,000 items


@dataclass(slots=True)
class _Entry:
    digest: bytes
    run: asyncio.Future[str]
    at: float
    size: int = 0


class RecentAnswers:
    """The answers of the last ``keep_s`` seconds, ``keep_bytes`` of them at most (oldest
    dropped first)."""

    def __init__(self, keep_s: float = KEEP_S, keep_bytes: int = KEEP_BYTES):
        self.keep_s = keep_s
        self.keep_bytes = keep_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def checked(key: str) -> str:
        if not KEY.fullmatch(key):
            raise InvalidRequest(
                "The Idempotency-Key header must be 1 to 255 visible ASCII characters "
                "(a UUID, for example), one per request body.",
                errors=[{"field": "Idempotency-Key", "message": "1 to 255 visible ASCII"}],
            )
        return key

    async def answer(
        self, key: str, body: bytes, run: Callable[[], Awaitable[str]]
    ) -> tuple[str, bool]:
        """``run()``'s answer for ``key``, run once for the key and its body; and whether it
        is a replay of an earlier request's."""
        now = time.monotonic()
        self._expire(now)
        digest = hashlib.blake2b(body, digest_size=16).digest()
        entry = self._entries.get(key)
        if entry is not None:
            if entry.digest != digest:
                raise InvalidRequest(
                    f"Idempotency-Key {key!r} was sent with another body in the last "
                    f"{self.keep_s:.0f} s; send a new key with each new request body.",
                    errors=[{"field": "Idempotency-Key", "message": "used for another body"}],
                )
            return await asyncio.shield(entry.run), True
        entry = _Entry(digest, asyncio.ensure_future(run()), now)
        self._entries[key] = entry
        entry.run.add_done_callback(lambda done: self._settled(key, entry, done))
        # Shielded: a client that goes away does not stop the write its retry will wait for.
        return await asyncio.shield(entry.run), False

    def _settled(self, key: str, entry: _Entry, done: asyncio.Future[str]) -> None:
        if done.cancelled() or done.exception() is not None:
            if self._entries.get(key) is entry:
                del self._entries[key]  # nothing to replay: a retry runs again
            return
        if self._entries.get(key) is not entry:
            return  # dropped meanwhile
        entry.size = len(done.result())
        self._bytes += entry.size
        while self._bytes > self.keep_bytes and self._entries:
            self._drop(next(iter(self._entries)))

    def _expire(self, now: float) -> None:
        while self._entries:
            key, oldest = next(iter(self._entries.items()))
            if now - oldest.at < self.keep_s:
                break
            self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size

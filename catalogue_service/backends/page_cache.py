"""Search answers kept until the next write: ``PageCache``.

The embedded catalogue already keeps each filter's total and facets until a commit; a text
search also pays for ranking, which bm25 does over every match (about 0.1 ms at a hundred
matches, half of the statement, ``benchmarks/probe_fts.py``). A page asked again before the
next write is the same page, so the whole answer is kept, as search servers keep the ordered
hits of recent queries until their next commit.

A kept answer belongs to a write generation read before the search ran (embedded: the file's
commit counter, ``SQLiteStore._generation``; mongo: ``IndexGeneration``): a write racing the
search leaves the answer under a generation no later lookup asks for, so nothing stale is
served. With no generation known (``None``), nothing is kept or handed out.
Memory is bounded by answers and by the bytes of their documents; an answer too big to keep
(a Mastro page of thousands) is not kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import replace

import orjson

from catalogue_service.backends.base import SearchHits, SearchQuery
from catalogue_service.backends.generations import kept_or_computed

__all__ = ["PageCache", "page_key"]

ANSWERS = 512
MIB = 16  # CAIRN_SEARCH_CACHE_MIB's default
# An answer above this share of the bound is not kept: it would push out many small ones.
LARGEST_SHARE = 16
# What an answer costs beside its documents' bytes (the objects that hold them).
OVERHEAD = 512

_Key = tuple[object, ...]


def page_key(query: SearchQuery) -> _Key:
    """Everything that makes the answer of ``query``. The cursor is keyed as JSON: decoded
    from a client's string, it may hold values that cannot be hashed."""
    cursor = None if query.cursor is None else orjson.dumps(query.cursor)
    return (
        query.q,
        query.name,
        tuple(query.tags),
        query.type,
        tuple(query.labels),
        query.owner,
        query.include_deleted,
        query.limit,
        cursor,
        query.offset,
        query.facets,
        query.drifted,
    )


def _size(hits: SearchHits) -> int:
    return OVERHEAD + sum(len(doc) for doc in hits.docs) + len(hits.facets_json or b"")


class PageCache:
    """Answers per search for one write generation, least recently used out. Each answer is
    handed out as a copy: the typo fallback sets fields on the answer it is given."""

    def __init__(self, answers: int = ANSWERS, max_bytes: int = MIB << 20):
        self.answers = answers
        self.max_bytes = max_bytes
        self.bytes = 0
        self._lock = threading.Lock()
        self._entries: OrderedDict[_Key, tuple[Hashable, SearchHits, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def answer(
        self,
        query: SearchQuery,
        generation: Hashable | None,
        search: Callable[[SearchQuery], Awaitable[SearchHits]],
    ) -> SearchHits:
        """The kept answer of ``query`` for ``generation``, else ``search``'s (then kept)."""
        return await kept_or_computed(self, page_key(query), generation, lambda: search(query))

    def get(self, key: _Key, generation: Hashable) -> SearchHits | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] != generation:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return replace(entry[1])

    def put(self, key: _Key, generation: Hashable, hits: SearchHits) -> None:
        size = _size(hits)
        if not self.max_bytes or size * LARGEST_SHARE > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (generation, replace(hits), size)
            self.bytes += size
            while len(self._entries) > self.answers or self.bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: _Key) -> None:
        self.bytes -= self._entries.pop(key)[2]

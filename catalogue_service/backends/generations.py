"""What the embedded catalogue keeps until the next commit to its file: ``PerGeneration``.

A search's counts, a speller's lookups: each is a function of the file's contents, so it
stays true until a commit changes them. The caller reads the write generation (a number
every commit moves, ``SQLiteStore._generation``) before it computes a value and keeps the
value under it; a commit racing the computation leaves the value under a generation no
later lookup asks for, so nothing stale is handed out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

__all__ = ["PerGeneration", "kept_or_computed"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


K_in = TypeVar("K_in", bound=Hashable, contravariant=True)


class KeepsPerGeneration(Protocol[K_in, V]):
    def get(self, key: K_in, generation: Hashable) -> V | None: ...
    def put(self, key: K_in, generation: Hashable, value: V) -> None: ...


async def kept_or_computed(
    keeps: KeepsPerGeneration[K, V],
    key: K,
    generation: Hashable | None,
    compute: Callable[[], Awaitable[V]],
) -> V:
    """The value ``keeps`` holds for ``key`` under ``generation``, else ``compute``'s (then
    kept). With no generation known (None), nothing is kept or handed out."""
    if generation is None:
        return await compute()
    found = keeps.get(key, generation)
    if found is None:
        found = await compute()
        keeps.put(key, generation, found)
    return found


class PerGeneration(Generic[K, V]):
    """Up to ``size`` values, each for one write generation, least recently used out.
    Values are handed out as kept, not copied: callers must not change them."""

    def __init__(self, size: int):
        self.size = size
        # Readers run in several threads (the store's reader pool and the event loop).
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[Hashable, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, generation: Hashable) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != generation:
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def put(self, key: K, generation: Hashable, value: V) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (generation, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

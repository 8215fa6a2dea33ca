"""Keeping a long-running service's resident memory near what it uses (glibc's allocator).

glibc gives each thread that allocates its own arena, up to eight per core, and an arena
keeps what its thread freed for reuse; a service whose worker threads (SQLite reads, Parquet
decoding) each touched tens of MiB once then holds that much for the life of the process.
``limit_arenas`` caps them at start-up; ``trim`` hands freed memory at the top of the heaps
and whole free pages inside them back to the system after a request that allocated a lot.
Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import weakref
from collections.abc import Callable
from typing import Protocol, cast

log = logging.getLogger("cairn.memory")

# mallopt's parameter number for the arena cap (glibc's malloc.h).
M_ARENA_MAX = -8
ARENAS = 2


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim  # noqa: B018 - glibc only: musl and others lack it
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> None:
    """Caps glibc's malloc arenas (call before starting threads)."""
    libc = _libc()
    if libc is not None and not libc.mallopt(M_ARENA_MAX, arenas):
        log.warning("mallopt(M_ARENA_MAX, %d) was refused", arenas)


def trim() -> None:
    """Returns free heap memory to the system."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class _MallInfo2(ctypes.Structure):
    # glibc's struct mallinfo2 (2.33 and later): every field a size_t.
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


@functools.cache
def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    libc = _libc()
    function = getattr(libc, "mallinfo2", None) if libc is not None else None
    if function is None:
        return None
    function.restype = _MallInfo2
    function.argtypes = []
    return cast(Callable[[], _MallInfo2], function)


def free_heap_bytes() -> int | None:
    """Bytes glibc's heaps hold free (all arenas), or None where that cannot be read."""
    mallinfo2 = _mallinfo2()
    return None if mallinfo2 is None else int(mallinfo2().fordblks)


class HoldsMemory(Protocol):
    def release_idle_memory(self) -> bool:
        """Frees caches it can rebuild when it has been idle a while; True if it freed any."""
        ...


# Long-lived objects with caches of their own (SQLite connections' page caches), asked by
# `trim_while_running` to free them once idle; weakly held, so closing one forgets it.
_HOLDERS: weakref.WeakSet[HoldsMemory] = weakref.WeakSet()


def hold(holder: HoldsMemory) -> None:
    _HOLDERS.add(holder)


def release_idle() -> bool:
    """Asks every holder to free its idle caches; True if one did."""
    released = False
    for holder in list(_HOLDERS):
        try:
            released = holder.release_idle_memory() or released
        except Exception:  # a cache that cannot be shrunk now is asked again next time
            log.exception("releasing the idle memory of %r failed", holder)
    return released


# What `trim_while_running` lets glibc's heaps keep free before handing it back. A trim walks
# the heaps: once per large release, not after every request.
TRIM_FREE_BYTES = 16 * 1024 * 1024
TRIM_CHECK_SECONDS = 1.0


async def trim_while_running(
    limit: int = TRIM_FREE_BYTES, every: float = TRIM_CHECK_SECONDS
) -> None:
    """Hands freed heap memory back whenever more than ``limit`` bytes of it have piled up.

    Requests and background work (a bulk ingest, a table's profile, an Arrow stream) free what
    they allocated when they end, often after their own ``trim`` ran; glibc keeps it. Reading
    the free total costs microseconds; the trim runs in a worker thread. Caches registered
    with ``hold`` are asked to free themselves first, and a trim follows when one did.
    """
    if free_heap_bytes() is None:
        return
    baseline = 0
    while True:
        await asyncio.sleep(every)
        released = False
        if _HOLDERS:
            released = await asyncio.to_thread(release_idle)
        if released:
            await asyncio.to_thread(trim)
            baseline = free_heap_bytes() or 0
            continue
        free = free_heap_bytes() or 0
        # Trimmed pages still count as free in the heaps: compare with what was free after
        # the last trim, and follow it down as the free memory is reused.
        if free > baseline + limit:
            await asyncio.to_thread(trim)
            baseline = free_heap_bytes() or 0
        else:
            baseline = min(baseline, free)

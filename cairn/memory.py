"""Keeping a long-running service's resident memory near what it uses (glibc's allocator).

glibc gives each thread that allocates its own arena, up to eight per core, and an arena
keeps what its thread freed for reuse; a service whose worker threads (SQLite reads, Parquet
decoding) each touched tens of MiB once then holds that much for the life of the process.
``limit_arenas`` caps them at start-up; ``trim`` hands freed memory at the top of the heaps
and whole free pages inside them back to the system after a request that allocated a lot.
Both do nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

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

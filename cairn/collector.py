"""Pausing Python's cyclic garbage collector over allocation-heavy requests.

A bulk write of thousands of assets builds hundreds of thousands of containers (the parsed
body, a model and a document per item, the side tables' rows) that all stay alive until the
request ends. Every 700 new containers start a collection that walks the young ones, and as
they pile up the older generations are walked again and again: on a 5,000-item batch the
collector cost more CPU than validating the items (``benchmarks/bench_ingest.py``). None of
this holds reference cycles, so reference counting frees it all when the request ends; the
collector is only needed for cycles, and resumes as soon as the last paused request is done.

Requests overlap on the event loop (and store work runs in worker threads), so pauses nest
by count: the collector is re-enabled only when every pause has ended, and only if it was
enabled when the first one began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0
_resume = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disables the cyclic collector for the block (nested and concurrent blocks allowed)."""
    global _pauses, _resume
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()

"""Ctrl-C that ends the process at once, without unwinding: for work that needs none.

A KeyboardInterrupt is raised wherever the main thread happens to be, and that can be inside
the standard library's own locking: a ``threading.Condition``'s ``__enter__`` is Python code,
so the interrupt can land after it took the lock and before the ``with`` that would release
it began (a future's condition, in ``concurrent.futures``). A crawl's worker pool then waited
for ever at shutdown for its manager thread, itself waiting for that lock (one of 33 Ctrl-Cs at
random moments hung a crawl of 100k files; the threads' stacks, read with gdb, showed it).
While modules are imported, a KeyboardInterrupt prints the import machinery's traceback.

Where nothing needs unwinding to stay whole, the first Ctrl-C says what happened and ends the
process with 130, as a shell reports a process SIGINT ended.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

EXIT_INTERRUPTED = 128 + signal.SIGINT


@contextlib.contextmanager
def ctrl_c_ends_process(message: str | None = None) -> Iterator[None]:
    """Within it, SIGINT ends the process, after ``message`` on stderr. Only where Python
    raises KeyboardInterrupt for it, in the main thread: a SIGINT ignored (a background
    job's), or handled by someone else, is left as it is."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return

    installed_by = os.getpid()

    def end(_signum: int, _frame: FrameType | None) -> None:
        if os.getpid() != installed_by:
            # A child forked meanwhile, before it set its own handler: it ends without a
            # word, and without flushing the copy of its parent's buffers it was given.
            os._exit(EXIT_INTERRUPTED)
        _end(message)

    signal.signal(signal.SIGINT, end)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _end(message: str | None) -> None:
    # The main thread may have been stopped inside a write to these streams: a second write
    # from here can be refused (a reentrant call); the exit code says it all the same.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, RuntimeError):
            stream.flush()
    with contextlib.suppress(OSError, ValueError, RuntimeError):
        # A progress bar hides the cursor until it stops, and it will not stop now.
        text = "\x1b[?25h" if sys.stderr.isatty() else ""
        if message:
            text += f"\n{message}\n"
        sys.stderr.write(text)
        sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)

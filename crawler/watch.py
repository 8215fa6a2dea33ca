"""Long-running crawls: on a schedule, or on file-system events for local volumes."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger("cairn.crawler")

DEBOUNCE_S = 0.3


def run_every(
    interval: float, job: Callable[[], object], stop: threading.Event, start_now: bool = True
) -> None:
    """Runs ``job`` every ``interval`` seconds until ``stop`` is set; a failing run is logged."""
    next_run = time.monotonic() if start_now else time.monotonic() + interval
    while not stop.is_set():
        delay = next_run - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return
        try:
            job()
        except Exception:
            log.exception("scheduled crawl failed; trying again in %.0fs", interval)
        next_run = max(next_run + interval, time.monotonic())


class WatchError(Exception):
    """The folder cannot be watched (missing, or the system's watch limit reached)."""


class ChangeFlag(FileSystemEventHandler):
    """Set by any change below the watched folder except those below ``ignore``.

    The crawl itself writes below the data dir (its state, opened with a WAL and a shared
    memory file on every crawl), which is ``./.cairn`` inside the volume when a user runs
    ``cairn crawl . --watch`` from it: seen as changes, those writes started the next crawl,
    for ever.
    """

    def __init__(self, ignore: Iterable[Path] = ()) -> None:
        self._event = threading.Event()
        self._ignored = tuple(os.path.realpath(p) for p in ignore)

    def _outside(self, path: bytes | str) -> bool:
        # Event paths lie below the watched folder as given: watch() is given its real path.
        where = os.fsdecode(path)
        return not any(where == d or where.startswith(d + os.sep) for d in self._ignored)

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if self._outside(event.src_path) or (event.dest_path and self._outside(event.dest_path)):
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def clear(self) -> None:
        self._event.clear()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


def watch(
    root: Path, job: Callable[[], object], stop: threading.Event, ignore: Iterable[Path] = ()
) -> None:
    """Crawls once, then again shortly after every burst of changes under ``root`` (a real
    path; none below ``ignore``); WatchError when ``root`` cannot be watched."""
    changed = ChangeFlag(ignore)
    observer = Observer()
    observer.schedule(changed, str(root), recursive=True)
    try:
        observer.start()
    except OSError as exc:
        raise WatchError(f"cannot watch {root}: {exc.strerror or exc}") from exc
    try:
        job()
        while not stop.is_set():
            if not changed.wait(0.2):
                continue
            # Let a burst of events (an editor's save, a copy) settle into one crawl.
            while changed.is_set() and not stop.is_set():
                changed.clear()
                time.sleep(DEBOUNCE_S)
            try:
                job()
            except Exception:
                log.exception("crawl after a change failed; waiting for the next change")
    finally:
        observer.stop()
        observer.join(timeout=5)

"""Long-running crawls: on a schedule, or on file-system events for local volumes."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
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


class _Changed(FileSystemEventHandler):
    def __init__(self, flag: threading.Event):
        self.flag = flag

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        self.flag.set()


def watch(root: Path, job: Callable[[], object], stop: threading.Event) -> None:
    """Crawls once, then again shortly after every burst of changes under ``root``."""
    changed = threading.Event()
    observer = Observer()
    observer.schedule(_Changed(changed), str(root), recursive=True)
    observer.start()
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

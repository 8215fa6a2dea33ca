"""Entries of an object store's flat listing (S3, ADLS's Blob API): folders from key names.

An object store lists every key below a prefix in name order and knows no folders: a folder is
the name prefix of its keys, or a marker object (``name/``, or ADLS's ``hdi_isfolder``). Two
things a file system cannot hold follow, and are settled here once for both stores:

- the root's own marker (``lake/`` when the volume is ``.../lake``) is the root, not an entry;
- a key that is also a folder's name (``a`` beside ``a/x``, as some tools write to make a
  folder exist) would be both a file and a folder of the same path. The folder wins, since what
  lies below it may be anything, manifests included; the object is left out, reported (with
  a reason telling the crawl that nothing below went unseen) unless it is empty, which is the
  usual marker and says nothing.

A flat listing's pages come one after another (each asks for the one after the last), so
:func:`listed_by_prefix` cuts it by prefix and runs several at once, handing the keys on in
the one listing's order.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import cast

from connectors.base import SHADOWED_OBJECT, Entry, ProblemSink, make_entry

# (name below the root with no trailing '/', size, mtime_ns, is a folder marker, tag)
Listed = tuple[str, int, int, bool, str]


def flat_entries(listed: Iterable[Listed], report: ProblemSink, noun: str) -> Iterator[Entry]:
    """Entries of ``listed`` (in the store's name order), each folder once before its first
    child. ``noun`` names a key in reports ("object key", "blob name")."""
    seen_dirs: set[str] = set()
    new = make_entry
    # Files yielded one key late: those whose names prefix the key being looked at, each one a
    # prefix of the next. In name order every key below "a/" comes right after "a" and the
    # keys that extend it ("a b", "a.txt": ' ' and '.' sort before '/'), so only these can
    # still turn out to be folders.
    held: list[Entry] = []
    for name, size, mtime_ns, marker, tag in listed:
        if not name:
            continue  # the root's own folder marker
        while held and not name.startswith(held[-1].path):
            yield held.pop()
        if held:
            kept = []
            for entry in held:
                if name == entry.path or name.startswith(entry.path + "/"):
                    _shadowed(entry, report)
                else:
                    kept.append(entry)
            held = kept
        parts = name.split("/")
        if "" in parts or "." in parts or ".." in parts:
            report(name, f"{noun} is not a clean path ('//', '.' or '..'), skipped")
            continue
        # Parent folders first, each once, from the name itself: a flat listing names no
        # folders (unless marker objects exist).
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in seen_dirs:
                seen_dirs.add(folder)
                yield new(folder, 0, 0, True)
        if marker:
            if name not in seen_dirs:
                seen_dirs.add(name)
                yield new(name, 0, mtime_ns, True)
        elif name in seen_dirs:
            # Listed out of name order after its folder: the folder is already out.
            _shadowed(new(name, size, mtime_ns, False, tag), report)
        else:
            held.append(new(name, size, mtime_ns, False, tag))
    yield from reversed(held)


def _shadowed(entry: Entry, report: ProblemSink) -> None:
    if entry.size:
        report(
            entry.path,
            f"{SHADOWED_OBJECT} (keys below '{entry.path}/'): the folder is walked, "
            f"the object's {entry.size} bytes are skipped",
        )


# -- listing several prefixes at once -------------------------------------------------------------

# A key's Listed, or a prefix below the root ('a/', 'a/b/') whose keys are listed flat.
Unit = Listed | str
# One page of a delimiter ('/') listing: the keys right in the prefix, the prefixes one level
# down (each list in name order), and whether more pages follow.
Level = tuple[list[Listed], list[str], bool]

WINDOW = 4  # prefixes asked for ahead, per listing in flight: small ones finish early
AHEAD = 2  # pages a prefix's listing keeps ready before it waits for the walk
KEYS_AHEAD = 10_000  # a level's keys held before the walk catches up
MAX_DEPTH = 3  # levels looked into for enough prefixes to list at once


def listed_by_prefix(
    level: Callable[[str], Generator[Level, None, None]],
    flat: Callable[[str], Iterator[list[Listed]]],
    concurrency: int,
    name: str = "cairn-list",
) -> Iterator[Listed]:
    """The root's keys in name order, as one flat listing gives them, from up to
    ``concurrency`` listings at once: a delimiter listing of the root (and of a few levels
    below it, while its prefixes would keep at most half the listings busy) cuts the key range
    into units, keys and prefixes, each prefix then listed flat on a thread. All keys below a
    prefix lie between that prefix and the next unit in name order, so handing the units out
    in name order, each prefix's pages one after another, keeps the global order.

    Memory stays bounded: ``AHEAD`` pages per listing, ``WINDOW`` times ``concurrency``
    prefixes asked for ahead of the walk. A listing's error is raised when the walk reaches
    that prefix, as the one flat listing raised it at that point."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix=name)
    try:
        units = _units(level, concurrency, pool)
        window: deque[Listed | _Feed] = deque()
        feeds = 0
        exhausted = False
        while True:
            while not exhausted and feeds < WINDOW * concurrency and len(window) < KEYS_AHEAD:
                unit = next(units, None)
                if unit is None:
                    exhausted = True
                elif isinstance(unit, str):
                    feed = _Feed()
                    pool.submit(feed.fill, flat, unit, stop)
                    window.append(feed)
                    feeds += 1
                else:
                    window.append(unit)
            if not window:
                return
            head = window.popleft()
            if isinstance(head, _Feed):
                yield from head.drain()
                feeds -= 1
            else:
                yield head
    finally:
        # A walk left early (or failed) does not wait for listings nobody will read.
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


def _units(
    level: Callable[[str], Generator[Level, None, None]], concurrency: int, pool: ThreadPoolExecutor
) -> Iterator[Unit]:
    pages = level("")
    first = next(pages, None)
    if first is None:  # a listing of no page at all: nothing there
        return
    keys, prefixes, more = first
    if more:
        # A root of many pages: its units streamed page by page, each prefix listed flat.
        yield from _merged(keys, prefixes)
        for keys, prefixes, _ in pages:
            yield from _merged(keys, prefixes)
        return
    units = _merged(keys, prefixes)
    large: set[str] = set()  # prefixes whose level is more than a page: listed flat
    for _ in range(MAX_DEPTH):
        # Too few prefixes to keep the listings busy: look one level down into each, at once.
        # Not as soon as they are fewer than the listings: each prefix costs a request of its
        # own (about 1.5 ms of client CPU with botocore), and cutting 12 prefixes into 120 to
        # run 16 listings cost more CPU than it saved wall time (bench_s3, 20,000 keys).
        prefixes = [unit for unit in units if isinstance(unit, str)]
        below = [prefix for prefix in prefixes if prefix not in large]
        if not below or 2 * len(prefixes) > concurrency:
            break
        # On the listings' pool: no listing holds a thread yet (none starts before the first
        # unit is out), so these cannot wait behind ones blocked on a walk that waits on them.
        probes = {prefix: pool.submit(_one_page, level, prefix) for prefix in below}
        split: list[Unit] = []
        for unit in units:
            page = probes[unit].result() if isinstance(unit, str) and unit in probes else None
            if page is None:
                split.append(unit)
            else:
                split.extend(_merged(page[0], page[1]))
        large.update(prefix for prefix, probe in probes.items() if probe.result() is None)
        units = split
    yield from units


def _one_page(level: Callable[[str], Generator[Level, None, None]], prefix: str) -> Level | None:
    """The prefix's delimiter listing when it fits one page; None when it is larger (the
    prefix is then listed flat: a folder of many keys gains nothing from being cut)."""
    pages = level(prefix)
    try:
        page = next(pages)
    finally:
        pages.close()
    return None if page[2] else page


def _merged(keys: list[Listed], prefixes: list[str]) -> list[Unit]:
    """A level page's units in name order. A level's keys hold no '/', so a key and a prefix
    compare as names do in a flat listing: "a b" and "a" before "a/", "a0" after all below
    "a/". Sorted here, not merged: a page's two lists need not be in that order (SeaweedFS
    puts "a/" before "a b/", since its folder "a" comes before "a b"), while pages follow one
    another in name order."""
    units: list[Unit] = [*keys, *prefixes]
    units.sort(key=lambda unit: unit if isinstance(unit, str) else unit[0])
    return units


_END = object()


class _Feed:
    """One prefix's flat listing, filled on a pool thread, read in order by the walk."""

    def __init__(self) -> None:
        self._pages: queue.Queue[object] = queue.Queue(AHEAD)

    def fill(
        self, flat: Callable[[str], Iterator[list[Listed]]], prefix: str, stop: threading.Event
    ) -> None:
        try:
            for page in flat(prefix):
                if not self._put(page, stop):
                    return
        except BaseException as exc:  # handed to the walk, which raises it in its place
            self._put(exc, stop)
            return
        self._put(_END, stop)

    def _put(self, item: object, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                self._pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def drain(self) -> Iterator[Listed]:
        while True:
            item = self._pages.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield from cast(list[Listed], item)

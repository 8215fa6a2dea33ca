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
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

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

"""The contract every connector implements, and the path rule they all share.

Paths inside a volume are relative to its root, '/'-separated, with no leading slash; '' is the
root. Callers may pass anything (manifest ``location`` fields are user input), so every
implementation runs paths through :func:`normalize_relpath` before touching its backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Protocol, Self, TypeAlias, runtime_checkable

from connectors.errors import PathOutsideVolume, VolumeError


@dataclass(frozen=True, slots=True)
class Entry:
    path: str
    size: int
    mtime_ns: int
    is_dir: bool
    # What the store says identifies this content (S3's ETag), or ''. Not part of equality:
    # the same entry stat'ed and walked compares equal whether or not the call returned it.
    tag: str = field(default="", compare=False)

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]


_new_entry = Entry.__new__
_set_path, _set_size = Entry.path.__set__, Entry.size.__set__  # type: ignore[attr-defined,misc]
_set_mtime, _set_is_dir = Entry.mtime_ns.__set__, Entry.is_dir.__set__  # type: ignore[attr-defined,misc]
_set_tag = Entry.tag.__set__  # type: ignore[attr-defined,misc]


def make_entry(path: str, size: int, mtime_ns: int, is_dir: bool, tag: str = "") -> Entry:
    """Same as ``Entry(...)`` at about a third of the cost, for walks yielding 100k entries.

    The frozen dataclass __init__ goes through object.__setattr__ once per field; writing the
    slots through their descriptors skips that, and frozenness still holds for everyone else.
    """
    entry = _new_entry(Entry)
    _set_path(entry, path)
    _set_size(entry, size)
    _set_mtime(entry, mtime_ns)
    _set_is_dir(entry, is_dir)
    _set_tag(entry, tag)
    return entry


# (relative path, reason): how a walk reports what it skipped without stopping.
ProblemSink: TypeAlias = Callable[[str, str], None]
# One folder of a walk: its relative path ('' is the root), its files, its subfolders.
FolderListing: TypeAlias = tuple[str, list[Entry], list[Entry]]

# How a reason starts when a walk skipped a symlink to a folder it walks under the folder's real
# path anyway. Nothing below such a link goes unseen, unlike below a folder that could not be
# listed, so a caller need not keep what it found there before.
LINKED_FOLDER = "symlink to a folder inside the volume"
# How a reason starts when an object store's walk left out an object whose name is also a
# folder's (``a`` beside ``a/x``): the folder and all below it were walked (connectors/flat.py).
SHADOWED_OBJECT = "an object that is also a folder's name"


class ClosedOnExit:
    """``with volume:`` closes the volume at the block's end, whatever the connector holds."""

    __slots__ = ()

    if TYPE_CHECKING:  # what the volume class provides

        def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@runtime_checkable
class Volume(Protocol):
    url: str
    scheme: str

    def walk(self, on_problem: ProblemSink | None = None) -> Iterator[Entry]:
        """Lazily yield every file and directory below the root (not the root itself)."""
        ...

    def stat(self, path: str) -> Entry: ...

    def open(self, path: str, size: int | None = None) -> BinaryIO:
        """A seekable binary file object; the caller closes it.

        ``size``: the file's size as a walk listed it. A remote volume then skips the call
        that would ask for it (a missing file fails at the first read instead of here); one
        that has grown is read up to that size, one that has shrunk fails its read.
        """
        ...

    def read(self, path: str, max_bytes: int) -> bytes:
        """The whole file, or EntryTooLarge when it holds more than ``max_bytes``."""
        ...

    def url_for(self, path: str) -> str: ...

    def close(self) -> None: ...


@runtime_checkable
class WritableVolume(Volume, Protocol):
    """A volume that can store a small file whole (``cairn snapshot`` writes manifests back).

    Every built-in connector has it (local, HDFS, ADLS, S3); a reader sees the old bytes or the
    new, never a mix.
    """

    def write_bytes(self, path: str, data: bytes) -> None: ...


def normalize_relpath(path: str) -> str:
    """Canonical relative form of ``path``; PathOutsideVolume if it is absolute or climbs out.

    '..' is resolved lexically, so 'a/../b' is 'b'; a '..' that would climb above the root is
    refused rather than clamped, because clamping would silently read a different file.
    """
    if not isinstance(path, str):
        raise TypeError(f"volume paths are str, not {type(path).__name__}")
    if "\x00" in path:
        raise VolumeError(f"path {path!r} contains a NUL character", path=path)
    if path.startswith("/"):
        raise PathOutsideVolume(
            f"absolute path {path!r} is not allowed; paths are relative to the volume root",
            path=path,
        )
    if "//" not in path and "/." not in path and path[:1] != "." and path[-1:] != "/":
        # Already canonical (no empty, "." or ".." segment): the common case, 30k times a
        # crawl of 10k manifests, returned as it is.
        return path
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathOutsideVolume(f"path {path!r} climbs out of the volume", path=path)
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)

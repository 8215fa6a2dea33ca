"""Errors raised by volumes; every connector maps its backend's failures onto this tree.

    VolumeError                 anything a volume cannot do; ``path`` names the entry if known
    ├── EntryNotFound           no such entry (or a parent is missing / not a directory)
    ├── EntryTooLarge           file bigger than the caller's cap; carries ``size`` and ``limit``
    ├── AccessDenied            the backend refused (permissions, ACLs, credentials)
    ├── NotAFile                a directory, FIFO, socket or device where a file was needed
    ├── PathOutsideVolume       '..' escape, absolute path, or a symlink leading out of the root
    ├── VolumeUnreachable       the server behind a remote volume did not answer, after retries:
    │                           every later call would fail the same way
    └── UnsupportedScheme       no connector for a URL's scheme; lists the supported ones

Messages name relative paths only, never credentials: they end up in crawl reports and logs.
"""

from __future__ import annotations

from collections.abc import Iterable


class VolumeError(Exception):
    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class EntryNotFound(VolumeError):
    pass


class EntryTooLarge(VolumeError):
    def __init__(self, path: str, size: int, limit: int) -> None:
        # size may be a lower bound: reading stops one byte past the limit
        super().__init__(f"{path!r} is {size} bytes, over the limit of {limit} bytes", path=path)
        self.size = size
        self.limit = limit


class AccessDenied(VolumeError):
    pass


class NotAFile(VolumeError):
    pass


class PathOutsideVolume(VolumeError):
    pass


class VolumeUnreachable(VolumeError):
    pass


class UnsupportedScheme(VolumeError):
    def __init__(self, scheme: str, supported: Iterable[str], *, reason: str | None = None) -> None:
        self.scheme = scheme
        self.supported = tuple(supported)
        head = reason or f"no connector for '{scheme}://' is installed in this version"
        super().__init__(f"{head}; supported: {', '.join(self.supported) or 'none'}")

"""A read-only, seekable file over ranged reads, for remote volumes' ``open()``.

pyarrow reads a Parquet schema by seeking to the end and reading the footer: with this wrapper
that costs one or two ranged GETs, however large the file. Reads are served from one block
fetched at least ``min_fetch`` bytes at a time, so the many small reads a parser makes near
each other cost one request, not one each.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, cast
from urllib.parse import quote

from connectors.base import Entry, normalize_relpath
from connectors.errors import EntryTooLarge, NotAFile, VolumeError

# (offset, length) -> exactly ``length`` bytes, or fewer only at the end of the file
FetchRange = Callable[[int, int], bytes]

DEFAULT_MIN_FETCH = 64 * 1024


class RangedFile(io.RawIOBase):
    def __init__(
        self, path: str, size: int, fetch: FetchRange, *, min_fetch: int = DEFAULT_MIN_FETCH
    ) -> None:
        super().__init__()
        self.name = path
        self.size = size
        self._fetch = fetch
        self._min_fetch = max(1, min_fetch)
        self._pos = 0
        self._block_start = 0
        self._block = b""
        # What went over the wire, for tests and benchmarks.
        self.requests = 0
        self.bytes_fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if pos < 0:
            raise OSError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._check_open()
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.size - self._pos)
        if want <= 0:
            return 0
        start = self._pos - self._block_start
        if not (start >= 0 and start + want <= len(self._block)):
            self._load(self._pos, want)
            start = 0
        view[:want] = self._block[start : start + want]
        self._pos += want
        return want

    def readall(self) -> bytes:
        return self.read(max(0, self.size - self._pos))

    def _load(self, offset: int, want: int) -> None:
        length = min(max(want, self._min_fetch), self.size - offset)
        data = self._fetch(offset, length)
        self.requests += 1
        self.bytes_fetched += len(data)
        if len(data) < want:
            raise VolumeError(
                f"{self.name!r} is shorter than its listed size (changed while being read?)",
                path=self.name,
            )
        self._block_start = offset
        self._block = data

    def close(self) -> None:
        self._block = b""
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")


# Characters a URL path keeps as they are (RFC 3986 pchar, '/' included): volume URLs show
# object names as the stores do, with the rest percent-encoded.
_PATH_SAFE = "/:@!$&'()*+,;="


def quote_path(path: str) -> str:
    return quote(path, safe=_PATH_SAFE)


def file_and_size(stat: Callable[[str], Entry], path: str, size: int | None) -> tuple[str, int]:
    """The normalized path of a file to open and its size: ``stat``'s, or the size a listing
    gave, which spares the request that would ask for it (a missing file then fails at its
    first read instead)."""
    if size is None:
        entry = stat(path)
        if entry.is_dir:
            raise NotAFile(f"{entry.path!r} is a directory", path=entry.path)
        return entry.path, entry.size
    rel = normalize_relpath(path)
    if not rel:
        raise NotAFile("'' is the volume root, a directory", path=rel)
    return rel, size


def read_capped(
    path: str,
    max_bytes: int,
    head: Callable[[str, int], bytes],
    stat: Callable[[str], Entry],
) -> bytes:
    """A whole small file in one ranged read, ``head(rel, n)`` giving its first ``n`` bytes:
    one byte past the cap tells "exactly max_bytes" from "more" without asking for the size
    first (``stat`` is called only to name the size of a file that is too large)."""
    if max_bytes < 0:
        raise ValueError("max_bytes must be >= 0")
    rel = normalize_relpath(path)
    if not rel:
        raise NotAFile("'' is the volume root, a directory", path=rel)
    data = head(rel, max_bytes + 1)
    if len(data) > max_bytes:
        raise EntryTooLarge(rel, max(stat(rel).size, len(data)), max_bytes)
    return data


class RangedReads:
    """``open``, ``read`` and ``url_for`` of a volume whose files are objects read by byte range
    (S3, ADLS's Blob API): the volume provides ``url``, ``stat`` and ``_fetch``."""

    url: str

    if TYPE_CHECKING:  # what the volume class provides

        def stat(self, path: str) -> Entry: ...

        def _fetch(self, rel: str, offset: int, length: int) -> bytes:
            """``length`` bytes of ``rel`` from ``offset`` (fewer only at the end)."""
            ...

    def open(self, path: str, size: int | None = None) -> BinaryIO:
        rel, size = file_and_size(self.stat, path, size)

        def fetch(offset: int, length: int) -> bytes:
            return self._fetch(rel, offset, length)

        return cast(BinaryIO, RangedFile(rel, max(0, size), fetch))

    def read(self, path: str, max_bytes: int) -> bytes:
        # A missing object or a folder fails the ranged GET as a HEAD would have.
        return read_capped(path, max_bytes, lambda rel, n: self._fetch(rel, 0, n), self.stat)

    def url_for(self, path: str) -> str:
        rel = normalize_relpath(path)
        if not rel:
            return self.url
        return self.url.rstrip("/") + "/" + quote_path(rel)

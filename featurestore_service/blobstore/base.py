"""The ``BlobStore`` protocol: where the feature store keeps the Parquet files of its tables.

Keys are ``<sha256>.parquet``: a blob is named by its content, so it never changes once
written, two uploads of the same bytes share it, and a copy of it anywhere (the read cache) can
never go stale.

    BlobError               a blob store cannot do what was asked (unreachable, refused, ...)
    └── BlobMissing         no blob has this key
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

KEY = re.compile(r"^[0-9a-f]{64}\.parquet$")
CHUNK = 8 * 1024 * 1024  # bytes per part, block or read when a blob is copied


class BlobError(Exception):
    """A blob store could not do what was asked; the message names the store, never secrets."""


class BlobMissing(BlobError):
    pass


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    modified: float  # Unix time the blob was written: the sweeper's grace period runs from it


def blob_key(sha256: str) -> str:
    return f"{sha256}.parquet"


def check_key(key: str) -> str:
    """``key`` if it is a content address; keys never come from users, but a store lists
    whatever else sits in its folder, and those names must never be read or deleted."""
    if not KEY.match(key):
        raise BlobError(f"not a blob key: {key!r} (expected <sha256>.parquet)")
    return key


class BlobStore(Protocol):
    """A handful of primitives; the upload checks, the read cache and the sweeper are written
    once on top of them (``featurestore_service.blobstore.tables``)."""

    url: str  # where the blobs live, without credentials

    def put(self, key: str, source: BinaryIO) -> bool:
        """Stores the bytes of ``source`` (a file open for reading at offset 0) under ``key``
        unless a blob has that key already; True when this call created it.

        All or nothing: readers never see part of a blob, and a failure (of the source or of
        the store) leaves no blob and nothing else behind that the store would keep.
        """
        ...

    def exists(self, key: str) -> bool: ...

    def open(self, key: str) -> BinaryIO:
        """A seekable file over the blob; reads are ranged, so a footer costs one request.
        BlobMissing when there is none."""
        ...

    def delete(self, key: str) -> None:
        """Removes the blob; nothing happens when there is none."""
        ...

    def list_blobs(self) -> Iterator[BlobInfo]:
        """Every blob of the store, in no particular order (other names are left out)."""
        ...

    def remove_partial(self, before: float) -> int:
        """Removes what uploads cut short by a crash left behind (temporary files, incomplete
        multipart uploads) that were started before Unix time ``before``; how many."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A local file holding the blob, readable in place, or None when reads go through the
        read cache (remote stores)."""
        ...

    def close(self) -> None: ...

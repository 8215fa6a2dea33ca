"""The ``BlobStore`` protocol: where the feature store keeps the Parquet files of its tables.

Keys are ``<sha256>.parquet``: a blob is named by its content, so it never changes once
written, two uploads of the same bytes share it, and a copy of it anywhere (the read cache) can
never go stale.

    BlobError               a blob store cannot do what was asked (unreachable, refused, ...)
    └── BlobMissing         no blob has this key
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Protocol

KEY = re.compile(r"^[0-9a-f]{64}\.parquet$")
# What ``take`` hands out: the blob's key, then a mark of that one take (a uuid, a lease id).
TAKEN = re.compile(r"^([0-9a-f]{64}\.parquet)\.([0-9A-Za-z-]{1,64})$")
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


def taken_name(key: str, mark: str) -> str:
    return f"{key}.{mark}"


def split_taken(taken: str) -> tuple[str, str]:
    """The key and the mark of a name from ``take`` or ``list_taken``."""
    match = TAKEN.match(taken)
    if match is None:
        raise BlobError(f"not a taken blob: {taken!r} (expected <sha256>.parquet.<mark>)")
    return match.group(1), match.group(2)


def taken_key(taken: str) -> str:
    return split_taken(taken)[0]


def unmodified_since(written_before: float) -> datetime:
    """The time of a store's "not written since" condition for Unix time ``written_before``.

    Whole seconds, as S3's and ADLS's listings give write times: rounded up, so no blob the
    listing found old enough is refused for a fraction of a second."""
    return datetime.fromtimestamp(math.ceil(written_before), UTC)


def fsync_dir(folder: Path) -> None:
    """Makes the entries of ``folder`` (a file linked or renamed into it, a new subfolder)
    outlast a power loss, as POSIX asks; the files' own data is fsynced by their writers."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

        A blob found there has its write time set to now, in the same request that finds it
        (a copy in place, a metadata write, SETTIMES, utime): the sweeper's grace period then
        protects it as it protects a new blob, until the version row naming it is written.
        Best effort: where the store cannot (S3 copies no object over 5 GiB) the blob is
        only found; the sweeper's take-then-ask order keeps a version's blob without it.
        While the blob is taken (``take``) a put stores the bytes afresh or waits until the
        take is settled.

        All or nothing: readers never see part of a blob, and a failure (of the source or of
        the store) leaves no blob and nothing else behind that the store would keep.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether the blob is stored; False while it is taken."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A seekable file over the blob; reads are ranged, so a footer costs one request.
        BlobMissing when there is none."""
        ...

    def delete(self, key: str) -> None:
        """Removes the blob; nothing happens when there is none."""
        ...

    def list_blobs(self) -> Iterator[BlobInfo]:
        """Every blob of the store, in no particular order (other names, and taken blobs,
        are left out)."""
        ...

    def take(self, key: str, written_before: float | None) -> str | None:
        """Withdraws the blob, in one atomic step, so that it can be deleted safely: from then
        on until ``restore`` or ``discard``, ``exists`` says False and a ``put`` of the same
        key stores the bytes afresh or waits. Only if its write time is before Unix time
        ``written_before`` (any age when None); the name of what was taken, or None when the
        blob is gone, younger, or taken by someone else.

        Moved aside (a rename, or a copy then a delete) or locked (an ADLS lease): the step a
        sweeper takes *before* asking the database a last time whether a version names the
        blob (``TableBlobs.sweep`` says why that order matters).
        """
        ...

    def restore(self, taken: str) -> None:
        """Puts a taken blob back under its key; nothing happens when it is settled already."""
        ...

    def discard(self, taken: str) -> bool:
        """Deletes a taken blob for good; False when it is no longer taken (settled by another
        sweeper, or a lease that ran out), and then nothing was deleted."""
        ...

    def list_taken(self, taken_before: float | None = None) -> Iterator[str]:
        """Taken blobs neither restored nor discarded: a sweeper's, under way or cut short.

        With ``taken_before`` (Unix time), only those whose take is surely over or began
        before it, so that a sweeper settling another's leftovers never meets a take half
        done. Where a take is one atomic step (a rename) every one is listed. On S3 a take is
        a copy aside then a delete of the blob: a copy younger than ``taken_before`` may be
        one whose delete is still to come, and settling it then would delete the copy of a
        blob that an upload may yet refresh and name before that delete."""
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

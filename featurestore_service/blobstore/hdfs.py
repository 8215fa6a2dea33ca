"""Blobs in an HDFS folder, over WebHDFS (``hdfs://namenode:9870/path``), through the same
``HdfsVolume`` the crawler reads with: its NameNode list, HA rotation, retries, authentication
(``CAIRN_HDFS_USER``, ``CAIRN_HDFS_AUTH``) and ranged reads.

A put is ``HdfsVolume.write_file``: a WebHDFS CREATE of an empty ``<root>/.tmp/<uuid>.part``, an
APPEND streamed from the local file, then a RENAME to ``<root>/<sha256>.parquet``. HDFS renames
are atomic and (without overwrite) refuse an existing target, so readers never see a partial
blob and a concurrent put of the same bytes loses harmlessly.
A failed upload deletes its part; parts left by a crash are removed by the sweeper
(:meth:`HdfsBlobStore.remove_partial`).

A put that finds its blob sets its modification time to now (SETTIMES, which fails on a
missing file). A sweeper takes a blob by renaming it into ``<root>/.swept`` (the rename keeps
its modification time, which is checked again after it).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlsplit

from connectors.errors import EntryNotFound, VolumeError
from connectors.webhdfs import HdfsVolume
from featurestore_service.blobstore.base import (
    CHUNK,
    KEY,
    TAKEN,
    BlobError,
    BlobInfo,
    BlobMissing,
    check_key,
    taken_key,
    taken_name,
)

PARTS = ".tmp"
SWEPT = ".swept"  # blobs a sweeper has taken
T = TypeVar("T")


class HdfsBlobStore:
    def __init__(self, volume: HdfsVolume) -> None:
        self.volume = volume
        self.url = volume.url
        self._call(PARTS, lambda: volume.client.makedirs(volume.absolute(PARTS)))
        self._call(SWEPT, lambda: volume.client.makedirs(volume.absolute(SWEPT)))

    @classmethod
    def from_url(cls, url: str) -> HdfsBlobStore:
        try:
            volume = HdfsVolume.from_url(url)
        except EntryNotFound:
            # A new store: make its folder, from the root of the same file system.
            parts = urlsplit(url)
            top = HdfsVolume.from_url(f"{parts.scheme}://{parts.netloc}/")
            folder = top.absolute(parts.path.strip("/"))
            try:
                top.call("", lambda: top.client.makedirs(folder))
            except VolumeError as exc:
                raise BlobError(f"cannot make the blob folder {folder}: {exc}") from None
            finally:
                top.close()
            volume = HdfsVolume.from_url(url)
        except VolumeError as exc:
            raise BlobError(f"cannot open the blob store {url}: {exc}") from None
        return cls(volume)

    def _call(self, rel: str, fn: Callable[[], T]) -> T:
        try:
            return self.volume.call(rel, fn)
        except VolumeError as exc:
            raise BlobError(f"{self.url}: {exc}") from None

    def put(self, key: str, source: BinaryIO) -> bool:
        check_key(key)
        if self._refresh(key):
            return False
        part = f"{PARTS}/{uuid.uuid4().hex}.part"
        try:
            self.volume.write_file(part, key, _Chunks(source), overwrite=False)
        except VolumeError as exc:
            if self.exists(key):  # a concurrent put of the same bytes came first
                return False
            raise BlobError(f"{self.url}: cannot write {key}: {exc}") from None
        return True

    def _refresh(self, key: str) -> bool:
        """Sets the blob's modification time to now; False when there is none."""
        path = self.volume.absolute(key)
        now = int(time.time() * 1000)
        try:
            self.volume.call(key, lambda: self.volume.client.set_times(path, modification_time=now))
        except EntryNotFound:
            return False
        except VolumeError as exc:
            raise BlobError(f"{self.url}: {exc}") from None
        return True

    def exists(self, key: str) -> bool:
        check_key(key)
        return self._modified(key) is not None

    def _modified(self, rel: str) -> float | None:
        """The file's modification time (Unix seconds), or None when there is none."""
        try:
            return self.volume.stat(rel).mtime_ns / 1e9
        except EntryNotFound:
            return None
        except VolumeError as exc:
            raise BlobError(f"{self.url}: {exc}") from None

    def _written_before(self, rel: str, moment: float) -> bool:
        modified = self._modified(rel)
        return modified is not None and modified < moment

    def open(self, key: str) -> BinaryIO:
        check_key(key)
        try:
            return self.volume.open(key)
        except EntryNotFound:
            raise BlobMissing(f"no blob {key} in {self.url}") from None
        except VolumeError as exc:
            raise BlobError(f"{self.url}: {exc}") from None

    def delete(self, key: str) -> None:
        check_key(key)
        path = self.volume.absolute(key)
        self._call(key, lambda: self.volume.client.delete(path))

    def take(self, key: str, written_before: float | None) -> str | None:
        check_key(key)
        if written_before is not None and not self._written_before(key, written_before):
            return None  # young or refreshed: spare the renames
        taken = taken_name(key, uuid.uuid4().hex)
        aside = f"{SWEPT}/{taken}"
        try:
            self.volume.rename(key, aside)
        except EntryNotFound:
            # Gone, or moved by an attempt whose answer was lost before the retry.
            if self._modified(aside) is None:
                return None
        except VolumeError as exc:
            raise BlobError(f"{self.url}: cannot take {key}: {exc}") from None
        # The rename is the moment of the take: a put's SETTIMES before it shows here, one
        # after it finds no file and that put stores its own.
        if written_before is not None and not self._written_before(aside, written_before):
            self.restore(taken)
            return None
        return taken

    def restore(self, taken: str) -> None:
        key = taken_key(taken)
        aside = f"{SWEPT}/{taken}"
        try:
            self.volume.rename(aside, key)
        except EntryNotFound:
            return  # settled already
        except VolumeError as exc:
            if "FileAlreadyExistsException" not in str(exc):
                raise BlobError(f"{self.url}: cannot restore {key}: {exc}") from None
            # A put stored the same bytes meanwhile: the taken copy is not needed.
            self.discard(taken)

    def discard(self, taken: str) -> bool:
        taken_key(taken)
        path = self.volume.absolute(f"{SWEPT}/{taken}")
        return bool(self._call(SWEPT, lambda: self.volume.client.delete(path)))

    def list_taken(self, taken_before: float | None = None) -> Iterator[str]:
        # Every one: the rename is the whole take, so none is half done.
        for batch in self._listing(SWEPT):
            for status in batch:
                if TAKEN.match(status["pathSuffix"]):
                    yield status["pathSuffix"]

    def list_blobs(self) -> Iterator[BlobInfo]:
        for batch in self._listing(""):
            for status in batch:
                name = status["pathSuffix"]
                if status["type"] == "FILE" and KEY.match(name):
                    yield BlobInfo(name, int(status["length"]), status["modificationTime"] / 1000)

    def remove_partial(self, before: float) -> int:
        """Deletes parts of uploads cut short by a crash, written before ``before``."""
        removed = 0
        for batch in self._listing(PARTS):
            for status in batch:
                if status["modificationTime"] / 1000 < before:
                    self._delete(self.volume.absolute(f"{PARTS}/{status['pathSuffix']}"))
                    removed += 1
        return removed

    def _delete(self, path: str) -> None:
        self._call(PARTS, lambda: self.volume.client.delete(path))

    def _listing(self, rel: str) -> Iterator[list[dict[str, Any]]]:
        try:
            yield from self.volume.batches(rel)
        except VolumeError as exc:
            raise BlobError(f"{self.url}: cannot list {rel or 'the store'}: {exc}") from None

    def local_path(self, key: str) -> Path | None:
        return None

    def close(self) -> None:
        self.volume.close()


class _Chunks:
    """The source as an iterator of CHUNK-sized pieces, so requests streams it (chunked)
    instead of reading the whole file into memory."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source

    def __iter__(self) -> Iterator[bytes]:
        while piece := self.source.read(CHUNK):
            yield piece

"""Blobs in an HDFS folder, over WebHDFS (``hdfs://namenode:9870/path``), through the same
``HdfsVolume`` the crawler reads with: its NameNode list, HA rotation, retries, authentication
(``CAIRN_HDFS_USER``, ``CAIRN_HDFS_AUTH``) and ranged reads.

A put is ``HdfsVolume.write_file``: a WebHDFS CREATE of an empty ``<root>/.tmp/<uuid>.part``, an
APPEND streamed from the local file, then a RENAME to ``<root>/<sha256>.parquet``. HDFS renames
are atomic and (without overwrite) refuse an existing target, so readers never see a partial
blob and a concurrent put of the same bytes loses harmlessly.
A failed upload deletes its part; parts left by a crash are removed by the sweeper
(:meth:`HdfsBlobStore.remove_partial`).
"""

from __future__ import annotations

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
    BlobError,
    BlobInfo,
    BlobMissing,
    check_key,
)

PARTS = ".tmp"
T = TypeVar("T")


class HdfsBlobStore:
    def __init__(self, volume: HdfsVolume) -> None:
        self.volume = volume
        self.url = volume.url
        self._call(PARTS, lambda: volume.client.makedirs(volume.absolute(PARTS)))

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
        if self.exists(key):
            return False
        part = f"{PARTS}/{uuid.uuid4().hex}.part"
        try:
            self.volume.write_file(part, key, _Chunks(source), overwrite=False)
        except VolumeError as exc:
            if self.exists(key):  # a concurrent put of the same bytes came first
                return False
            raise BlobError(f"{self.url}: cannot write {key}: {exc}") from None
        return True

    def exists(self, key: str) -> bool:
        check_key(key)
        try:
            self.volume.stat(key)
        except EntryNotFound:
            return False
        except VolumeError as exc:
            raise BlobError(f"{self.url}: {exc}") from None
        return True

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

"""Blobs in an ADLS Gen2 folder or a Blob container (``abfss://fs@account.dfs.core.windows.net/
path``, ``az://container/path``), through the same ``AdlsVolume`` the crawler reads with: its
credentials (``CAIRN_AZURE_*``), endpoint and ranged reads, on the Blob API that every ADLS Gen2
account and every emulator serves.

A put (``AdlsVolume.write_blocks``) stages the local file as block blob blocks (``CHUNK`` bytes
each, streamed, never the whole file in memory) and commits the block list with
``If-None-Match: *``: the blob appears whole or not at all, and an existing one is left alone.
Blocks that were never committed are invisible to readers and listings, and the service
discards them itself (after a week on Azure), so a failed upload leaves nothing a reader or
the sweeper would see.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

from azure.core.exceptions import AzureError, ResourceNotFoundError

from connectors.adls import AdlsVolume
from connectors.base import normalize_relpath
from connectors.errors import EntryNotFound, VolumeError
from featurestore_service.blobstore.base import (
    CHUNK,
    KEY,
    BlobError,
    BlobInfo,
    BlobMissing,
    check_key,
)


class AdlsBlobStore:
    def __init__(self, volume: AdlsVolume, prefix: str) -> None:
        self.volume = volume
        self.prefix = prefix  # '' or 'a/b'
        self.url = volume.url.rstrip("/") + (f"/{prefix}" if prefix else "")

    @classmethod
    def from_url(cls, url: str) -> AdlsBlobStore:
        parts = urlsplit(url)
        try:
            prefix = normalize_relpath(parts.path.lstrip("/"))
            # The volume is the container itself: the store's folder need not exist yet (on the
            # Blob API a folder is only a name prefix).
            volume = AdlsVolume.from_url(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
        except VolumeError as exc:
            raise BlobError(f"cannot open the blob store {url}: {exc}") from None
        return cls(volume, prefix)

    def _rel(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _error(self, exc: AzureError, rel: str) -> BlobError:
        return BlobError(f"{self.url}: {self.volume.translate(exc, rel)}")

    def put(self, key: str, source: BinaryIO) -> bool:
        rel = self._rel(key)
        if self.exists(key):
            return False
        try:
            return self.volume.write_blocks(
                rel, iter(lambda: source.read(CHUNK), b""), overwrite=False
            )
        except VolumeError as exc:
            raise BlobError(f"{self.url}: {exc}") from None

    def exists(self, key: str) -> bool:
        rel = self._rel(key)
        try:
            self.volume.requests += 1
            blob = self.volume.container.get_blob_client(self.volume.blob_name(rel))
            return bool(blob.exists())
        except AzureError as exc:
            raise self._error(exc, rel) from None

    def open(self, key: str) -> BinaryIO:
        rel = self._rel(key)
        try:
            return self.volume.open(rel)
        except EntryNotFound:
            raise BlobMissing(f"no blob {key} in {self.url}") from None
        except VolumeError as exc:
            raise BlobError(f"{self.url}: {exc}") from None

    def delete(self, key: str) -> None:
        rel = self._rel(key)
        try:
            self.volume.requests += 1
            self.volume.container.delete_blob(self.volume.blob_name(rel))
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise self._error(exc, rel) from None

    def list_blobs(self) -> Iterator[BlobInfo]:
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            for props in self.volume.container.list_blobs(name_starts_with=start or None):
                name = props.name[len(start) :]
                if KEY.match(name):
                    yield BlobInfo(name, int(props.size), props.last_modified.timestamp())
        except AzureError as exc:
            raise self._error(exc, self.prefix) from None

    def remove_partial(self, before: float) -> int:
        return 0  # uncommitted blocks are no blob: the service discards them itself

    def local_path(self, key: str) -> Path | None:
        return None

    def close(self) -> None:
        self.volume.close()

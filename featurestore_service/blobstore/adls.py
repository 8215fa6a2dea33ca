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

A put that finds its blob writes its metadata back (with ``REFRESHED``), which sets its write
time to now. A sweeper takes a blob with a lease (``LEASE_SECONDS``), on condition that it was
not written since the grace period began: while leased, the blob still reads, but no write or
delete without the lease id goes through, so a put that finds it waits until the sweeper lets
go (the lease released) or deletes it, and ``exists`` says False. Nothing is moved, so nothing
waits for the next sweep after a crash: the lease ends by itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobLeaseClient

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
    split_taken,
    taken_name,
    unmodified_since,
)

LEASE_SECONDS = 60  # a sweeper's take lasts at most this long (Azure allows 15 to 60)
# The metadata a put that finds its blob writes (Unix seconds), beside the blob's own.
REFRESHED = "cairn_refreshed"
_LET_GO = (404, 409, 412)  # the blob is gone, or the lease is not (or no longer) this one's


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

    def _blob(self, rel: str) -> BlobClient:
        return self.volume.container.get_blob_client(self.volume.blob_name(rel))

    def put(self, key: str, source: BinaryIO) -> bool:
        rel = self._rel(key)
        if self._refresh(rel):
            return False
        try:
            return self.volume.write_blocks(
                rel, iter(lambda: source.read(CHUNK), b""), overwrite=False
            )
        except VolumeError as exc:
            raise BlobError(f"{self.url}: {exc}") from None

    def _refresh(self, rel: str) -> bool:
        """Sets the blob's write time to now; False when there is none. A metadata write
        replaces all of it: what the blob has is read and written back with ``REFRESHED``,
        on condition that it did not change in between (else read again). A blob a sweeper
        has leased refuses the write: wait until the lease is released, deleted or ends."""
        blob = self._blob(rel)
        deadline = time.monotonic() + LEASE_SECONDS + 5
        while True:
            try:
                self.volume.requests += 1
                props = blob.get_blob_properties()
                metadata = {**(props.metadata or {}), REFRESHED: str(int(time.time()))}
                self.volume.requests += 1
                blob.set_blob_metadata(
                    metadata, etag=props.etag, match_condition=MatchConditions.IfNotModified
                )
                return True
            except ResourceNotFoundError:
                return False
            except ResourceModifiedError as exc:
                # Written meanwhile (another put's refresh): its metadata is read again.
                if time.monotonic() > deadline:
                    raise self._error(exc, rel) from None
                continue
            except HttpResponseError as exc:
                code = getattr(exc, "error_code", None)
                if code != "LeaseIdMissing" or time.monotonic() > deadline:
                    raise self._error(exc, rel) from None
            except AzureError as exc:
                raise self._error(exc, rel) from None
            time.sleep(0.2)

    def exists(self, key: str) -> bool:
        rel = self._rel(key)
        try:
            self.volume.requests += 1
            props = self._blob(rel).get_blob_properties()
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise self._error(exc, rel) from None
        return not _leased(props)

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
            self._blob(rel).delete_blob()
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise self._error(exc, rel) from None

    def list_blobs(self) -> Iterator[BlobInfo]:
        start = f"{self.prefix}/" if self.prefix else ""
        try:
            for props in self.volume.container.list_blobs(name_starts_with=start or None):
                name = props.name[len(start) :]
                if KEY.match(name) and not _leased(props):
                    yield BlobInfo(name, int(props.size), props.last_modified.timestamp())
        except AzureError as exc:
            raise self._error(exc, self.prefix) from None

    def take(self, key: str, written_before: float | None) -> str | None:
        rel = self._rel(key)
        lease = BlobLeaseClient(self._blob(rel))
        condition: dict[str, Any] = {}
        if written_before is not None:
            condition["if_unmodified_since"] = unmodified_since(written_before)
        try:
            self.volume.requests += 1
            lease.acquire(lease_duration=LEASE_SECONDS, **condition)
        except HttpResponseError as exc:
            if exc.status_code in _LET_GO:  # gone, written since, or another sweeper's
                return None
            raise self._error(exc, rel) from None
        except AzureError as exc:
            raise self._error(exc, rel) from None
        return taken_name(key, lease.id)

    def restore(self, taken: str) -> None:
        key, lease_id = split_taken(taken)
        rel = self._rel(key)
        try:
            self.volume.requests += 1
            BlobLeaseClient(self._blob(rel), lease_id=lease_id).release()
        except HttpResponseError as exc:
            if exc.status_code not in _LET_GO:
                raise self._error(exc, rel) from None
        except AzureError as exc:
            raise self._error(exc, rel) from None

    def discard(self, taken: str) -> bool:
        key, lease_id = split_taken(taken)
        rel = self._rel(key)
        try:
            self.volume.requests += 1
            self._blob(rel).delete_blob(lease=lease_id)
        except HttpResponseError as exc:
            if exc.status_code in _LET_GO:  # the lease ran out: whoever wrote since wins
                return False
            raise self._error(exc, rel) from None
        except AzureError as exc:
            raise self._error(exc, rel) from None
        return True

    def list_taken(self, taken_before: float | None = None) -> Iterator[str]:
        return iter(())  # leases a sweeper left end by themselves

    def remove_partial(self, before: float) -> int:
        return 0  # uncommitted blocks are no blob: the service discards them itself

    def local_path(self, key: str) -> Path | None:
        return None

    def close(self) -> None:
        self.volume.close()


def _leased(props: Any) -> bool:
    """Whether a sweeper holds the blob (no other writer of a blob store takes leases)."""
    lease = getattr(props, "lease", None)
    return getattr(lease, "status", None) == "locked"

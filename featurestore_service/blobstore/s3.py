"""Blobs under an S3 prefix (``s3://bucket/prefix``), on AWS or any S3-compatible store
(``CAIRN_S3_ENDPOINT``, ``CAIRN_S3_ADDRESSING_STYLE``), with the credentials, client settings
and ranged reads of the ``s3://`` connector (``connectors.s3``).

A put streams the local file as a multipart upload, ``CHUNK`` bytes a part (S3's parts are at
least 5 MiB, so a blob smaller than one part goes in a single PutObject instead), then
completes it: the object appears whole or not at all. Both carry ``If-None-Match: *`` so an
object already stored is left alone. A failure aborts the multipart upload, whose parts are then
gone; uploads a crash left incomplete are aborted by the sweeper (:meth:`remove_partial`),
and a bucket lifecycle rule (``AbortIncompleteMultipartUpload``) does the same on AWS.

An object's write time changes only when it is written, so a put that finds its blob copies
the object onto itself (a server-side copy, no bytes sent; it fails on a missing object, so
finding and refreshing are one request). CopyObject refuses sources over 5 GiB: such a blob
is found, and its time left alone. The refresh is best effort; it keeps sweeps away from blobs
in use, but what keeps a version's blob is that a sweeper takes a blob before it asks the
database (``tables.py``), which holds without it. A sweeper takes a blob by copying it to
``<prefix>/swept/`` on condition that it was not written since the grace period began
(``x-amz-copy-source-if-unmodified-since``), then deleting it; S3 has no atomic rename. That
copy, and a restore's, is a multipart copy (UploadPartCopy) for a blob over 5 GiB.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from cairn.settings import get_settings
from connectors.base import normalize_relpath
from connectors.errors import EntryNotFound, VolumeError
from connectors.s3 import S3Volume, make_client
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
    unmodified_since,
)

log = logging.getLogger("cairn.featurestore.blobs")
_EXISTS = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
_MISSING = ("404", "NoSuchKey", "NotFound")
SWEPT = "swept"  # below the store's prefix: blobs a sweeper has taken
COPY_LIMIT = 5 * 1024**3  # the largest source CopyObject accepts
COPY_PART = 512 * 1024**2  # bytes per UploadPartCopy of a multipart copy (S3 allows 5 MiB-5 GiB)


class S3BlobStore:
    def __init__(self, volume: S3Volume, client: Any, bucket: str, prefix: str) -> None:
        self.volume = volume  # the bucket as the connector sees it: ranged reads
        self.client = client
        self.bucket = bucket
        self.prefix = prefix  # '' or 'a/b'
        self.url = f"s3://{bucket}" + (f"/{prefix}" if prefix else "")
        # A take's or a restore's copy of a blob this size or larger is a multipart copy
        # (CopyObject refuses sources over COPY_LIMIT); tests lower both to reach that path.
        self.copy_threshold = COPY_LIMIT + 1
        self.copy_part = COPY_PART

    @classmethod
    def from_url(cls, url: str) -> S3BlobStore:
        parts = urlsplit(url)
        bucket_url = f"s3://{parts.netloc}"
        try:
            prefix = normalize_relpath(unquote(parts.path).lstrip("/"))
            client = make_client(get_settings())
            try:
                # The volume is the bucket itself: the store's prefix need not exist yet.
                volume = S3Volume.from_url(bucket_url)
            except EntryNotFound:
                _make_bucket(client, parts.netloc)
                volume = S3Volume.from_url(bucket_url)
        except VolumeError as exc:
            raise BlobError(f"cannot open the blob store {url}: {exc}") from None
        return cls(volume, client, volume.bucket, prefix)

    def _rel(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _taken_rel(self, taken: str) -> str:
        taken_key(taken)
        return f"{self.prefix}/{SWEPT}/{taken}" if self.prefix else f"{SWEPT}/{taken}"

    def _error(self, exc: Exception, key: str) -> BlobError:
        reason = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        return BlobError(f"{self.url}: {key}: S3 error {reason}")

    def put(self, key: str, source: BinaryIO) -> bool:
        name = self._rel(key)
        if self._copy(name, name, key):
            return False
        first = source.read(CHUNK)
        try:
            # A short read is the end only if the next read says so (it may also fail).
            if len(first) < CHUNK and not (more := source.read(CHUNK)):
                self.volume.requests += 1
                self.client.put_object(Bucket=self.bucket, Key=name, Body=first, IfNoneMatch="*")
                return True
            if len(first) < CHUNK:
                first += more
            return self._multipart(name, first, source)
        except ClientError as exc:
            if _code(exc) in _EXISTS:  # a concurrent put of the same bytes came first
                return False
            raise self._error(exc, key) from None
        except BotoCoreError as exc:
            raise self._error(exc, key) from None

    def _multipart(self, name: str, first: bytes, source: BinaryIO) -> bool:
        self.volume.requests += 1
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=name)["UploadId"]
        try:
            parts: list[dict[str, Any]] = []
            piece = first
            while piece:
                number = len(parts) + 1
                self.volume.requests += 1
                answer = self.client.upload_part(
                    Bucket=self.bucket, Key=name, UploadId=upload, PartNumber=number, Body=piece
                )
                parts.append({"PartNumber": number, "ETag": answer["ETag"]})
                piece = source.read(CHUNK)
            self.volume.requests += 1
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException:
            # The parts must not linger (S3 bills and keeps them until aborted).
            try:
                self.volume.requests += 1
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
            except (ClientError, BotoCoreError):
                pass  # the sweeper's remove_partial aborts it later
            raise
        return True

    def _copy(
        self, source: str, target: str, key: str, written_before: float | None = None
    ) -> bool:
        """Copies ``source`` to ``target`` inside the bucket (onto itself: a refresh of its
        write time, skipped for an object too large to copy); False when there is no
        ``source`` or it was written since ``written_before``.

        A copy elsewhere (a take, a restore) is boto3's managed copy: a HEAD for the size,
        then CopyObject, or from ``copy_threshold`` on a multipart copy whose UploadPartCopy
        parts are each conditional on the HEAD's etag (and on ``written_before``), so a blob
        over 5 GiB can be taken and put back too. Its parts, if it fails, are aborted."""
        options: dict[str, Any] = {}
        if written_before is not None:
            options["CopySourceIfUnmodifiedSince"] = unmodified_since(written_before)
        copy_source = {"Bucket": self.bucket, "Key": source}
        try:
            if source == target:
                self.volume.requests += 1
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource=copy_source,
                    MetadataDirective="REPLACE",  # S3 refuses a copy that changes nothing
                    **options,
                )
            else:
                self.volume.requests += 2  # the HEAD and one copy (a multipart copy makes more)
                self.client.copy(
                    copy_source,
                    self.bucket,
                    target,
                    ExtraArgs=options,
                    Config=TransferConfig(
                        multipart_threshold=self.copy_threshold,
                        multipart_chunksize=self.copy_part,
                        use_threads=False,
                    ),
                )
        except ClientError as exc:
            if _code(exc) in _MISSING or (
                written_before is not None and _code(exc) in ("PreconditionFailed", "412")
            ):
                return False
            if source == target and _code(exc) == "InvalidRequest":
                # Asked only after a refusal, so that finding a blob stays one request.
                head = self._head(source, key)
                if head is None:
                    return False
                if head["ContentLength"] > COPY_LIMIT:
                    log.debug("%s found; too large to refresh its write time in place", key)
                    return True
            raise self._error(exc, key) from None
        except BotoCoreError as exc:
            raise self._error(exc, key) from None
        return True

    def exists(self, key: str) -> bool:
        return self._has(self._rel(key), key)

    def _has(self, name: str, key: str) -> bool:
        """Whether the object ``name`` (the blob ``key``, or a taken copy of it) is there."""
        return self._head(name, key) is not None

    def _head(self, name: str, key: str) -> dict[str, Any] | None:
        """The HEAD answer for the object ``name`` (of the blob ``key``); None when missing."""
        try:
            self.volume.requests += 1
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._error(exc, key) from None
        except BotoCoreError as exc:
            raise self._error(exc, key) from None
        return head

    def open(self, key: str) -> BinaryIO:
        name = self._rel(key)
        try:
            return self.volume.open(name)
        except EntryNotFound:
            raise BlobMissing(f"no blob {key} in {self.url}") from None
        except VolumeError as exc:
            raise BlobError(f"{self.url}: {exc}") from None

    def delete(self, key: str) -> None:
        self._delete(self._rel(key), key)

    def _delete(self, name: str, key: str) -> None:
        try:
            self.volume.requests += 1
            self.client.delete_object(Bucket=self.bucket, Key=name)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, key) from None

    def take(self, key: str, written_before: float | None) -> str | None:
        name = self._rel(key)
        taken = taken_name(key, uuid.uuid4().hex)
        aside = self._taken_rel(taken)
        if not self._copy(name, aside, key, written_before):
            return None
        try:
            # The take's moment is this delete: a refresh (a copy in place) that lands after
            # the copy aside and before it is lost with the object, which is why the sweeper
            # asks the database only once this delete is done.
            self._delete(name, key)
        except BlobError:
            # The client retried it already (a lost answer then finds no object: success), so
            # the blob is most likely still there and the copy aside is not needed; if its
            # delete fails too, a later sweep settles it (list_taken).
            with contextlib.suppress(BlobError):
                self._delete(aside, key)
            raise
        return taken

    def restore(self, taken: str) -> None:
        key = taken_key(taken)
        aside = self._taken_rel(taken)
        # Onto whatever a put stored meanwhile: the same bytes.
        if self._copy(aside, self._rel(key), key):
            self._delete(aside, key)
        elif not self._has(self._rel(key), key):
            # Settled by another sweeper, which deleted it: no version named it when that
            # sweeper asked, after the take. Only an upload whose row came since can name it
            # now, and that upload stores it again when it checks after its row; if it does
            # not, its version has lost its file.
            log.error(
                "%s: %s cannot be put back: its copy aside is gone and so is the blob; a "
                "version naming it reads as missing unless its upload stores it again",
                self.url,
                key,
            )

    def discard(self, taken: str) -> bool:
        key = taken_key(taken)
        aside = self._taken_rel(taken)
        if not self._has(aside, key):
            return False
        self._delete(aside, key)
        return True

    def list_taken(self, taken_before: float | None = None) -> Iterator[str]:
        folder = f"{self.prefix}/{SWEPT}/" if self.prefix else f"{SWEPT}/"
        for name, item in self._objects(folder, "swept blobs"):
            # The copy's write time is when its take began.
            if TAKEN.match(name) and (
                taken_before is None or item["LastModified"].timestamp() < taken_before
            ):
                yield name

    def list_blobs(self) -> Iterator[BlobInfo]:
        folder = f"{self.prefix}/" if self.prefix else ""
        for name, item in self._objects(folder, "listing"):
            if KEY.match(name):
                yield BlobInfo(name, int(item["Size"]), item["LastModified"].timestamp())

    def _objects(self, folder: str, what: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """The objects right in ``folder`` (not below it), by name within it."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=folder, Delimiter="/"
        )
        try:
            for page in pages:
                self.volume.requests += 1
                for item in page.get("Contents", []):
                    yield item["Key"][len(folder) :], item
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, what) from None

    def remove_partial(self, before: float) -> int:
        start = f"{self.prefix}/" if self.prefix else ""
        removed = 0
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=start
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"].timestamp() < before:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        removed += 1
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "incomplete uploads") from None
        return removed

    def local_path(self, key: str) -> Path | None:
        return None

    def close(self) -> None:
        self.volume.close()
        self.client.close()


def _make_bucket(client: Any, bucket: str) -> None:
    """Creates a missing bucket (a new deployment's first start); refused when the identity
    may not, with what to do."""
    region = client.meta.region_name
    options: dict[str, Any] = {}
    if region and region != "us-east-1":
        options["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(Bucket=bucket, **options)
    except ClientError as exc:
        if _code(exc) in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            return
        raise BlobError(
            f"bucket {bucket!r} does not exist and could not be created ({_code(exc)}); "
            "create it, or give the feature store's identity s3:CreateBucket"
        ) from None
    except BotoCoreError as exc:
        raise BlobError(f"bucket {bucket!r} could not be created ({type(exc).__name__})") from None
    log.info("created the blob bucket %s", bucket)


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {}) if isinstance(exc.response, dict) else {}
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code") or status)

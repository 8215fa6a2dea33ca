"""Pick a blob store from ``CAIRN_BLOBS_URL``: a scheme names a class, imported on first use
(so ``boto3`` or ``azure-storage-blob`` load only when a store of theirs is configured).
A plain path, or ``file://``, is a local folder."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from connectors.registry import url_scheme
from featurestore_service.blobstore.base import BlobError, BlobStore

_LOCAL = "featurestore_service.blobstore.local:LocalBlobStore"
_HDFS = "featurestore_service.blobstore.hdfs:HdfsBlobStore"
_ADLS = "featurestore_service.blobstore.adls:AdlsBlobStore"
_S3 = "featurestore_service.blobstore.s3:S3BlobStore"
_REGISTRY: dict[str, str] = {
    "file": _LOCAL,
    "hdfs": _HDFS,
    "webhdfs": _HDFS,
    "abfss": _ADLS,
    "abfs": _ADLS,
    "az": _ADLS,
    "s3": _S3,
}


def blob_schemes() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def open_blob_store(url: str | Path) -> BlobStore:
    spec = str(url)
    scheme = url_scheme(spec) or "file"
    target = _REGISTRY.get(scheme)
    if target is None:
        raise BlobError(
            f"CAIRN_BLOBS_URL has an unknown scheme '{scheme}://'; use a local folder or one "
            f"of {', '.join(s + '://' for s in blob_schemes())}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        cls: Any = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise BlobError(f"the blob store for '{scheme}://' could not be loaded ({exc})") from exc
    store: BlobStore = cls.from_url(spec)
    return store

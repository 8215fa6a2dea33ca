"""Where the feature store keeps the Parquet files of its tables: ``CAIRN_BLOBS_URL``.

A separate ``BlobStore`` protocol (``base.py``) beside the connectors' ``Volume``, not a write
side added to it. A Volume is what the crawler reads: a tree of user files, walked, never
changed, opened with the user's paths; every connector and its contract suite promise that
Cairn writes nothing there. A blob store is the feature store's own flat, content-addressed
space, with needs a Volume has no business offering: an all-or-nothing put that leaves an
existing blob alone (refreshing its write time), delete, a listing with write times for the
orphan sweeper, a take that withdraws a blob before it is deleted (and a restore), and the
clean-up of uploads cut short. The remote backends still go through the same connectors
(``HdfsVolume``, ``AdlsVolume``, the S3 connector) for addresses, credentials, retries and
ranged reads, and add only their few write calls.

    base.py      the protocol, BlobInfo, the errors
    registry.py  URL scheme -> backend, imported on first use
    local.py     a local folder (the default)
    s3.py        S3 and S3-compatible stores (multipart uploads)
    adls.py      ADLS Gen2 / Blob storage (staged blocks, one commit)
    hdfs.py      HDFS over WebHDFS (CREATE to a part file, then RENAME)
    cache.py     the bounded local read-through cache of remote blobs
    parquet.py   the checks an upload passes on the local disk before it is stored
    tables.py    TableBlobs: uploads, reads (checkout) and the orphan sweeper on any backend
"""

from featurestore_service.blobstore.base import BlobError, BlobInfo, BlobMissing, BlobStore
from featurestore_service.blobstore.cache import Lease
from featurestore_service.blobstore.registry import open_blob_store
from featurestore_service.blobstore.tables import Blob, TableBlobs, UploadCutShort

__all__ = [
    "Blob",
    "BlobError",
    "BlobInfo",
    "BlobMissing",
    "BlobStore",
    "Lease",
    "TableBlobs",
    "UploadCutShort",
    "open_blob_store",
]

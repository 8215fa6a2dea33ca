"""Volumes: one protocol over local directories, HDFS (WebHDFS) and ADLS Gen2 (Blob API).

The remote connectors load on first use of their scheme (see registry.py), so their client
libraries are optional extras.
"""

from connectors.base import LINKED_FOLDER, Entry, ProblemSink, Volume, normalize_relpath
from connectors.errors import (
    AccessDenied,
    EntryNotFound,
    EntryTooLarge,
    NotAFile,
    PathOutsideVolume,
    UnsupportedScheme,
    VolumeError,
    VolumeUnreachable,
)
from connectors.local import LocalVolume
from connectors.registry import open_volume, redact_url, supported_schemes

__all__ = [
    "LINKED_FOLDER",
    "AccessDenied",
    "Entry",
    "EntryNotFound",
    "EntryTooLarge",
    "LocalVolume",
    "NotAFile",
    "PathOutsideVolume",
    "ProblemSink",
    "UnsupportedScheme",
    "Volume",
    "VolumeError",
    "VolumeUnreachable",
    "normalize_relpath",
    "open_volume",
    "redact_url",
    "supported_schemes",
]

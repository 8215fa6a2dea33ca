"""Pick a connector from a URL, and keep credentials in URLs out of logs.

Connectors are named as "module:ClassName" and imported on first use, so the optional client
libraries a remote connector needs load only when someone opens such a volume. A class in the
registry provides ``from_url(url, **options)``.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any

from cairn.redact import redact_url as redact_url  # re-exported: the connectors' name
from connectors.base import Volume
from connectors.errors import UnsupportedScheme, VolumeError

_LOCAL = "connectors.local:LocalVolume"
_HDFS = "connectors.webhdfs:HdfsVolume"
_ADLS = "connectors.adls:AdlsVolume"
_S3 = "connectors.s3:S3Volume"
_REGISTRY: dict[str, str] = {
    "file": _LOCAL,
    "hdfs": _HDFS,
    "webhdfs": _HDFS,
    "abfss": _ADLS,
    "abfs": _ADLS,
    "az": _ADLS,
    "s3": _S3,
}

# Object stores, where a folder exists only while something lies below it: the last object
# deleted, the folder is gone too. Their connectors take ``missing_root_ok=True`` to open such
# a root as an empty volume (a crawl that found manifests there before must see it empty,
# not fail to open it, or their assets could never be deleted).
FOLDERLESS_SCHEMES = frozenset({"s3", "abfss", "abfs", "az"})

# Only "scheme://" counts as a URL, so relative paths such as "data:2024/x" stay paths.
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def url_scheme(spec: str) -> str | None:
    """The lower-cased scheme of ``spec`` when it is a URL ("scheme://..."), else None."""
    match = _URL.match(spec)
    return match.group(1).lower() if match else None


def supported_schemes() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _load(scheme: str, target: str) -> Any:
    module_name, _, class_name = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UnsupportedScheme(
            scheme,
            supported_schemes(),
            reason=f"the connector for '{scheme}://' could not be loaded ({exc})",
        ) from exc


def open_volume(url_or_path: str | os.PathLike[str], **options: Any) -> Volume:
    """A volume for a URL (``file://``, ...) or a plain local path."""
    spec = os.fspath(url_or_path)
    if not spec:
        raise VolumeError("no volume given: expected a path or a URL")
    scheme = url_scheme(spec)
    if scheme is None:
        if options:
            raise VolumeError(f"local volumes take no options (got: {', '.join(sorted(options))})")
        volume: Volume = _load("file", _LOCAL)(spec)
        return volume
    if scheme not in _REGISTRY:
        raise UnsupportedScheme(
            scheme, supported_schemes(), reason=f"unknown volume scheme '{scheme}://'"
        )
    volume = _load(scheme, _REGISTRY[scheme]).from_url(spec, **options)
    return volume

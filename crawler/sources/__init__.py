"""Pick a crawler source from a URL scheme (``kafka://``, ``thrift://``).

Sources are named as "module:ClassName" and imported on first use, so their client libraries
load only when someone crawls such a URL. A class here provides
``from_url(url, settings) -> Source``.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from cairn.settings import Settings
from crawler.sources.base import Source, SourceAsset, SourceError, SourceListing

__all__ = [
    "Source",
    "SourceAsset",
    "SourceError",
    "SourceListing",
    "is_source_url",
    "open_source",
    "source_schemes",
]

_REGISTRY: dict[str, tuple[str, str]] = {
    # scheme: (implementation, the extra that installs its client library)
    "kafka": ("crawler.sources.kafka:KafkaSource", "kafka"),
    "thrift": ("crawler.sources.metastore:MetastoreSource", "metastore"),
}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def source_schemes() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def is_source_url(url: str) -> bool:
    match = _SCHEME.match(url)
    return match is not None and match.group(1).lower() in _REGISTRY


def open_source(url: str, settings: Settings) -> Source:
    match = _SCHEME.match(url)
    if match is None or match.group(1).lower() not in _REGISTRY:
        raise SourceError(f"{url!r} is not a source URL ({', '.join(source_schemes())})")
    scheme = match.group(1).lower()
    target, extra = _REGISTRY[scheme]
    module_name, _, class_name = target.partition(":")
    try:
        cls: Any = getattr(importlib.import_module(module_name), class_name)
    except ImportError as exc:
        raise SourceError(
            f"crawling {scheme}:// needs the '{extra}' extra: "
            f"pip install 'cairn-catalogue[{extra}]' ({exc})"
        ) from exc
    source: Source = cls.from_url(url, settings)
    return source

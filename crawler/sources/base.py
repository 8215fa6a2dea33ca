"""Crawler sources: systems that describe assets themselves (Kafka, a Hive Metastore).

A volume yields files, and manifests beside them say what the assets are; a source yields the
assets directly. ``crawler/source_crawl.py`` turns a source's listing into catalogue writes with
the same diff, push and soft-delete rules as a volume crawl: one crawl state per source and
catalogue, nothing written when nothing changed, and assets that vanished from the source are
soft-deleted, unless the listing could not be read, which fails the crawl and keeps them.

Exceptions::

    SourceError          the source cannot be listed at all (unreachable, bad URL, no client)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from crawler.problems import Problem

if TYPE_CHECKING:
    # An annotation only: importing the models here would put them on every crawl's start.
    from cairn.models import CrawlerEdgeOrigin


class SourceError(Exception):
    """The source could not be listed; the message says what to check."""


@dataclass(slots=True)
class SourceAsset:
    """One asset as a source describes it.

    ``key`` names it within the source (``topic:orders``, ``table:sales.orders``): it gives the
    asset's stable id and is where the crawl state remembers it. ``fields`` are the asset's
    fields as the bulk endpoint takes them (name, type, schema, labels, depends_on, ...).
    """

    key: str
    fields: dict[str, Any]
    # Keys of assets of the same source this one comes from (a table from its database): the
    # crawl sends them as lineage edges of the source's ``edge_origin``.
    upstream: list[str] = field(default_factory=list)


@dataclass(slots=True)
class SourceListing:
    assets: list[SourceAsset] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Keys the source still has but could not describe this time: what was pushed for them
    # before is kept, not soft-deleted.
    unreadable: set[str] = field(default_factory=set)
    # Keys described without a part that could not be read this time (a schema registry
    # that did not answer): an asset pushed before is kept as it was, not rewritten without
    # it; a new one is pushed as described.
    partial: set[str] = field(default_factory=set)


class Source(Protocol):
    """What ``cairn crawl`` needs of a source; each implementation is named by a URL scheme
    in ``crawler/sources/__init__.py``."""

    # The origin of the lineage edges this source reports (its assets' ``upstream`` and the
    # crawled assets at their locations), or None when it reports none.
    edge_origin: CrawlerEdgeOrigin | None

    @property
    def url(self) -> str:
        """The source's URL without credentials: the ``volume`` of its assets."""
        ...

    def list_assets(self) -> SourceListing:
        """Every asset the source holds now; SourceError when it cannot be listed."""
        ...

    def close(self) -> None: ...

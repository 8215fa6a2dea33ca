"""The ``AssetStore`` protocol: the few primitives a catalogue backend implements.

Lineage traversal, Mastro's page arithmetic and problem reporting are written once in
``catalogue_service.service`` on top of these primitives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from cairn.models import (
    Asset,
    AssetWrite,
    BulkItemResult,
    EdgeOrigin,
    Facets,
    JobRun,
    ReportedEdge,
    ReportedFacet,
    RunUpdate,
)
from cairn.ownership import owner_conflict
from cairn.paging import decode_cursor, encode_cursor

if TYPE_CHECKING:
    from catalogue_service.spelling.base import Speller

__all__ = [
    "AssetStore",
    "LineageReport",
    "PreparedWrite",
    "SearchHits",
    "SearchQuery",
    "decode_cursor",
    "encode_cursor",
    "located_order",
    "name_taken",
    "owner_conflict",
    "stale_revision",
    "stamp",
]


def origin(doc: dict[str, Any]) -> str:
    """Where an asset came from, for messages: its manifest and volume, or its location.

    The volume is named because two volumes often hold manifests at the same relative path.
    """
    path, volume = doc.get("manifest_path"), doc.get("volume")
    if path and volume:
        return f"{path} in volume {volume}"
    return str(path or doc.get("location") or "the API")


def tag_keys(tags: Iterable[str]) -> list[str]:
    """Tags as the search matches and counts them: in lower case, each once. A document keeps
    its tags as written; ``Sales`` and ``sales`` are one tag to a search and its facets."""
    return list(dict.fromkeys([tag.lower() for tag in tags]))


@dataclass(slots=True)
class SearchQuery:
    q: str | None = None
    name: str | None = None
    tags: list[str] = field(default_factory=list)  # matched in lower case (``tag_keys``)
    type: str | None = None
    labels: list[tuple[str, str]] = field(default_factory=list)
    owner: str | None = None
    include_deleted: bool = False
    limit: int = 20
    cursor: list[Any] | None = None  # decoded sort key of the last item of the previous page
    offset: int = 0  # only Mastro's page-numbered routes use it
    facets: bool = True
    # True: crawled datasets whose newest profile drifted; False: profiled ones that did not.
    drifted: bool | None = None

    def __post_init__(self) -> None:
        self.tags = tag_keys(self.tags)


@dataclass(slots=True)
class SearchHits:
    """Items are JSON documents as stored, so a search answer is spliced, not re-encoded."""

    docs: list[bytes]
    total: int
    facets: Facets
    next_cursor: str | None
    # Set by the typo fallback (catalogue_service.spelling.fallback), never by a store.
    did_you_mean: str | None = None
    fuzzy: bool = False
    # ``facets`` as JSON, when the store kept it encoded with its cached counts.
    facets_json: bytes | None = None


@dataclass(slots=True)
class PreparedWrite:
    """One validated item of a bulk write, with what the store needs to apply it."""

    index: int
    asset: AssetWrite
    doc: dict[str, Any]  # the JSON document, dumped once for both hashing and storage
    content_hash: str
    # Apply only if the asset is still at this revision (a read-modify-write such as a
    # delete); otherwise the item fails with conflict="revision" and nothing is written.
    expect_revision: int | None = None
    # Set by the store: the document as this write left it (its revision and updated_at), so
    # a writer answers with what it wrote, not with a later read that may see another writer.
    stored: dict[str, Any] | None = None

    @classmethod
    def of(cls, index: int, asset: AssetWrite, expect_revision: int | None = None) -> PreparedWrite:
        doc = asset.storage_doc()
        return cls(index, asset, doc, asset.content_hash(doc), expect_revision)


# Live assets one location lookup answers per URL: a file's asset and a table over it are
# two; more than a few is a catalogue where many writers name one place.
LOCATION_MATCHES = 20


def located_order(assets: list[Asset]) -> list[Asset]:
    """Crawled assets (with a volume) before an API writer's, then by id: one order on both
    backends."""
    ordered = sorted(assets, key=lambda a: (not a.volume, a.id))
    return ordered[:LOCATION_MATCHES]


def stamp(moment: datetime) -> str:
    """A UTC time as fixed-width text, so text order is time order (stores compare them)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class LineageReport:
    """What one report from outside the manifests (an OpenLineage event, a metastore crawl)
    adds, recorded by ``AssetStore.record_lineage`` in one call.

    Every part is an idempotent upsert where the latest ``reported_at`` wins, so recording a
    report twice, or two reports in any order, leaves the same state.
    """

    # Recorded last; a report whose key is already recorded changes nothing. None: no check.
    event_key: str | None = None
    edges: list[ReportedEdge] = field(default_factory=list)
    run: RunUpdate | None = None
    facets: list[ReportedFacet] = field(default_factory=list)
    # (downstream id, origin) pairs whose recorded edges are replaced by this report's: edges
    # into that downstream of that origin that the report does not list are removed, so a
    # crawler states the whole of what its source says now (a table moved elsewhere loses
    # the edge from its old location).
    replaces: list[tuple[str, EdgeOrigin]] = field(default_factory=list)


def name_taken(name: str, holder: str, where: str, doc: dict[str, Any]) -> str:
    """A write of ``doc`` refused for ``name``, which asset ``holder`` (from ``where``) has."""
    mine = doc.get("manifest_path") or "this request"
    return (
        f"name {name!r} is already used by asset {holder} (from {where}); names are unique in "
        f"the catalogue, so rename the asset in {mine} or remove the other one"
    )


def stale_revision(asset_id: str, expected: int, found: int | None) -> str:
    now = "no longer exists" if found is None else f"is at revision {found}"
    return f"asset {asset_id} changed concurrently (expected revision {expected}, it {now}); retry"


class AssetStore(Protocol):
    # Spelling suggestions from this store's own index, for the typo fallback. Read-only
    # here, so a store may hold its own kind of speller.
    @property
    def speller(self) -> Speller: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> str | None:
        """Raises when the backend cannot serve requests; returns what it cannot do
        meanwhile (the readiness check's ``degraded``), None when it can do everything."""

    async def instance_id(self) -> str:
        """This store's identity, created with it: a new or wiped store has a new one.

        Crawlers key what they remember by it, so they never skip a catalogue that lacks
        what they pushed to another one.
        """

    async def upsert(self, writes: list[PreparedWrite], now: datetime) -> list[BulkItemResult]:
        """Applies writes in order, atomically per item; unchanged content is not written."""

    async def upsert_chunks(
        self, chunks: Iterator[list[PreparedWrite]], now: datetime
    ) -> list[BulkItemResult]:
        """``upsert`` of the writes of all ``chunks``, taken from the iterator on the event
        loop (it validates them as it goes), applied as one write: all or nothing."""

    async def get(self, asset_id: str) -> Asset | None: ...

    async def set_drift(self, asset_id: str, flag: dict[str, Any]) -> Asset | None:
        """Keeps ``flag`` (a ``DriftFlag``) with the asset without a new revision: the
        content is unchanged. None when no asset has that id."""

    async def get_by_name(self, name: str) -> Asset | None:
        """The live asset with that name, else the most recently deleted one."""

    async def resolve(self, keys: list[str], deleted_names: bool = False) -> dict[str, Asset]:
        """Maps each key that names an asset (by id, else by live name) to it;
        ``deleted_names``: a name no live asset holds maps to its most recently deleted one."""

    async def dependents(self, keys: list[str], include_deleted: bool) -> list[Asset]:
        """Assets whose ``depends_on`` holds any of ``keys``."""

    async def search(self, query: SearchQuery) -> SearchHits: ...

    async def tag_counts(self, limit: int) -> dict[str, int]: ...

    async def type_counts(self) -> dict[str, int]: ...

    async def reindex(self, progress: Callable[[int, int], None]) -> int:
        """Rebuilds the search index from the stored documents; returns how many it holds.

        ``progress(done, total)`` is called as batches complete. Safe while serving.
        """

    async def by_location(self, locations: list[str]) -> dict[str, list[Asset]]:
        """Maps each URL that is the ``location`` of live assets to them, at most
        ``LOCATION_MATCHES`` of them in ``located_order`` (crawled assets first)."""

    async def record_lineage(self, report: LineageReport) -> bool:
        """Records ``report``; False (and nothing changed) when its event key was recorded."""

    async def reported_edges(
        self, ids: list[str], direction: str, origins: list[EdgeOrigin] | None = None
    ) -> list[ReportedEdge]:
        """Reported edges whose downstream (direction "up") or upstream ("down") is in ids."""

    async def job_runs(self, job_id: str, limit: int) -> list[JobRun]:
        """A job's runs, the most recently updated first."""

    async def reported_facets(self, asset_id: str) -> list[ReportedFacet]: ...

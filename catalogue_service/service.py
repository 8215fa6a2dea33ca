"""The catalogue's core logic; routes stay a few lines and call this facade."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from cairn import paging
from cairn.collector import collector_paused
from cairn.errors import BadRequest, Conflict, InvalidRequest, NotFound, invalid_param
from cairn.mastro import mastro_time
from cairn.memory import trim
from cairn.models import (
    Asset,
    AssetWrite,
    BulkItemResult,
    BulkResponse,
    CatalogueInstance,
    ColumnLineage,
    ColumnSource,
    DriftFlag,
    EdgeReceipt,
    EdgeReport,
    JobRun,
    Lineage,
    LineageEdge,
    LineageNode,
    LineageReceipt,
    ReportedEdge,
    SchemaField,
    composed,
    unknown_type,
)
from cairn.settings import Settings
from catalogue_service.backends.base import (
    AssetStore,
    LineageReport,
    PreparedWrite,
    SearchHits,
    SearchQuery,
)
from catalogue_service.openlineage import OpenLineageIngest
from catalogue_service.spelling import with_typo_fallback

MAX_LINEAGE_DEPTH = 10
MAX_LINEAGE_NODES = 2000
# Edges of a lineage answer, keyed by (upstream, downstream, origin): one pair may be declared
# by a manifest and reported by OpenLineage too, and both are shown.
EdgeMap = dict[tuple[str, str, str], LineageEdge]
# A delete that keeps losing to concurrent writers gives up after this many reads.
DELETE_ATTEMPTS = 20
# Bulk requests at least this big hand freed heap memory back to the system, once such
# requests have paused this long: trimmed after each one, the next request of a load faulted
# the same pages in again (about 2 ms of CPU per request at batches of 1,000).
TRIM_AFTER_ITEMS = 500
TRIM_QUIET_S = 0.5
# Bigger bulk requests are validated and handed to the store in chunks of this many items.
WRITE_CHUNK = 500


# A bulk chunk's items in one pydantic-core call: about 1.5 us an item less than a
# model_validate call per item (bench_ingest's validate step).
_ITEMS: TypeAdapter[list[AssetWrite]] = TypeAdapter(list[AssetWrite])


_INDEX, _STATUS = attrgetter("index"), attrgetter("status")


def all_valid(raw_items: list[Any]) -> list[AssetWrite] | None:
    """Every item of ``raw_items`` as an ``AssetWrite``, or None when any is invalid (the
    caller then validates them one by one, so each bad item gets its own error)."""
    try:
        return _ITEMS.validate_python(raw_items)
    except ValidationError:
        return None


def clean_message(msg: str) -> str:
    return msg.removeprefix("Value error, ")


def unstorable(exc: orjson.JSONEncodeError) -> str:
    # Validation bounds depth and numbers, so this is a value JSON cannot carry (a lone
    # surrogate in a string, say): the writer must fix the item, the server is fine.
    return f"the item cannot be stored as JSON ({exc}); fix that value and send again"


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        field = ".".join(str(p) for p in err.get("loc", ())) or "(item)"
        parts.append(f"{field}: {clean_message(err.get('msg', ''))}")
    return "; ".join(parts)


class _TrimWhenQuiet:
    """Trims the heap once no big request has run for ``TRIM_QUIET_S``: a bulk load's
    requests reuse each other's freed memory, and the load's end gives it all back."""

    def __init__(self) -> None:
        self._running = 0
        self._last_end = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @contextmanager
    def big_request(self) -> Iterator[None]:
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._last_end = time.monotonic()
            self._schedule(TRIM_QUIET_S)

    def _schedule(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        # A timer of a loop that has ended never fires: only a pending one here counts.
        if self._timer is not None and self._loop is loop:
            return
        self._loop = loop
        self._timer = loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        if self._running:
            return  # the running request schedules again when it ends
        left = self._last_end + TRIM_QUIET_S - time.monotonic()
        if left > 0:
            self._schedule(left)
            return
        trim()


class Catalogue:
    def __init__(self, store: AssetStore, settings: Settings):
        self.store = store
        self.settings = settings
        self.openlineage = OpenLineageIngest(store)
        self._trim = _TrimWhenQuiet()

    # --- writes -------------------------------------------------------------------------------

    async def bulk(self, raw_items: list[Any]) -> BulkResponse:
        """Gives each item its own result, so one bad item never sinks the others."""
        if len(raw_items) > self.settings.bulk_max_items:
            raise BadRequest(
                f"A bulk request holds at most {self.settings.bulk_max_items} items; "
                f"this one has {len(raw_items)}: split it into several requests."
            )
        if len(raw_items) < TRIM_AFTER_ITEMS:
            with collector_paused():
                return await self._bulk(raw_items)
        # A big batch's parsed items and documents are garbage once it is answered: their
        # pages go back to the system when such requests pause.
        with self._trim.big_request(), collector_paused():
            return await self._bulk(raw_items)

    async def _bulk(self, raw_items: list[Any]) -> BulkResponse:
        failed: dict[int, BulkItemResult] = {}
        seen: dict[str, int] = {}

        def prepared(start: int, stop: int) -> list[PreparedWrite]:
            writes: list[PreparedWrite] = []
            chunk = raw_items[start:stop]
            valid = all_valid(chunk)
            for index, raw in enumerate(chunk, start):
                try:
                    # valid is None when an item is invalid: each then gets its own error.
                    item = valid[index - start] if valid else AssetWrite.model_validate(raw)
                except ValidationError as exc:
                    name = raw.get("name") if isinstance(raw, dict) else None
                    failed[index] = BulkItemResult(
                        index=index,
                        id=raw.get("id") if isinstance(raw, dict) else None,
                        name=name if isinstance(name, str) else None,
                        status="error",
                        error=validation_message(exc),
                    )
                    continue
                asset_id = item.ensure_id()
                if asset_id in seen:
                    failed[index] = BulkItemResult(
                        index=index,
                        id=asset_id,
                        name=item.name,
                        status="error",
                        error=f"id {asset_id} appears twice in this request (items "
                        f"{seen[asset_id]} and {index}); send each asset once",
                    )
                    continue
                try:
                    write = PreparedWrite.of(index, item)
                except orjson.JSONEncodeError as exc:
                    failed[index] = BulkItemResult(
                        index=index,
                        id=asset_id,
                        name=item.name,
                        status="error",
                        error=unstorable(exc),
                    )
                    continue
                seen[asset_id] = index
                writes.append(write)
            return writes

        now = datetime.now(UTC)
        if len(raw_items) <= WRITE_CHUNK:
            writes = prepared(0, len(raw_items))
            results = await self.store.upsert(writes, now) if writes else []
        else:
            # The store writes one chunk while the next is validated, all in one transaction:
            # the request is still all-or-nothing, and its peak memory is lower (bench_footprint).
            chunks = (
                prepared(start, start + WRITE_CHUNK)
                for start in range(0, len(raw_items), WRITE_CHUNK)
            )
            results = await self.store.upsert_chunks(chunks, now)
        # attrgetter, not a lambda or generator: C calls, one per item of a big request.
        merged = sorted([*results, *failed.values()], key=_INDEX)
        counts = Counter(map(_STATUS, merged))
        return BulkResponse(
            results=merged,
            created=counts["created"],
            updated=counts["updated"],
            unchanged=counts["unchanged"],
            deleted=counts["deleted"],
            failed=counts["error"],
        )

    async def put(self, asset_id: str | None, item: AssetWrite) -> tuple[Asset, str]:
        """Writes one asset; answers with what this request wrote (its content and the
        revision it was given), never with a re-read that may show a concurrent writer's."""
        if asset_id is not None:
            if item.id not in (None, asset_id):
                raise BadRequest(
                    f"The body's id {item.id!r} differs from the URL's {asset_id!r}; "
                    "drop it from the body or make them equal."
                )
            item.id = asset_id
        try:
            write = PreparedWrite.of(0, item)
        except orjson.JSONEncodeError as exc:
            raise InvalidRequest(unstorable(exc)) from exc
        (result,) = await self.store.upsert([write], datetime.now(UTC))
        if result.status == "error" or write.stored is None:
            raise Conflict(result.error or "the asset conflicts with another one")
        return Asset.model_validate(write.stored), result.status

    async def delete(self, asset_id: str) -> Asset:
        """Soft-deletes the revision it read, and only that one: a write that lands in
        between makes the store refuse the delete, which then starts over on the new revision
        (so an acknowledged write is never replaced by the stale copy this read)."""
        for attempt in range(DELETE_ATTEMPTS):
            asset = await self.get(asset_id)
            if asset.deleted:
                return asset
            write = _deletion(asset)
            (result,) = await self.store.upsert([write], datetime.now(UTC))
            if result.status != "error" and write.stored is not None:
                return Asset.model_validate(write.stored)
            if result.conflict != "revision":
                raise Conflict(result.error or "the asset cannot be deleted now")
            await asyncio.sleep(random.uniform(0, 0.005 * (attempt + 1)))
        raise Conflict(
            f"asset {asset_id} kept changing while it was being deleted; retry the delete"
        )

    async def set_drift(self, asset_id: str, flag: DriftFlag) -> Asset:
        asset = await self.store.set_drift(asset_id, flag.model_dump(mode="json"))
        if asset is None:
            raise NotFound(f"No asset has id {asset_id!r}; push the asset before its drift flag.")
        return asset

    # --- reads --------------------------------------------------------------------------------

    async def get(self, asset_id: str) -> Asset:
        asset = await self.store.get(asset_id)
        if asset is None:
            raise NotFound(f"No asset has id {asset_id!r}.")
        return asset

    async def get_by_name(self, name: str) -> Asset:
        asset = await self.store.get_by_name(composed(name))
        if asset is None:
            raise NotFound(f"No asset is named {name!r}; names are case-sensitive.")
        return asset

    async def search(self, query: SearchQuery, *, typos: bool = False) -> SearchHits:
        """``typos``: when ``q`` finds little, correct its words (``spelling.fallback``)."""
        if query.type is not None:
            await self._check_type(query.type, query.include_deleted)
        hits = await self.store.search(query)
        if typos:
            hits = await with_typo_fallback(
                self.store, query, hits, self.settings.search_typo_below
            )
        return hits

    async def _check_type(self, kind: str, include_deleted: bool) -> None:
        """A type no asset can have is a 422, as on a write, not an empty answer that looks
        like "none yet". A type an asset was stored with before CAIRN_EXTRA_TYPES dropped it
        stays searchable: the search's type facets list it, and the UI links them. With
        ``include_deleted``, a deleted asset's type counts too, though no live asset has it."""
        problem = unknown_type(kind, self.settings.asset_types)
        if problem is None:
            return
        # Asked of the search itself, not of the type facets: those count live assets only,
        # and on Elasticsearch only the 100 commonest types.
        probe = SearchQuery(type=kind, include_deleted=include_deleted, limit=1, facets=False)
        if (await self.store.search(probe)).docs:
            return
        raise invalid_param("type", problem)

    async def lineage(self, asset_id: str, direction: str, depth: int) -> Lineage:
        """Breadth-first walk over depends_on links and reported edges (OpenLineage, metastores),
        up (sources) and/or down (consumers)."""
        root = await self.get(asset_id)
        depth = max(0, min(depth, MAX_LINEAGE_DEPTH))
        nodes: dict[str, LineageNode] = {root.id: _node(root, 0)}
        edges: EdgeMap = {}
        cut = False
        if direction in ("up", "both"):
            cut = await self._walk_up(root, depth, nodes, edges)
        if direction in ("down", "both"):
            cut = await self._walk_down(root, depth, nodes, edges) or cut
        # At MAX_LINEAGE_NODES a level stops taking nodes (one popular source can have tens
        # of thousands of consumers): its edges to nodes left out go too, and the answer
        # says it was cut.
        kept = [edges[k] for k in sorted(edges) if k[0] in nodes and k[1] in nodes]
        return Lineage(
            root=root.id,
            nodes=list(nodes.values()),
            edges=kept,
            truncated=cut or len(kept) < len(edges),
        )

    async def _walk_up(
        self, root: Asset, depth: int, nodes: dict[str, LineageNode], edges: EdgeMap
    ) -> bool:
        """Whether the walk stopped at MAX_LINEAGE_NODES with assets left to walk."""
        frontier = [root]
        for level in range(1, depth + 1):
            if not frontier:
                return False
            if len(nodes) >= MAX_LINEAGE_NODES:
                return True
            # A reported edge's ends are names or ids, as in depends_on.
            by_key = {k: a for a in frontier for k in (a.id, a.name)}
            reported = await self.store.reported_edges(sorted(by_key), "up")
            keys = sorted(
                {k for a in frontier for k in a.depends_on} | {e.upstream for e in reported}
            )
            # A deleted upstream is drawn as deleted, by name as by id: a soft delete never
            # makes an asset look like a name the catalogue does not hold.
            found = await self.store.resolve(keys, deleted_names=True) if keys else {}
            next_frontier = []
            for asset in frontier:
                for key in asset.depends_on:
                    upstream = found.get(key)
                    if upstream is None:
                        missing_id = f"missing:{key}"
                        if missing_id not in nodes and len(nodes) < MAX_LINEAGE_NODES:
                            nodes[missing_id] = LineageNode(
                                id=missing_id, name=key, missing=True, depth=-level
                            )
                        _add(edges, LineageEdge(source=missing_id, target=asset.id))
                        continue
                    _add(edges, LineageEdge(source=upstream.id, target=asset.id))
                    if upstream.id not in nodes and len(nodes) < MAX_LINEAGE_NODES:
                        nodes[upstream.id] = _node(upstream, -level)
                        next_frontier.append(upstream)
            for edge in reported:
                upstream = found.get(edge.upstream)
                if upstream is None:  # its asset was never stored or was purged
                    continue
                _add(edges, _reported(edge, upstream, by_key[edge.downstream]))
                if upstream.id not in nodes and len(nodes) < MAX_LINEAGE_NODES:
                    nodes[upstream.id] = _node(upstream, -level)
                    next_frontier.append(upstream)
            frontier = next_frontier
        return False

    async def _walk_down(
        self, root: Asset, depth: int, nodes: dict[str, LineageNode], edges: EdgeMap
    ) -> bool:
        """Whether the walk stopped at MAX_LINEAGE_NODES with assets left to walk."""
        frontier = [root]
        for level in range(1, depth + 1):
            if not frontier:
                return False
            if len(nodes) >= MAX_LINEAGE_NODES:
                return True
            by_key = {k: a for a in frontier for k in (a.id, a.name)}
            consumers = await self.store.dependents(sorted(by_key), include_deleted=False)
            reported = await self.store.reported_edges(sorted(by_key), "down")
            wanted = sorted({e.downstream for e in reported} - {c.id for c in consumers})
            found = await self.store.resolve(wanted) if wanted else {}
            found.update({c.id: c for c in consumers})
            next_frontier = []
            for consumer in consumers:
                for key in consumer.depends_on:
                    upstream = by_key.get(key)
                    if upstream is not None:
                        _add(edges, LineageEdge(source=upstream.id, target=consumer.id))
            for edge in reported:
                downstream = found.get(edge.downstream)
                if downstream is None or downstream.deleted:
                    continue
                _add(edges, _reported(edge, by_key[edge.upstream], downstream))
            linked = {e[1] for e in edges}
            for candidate in [
                *consumers,
                *(found[e.downstream] for e in reported if e.downstream in found),
            ]:
                if candidate.id in linked and candidate.id not in nodes and not candidate.deleted:
                    if len(nodes) >= MAX_LINEAGE_NODES:
                        break
                    nodes[candidate.id] = _node(candidate, level)
                    next_frontier.append(candidate)
            frontier = next_frontier
        return False

    # --- OpenLineage ----------------------------------------------------------------------------

    async def ingest_openlineage(self, raw: Any) -> LineageReceipt:
        return await self.openlineage.ingest(raw)

    async def report_edges(self, report: EdgeReport) -> EdgeReceipt:
        """Records a crawler's edges: each named downstream's upstreams of that origin become
        exactly the ones listed."""
        now = datetime.now(UTC)
        edges = [
            ReportedEdge(upstream=up, downstream=down, origin=report.origin, reported_at=now)
            for down, ups in report.upstreams.items()
            for up in dict.fromkeys(ups)
        ]
        await self.store.record_lineage(
            LineageReport(
                edges=edges, replaces=[(down, report.origin) for down in report.upstreams]
            )
        )
        return EdgeReceipt(origin=report.origin, downstream=len(report.upstreams), edges=len(edges))

    async def by_location(self, urls: list[str]) -> dict[str, list[Asset]]:
        return await self.store.by_location(list(dict.fromkeys(urls)))

    async def runs(self, asset_id: str, limit: int) -> list[JobRun]:
        asset = await self.get(asset_id)
        return await self.store.job_runs(asset.id, limit)

    async def columns(self, asset_id: str) -> ColumnLineage:
        """An asset's schema (as an OpenLineage event reported it, else its own: a
        manifest's, or what the crawler read from its file) and the column lineage reported
        for it (empty when none was)."""
        asset = await self.get(asset_id)
        answer = ColumnLineage(asset_id=asset.id)
        for facet in await self.store.reported_facets(asset.id):
            if facet.kind == "schema":
                answer.schema_ = [SchemaField.model_validate(c) for c in facet.value]
                answer.schema_source = "openlineage"
            elif facet.kind == "columnLineage":
                answer.columns = {
                    column: [ColumnSource.model_validate(s) for s in sources]
                    for column, sources in facet.value.items()
                }
            if answer.reported_at is None or facet.reported_at > answer.reported_at:
                answer.reported_at, answer.run_id = facet.reported_at, facet.run_id
        if answer.schema_ is None and asset.schema_ is not None:
            answer.schema_, answer.schema_source = list(asset.schema_), "asset"
        return answer

    async def instance(self) -> CatalogueInstance:
        return CatalogueInstance(
            instance_id=await self.store.instance_id(), backend=self.settings.backend
        )

    async def tags(self, limit: int) -> dict[str, int]:
        return await self.store.tag_counts(limit)

    async def types(self) -> dict[str, int]:
        return await self.store.type_counts()


def _deletion(asset: Asset) -> PreparedWrite:
    """The write that soft-deletes ``asset`` at the revision read: its stored document marked
    deleted, not validated again as a new write would be, since rules tighten (a password in
    a location, the characters of an id) and an asset stored before one must stay deletable."""
    doc = asset.model_dump(mode="json", by_alias=True, exclude={"revision", "updated_at", "drift"})
    doc["deleted"] = True
    return PreparedWrite(0, asset, doc, asset.content_hash(doc), asset.revision)


def _add(edges: EdgeMap, edge: LineageEdge) -> None:
    edges.setdefault((edge.source, edge.target, edge.origin), edge)


def _reported(edge: ReportedEdge, upstream: Asset, downstream: Asset) -> LineageEdge:
    """``edge`` between the assets its ends (names or ids) resolved to: the lineage answer
    draws edges between node ids only."""
    return LineageEdge(
        source=upstream.id,
        target=downstream.id,
        origin=edge.origin,
        run_id=edge.run_id,
        reported_at=edge.reported_at,
    )


def _node(asset: Asset, depth: int) -> LineageNode:
    return LineageNode(
        id=asset.id, name=asset.name, type=asset.type, deleted=asset.deleted, depth=depth
    )


def splice_page(hits: SearchHits) -> bytes:
    """The search answer, with stored documents spliced in rather than re-encoded (and the
    facets as the store kept them encoded, if it did), joined in one copy."""
    facets = hits.facets_json
    if facets is None:
        facets = orjson.dumps(hits.facets.model_dump())
    tail = orjson.dumps(
        {"next_cursor": hits.next_cursor, "did_you_mean": hits.did_you_mean, "fuzzy": hits.fuzzy}
    )
    parts = [b'{"items":[']
    for doc in hits.docs:
        parts += (doc, b",")
    if hits.docs:
        parts.pop()
    parts += (b'],"total":', b"%d" % hits.total, b',"facets":', facets, b",", tail[1:])
    return b"".join(parts)


def mastro_asset(doc: dict[str, Any]) -> dict[str, Any]:
    """An asset as Mastro's ``Asset`` struct writes it: only its fields, with its names and
    real times, so Mastro's strict clients accept it."""
    return {
        "last-discovered-at": mastro_time(doc.get("crawled_at") or doc.get("updated_at")),
        "published-on": mastro_time(doc.get("published_on")),
        "name": doc["name"],
        "description": doc.get("description") or "",
        "depends-on": doc.get("depends_on") or [],
        "type": doc["type"],
        "labels": doc.get("labels") or {},
        "tags": doc.get("tags") or [],
        "versions": doc.get("versions") or {},
    }


def mastro_page(docs: Iterable[bytes], total: int, page: int, per_page: int) -> dict[str, Any]:
    """Stored assets in Mastro's ``{data, pagination}`` shape (``cairn.paging``)."""
    return paging.mastro_page([mastro_asset(orjson.loads(d)) for d in docs], total, page, per_page)

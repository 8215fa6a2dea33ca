"""One crawl of a source (``kafka://``, ``thrift://``): list, diff, link, push, soft-delete.

The crawl state is the one volume crawls keep (``crawler/state.py``), with one row per asset
key instead of per manifest: an asset whose content hash did not change is not sent again,
and an asset that was pushed before and is no longer listed is soft-deleted. A listing that
fails (broker or metastore down) fails the crawl before anything is compared, so nothing is
deleted because a server could not be reached.

Lineage a source knows (a metastore's database -> table, and the crawled files at a table's
location -> the table) is sent apart from the assets, as edges of the source's origin
(``POST /api/v1/lineage/edges``), so the lineage picture tells them from manifests'
``depends_on``. The files at a location are found by asking the catalogue
(``GET /api/v1/assets/by-location``), so a volume crawled on another machine links too.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from cairn.models import crawled_id
from cairn.settings import Settings
from crawler.problems import Problem
from crawler.push import CataloguePusher, CatalogueUnreachable
from crawler.sources import Source, SourceListing, is_source_url
from crawler.state import CrawlState, ManifestState, StateError


class SourceCrawlFailed(Exception):
    """The source could not be listed, or the catalogue stopped answering mid-push."""


def source_asset_id(source_url: str, key: str) -> str:
    return crawled_id(source_url, key, 0)


def location_spellings(url: str) -> list[str]:
    """The ways a volume crawl may have written the place ``url`` names, most likely first:
    ``file:/x`` is ``file:///x``, a folder may end in ``/``, and a metastore records an HDFS
    NameNode's RPC port where Cairn's ``hdfs://`` volumes name its HTTP port (9870 unless
    set otherwise)."""
    text = url.strip()
    if text.startswith("file:/") and not text.startswith("file://"):
        text = "file://" + text[len("file:") :]
    parts = urlsplit(text)
    path = parts.path.rstrip("/") or "/"
    places = [f"{parts.scheme}://{parts.netloc}"]
    if parts.scheme.lower() in ("hdfs", "webhdfs") and parts.hostname:
        host = parts.hostname
        places = [
            f"{parts.scheme}://{parts.netloc}",
            *(
                f"{scheme}://{host}{port}"
                for scheme in ("hdfs", "webhdfs")
                for port in (":9870", "")
            ),
        ]
    spelled = [p + path for p in places]
    if path != "/":
        spelled += [p + path + "/" for p in places]
    return list(dict.fromkeys(spelled))


def crawl_source(
    source: Source,
    settings: Settings,
    pusher: CataloguePusher,
    catalogue_id: str,
    now: datetime,
    report: Any,
) -> None:
    """Fills ``report`` (a CrawlReport); SourceCrawlFailed when the crawl cannot finish."""
    from crawler.sources import SourceError

    try:
        listing = source.list_assets()
    except SourceError as exc:
        raise SourceCrawlFailed(str(exc)) from exc
    report.warnings.extend(p for p in listing.problems if p.severity == "warning")
    report.errors.extend(p for p in listing.problems if p.severity == "error")
    try:
        state = CrawlState(settings.crawl_state_dir, source.url, catalogue_id)
    except StateError as exc:
        raise SourceCrawlFailed(str(exc)) from exc
    try:
        previous = state.load()
        if (
            previous
            and not listing.assets
            and not listing.unreadable
            and not settings.crawl_allow_empty
        ):
            # A broker that shows a principal no topic it may not describe, or a metastore
            # on another catalogue, lists nothing: as an unmounted volume does, that keeps
            # the assets until the user says the source is empty.
            raise SourceCrawlFailed(
                f"{source.url} lists no asset, but its last crawl found {len(previous)}: "
                "is it the right server, and may these credentials see them? Nothing was "
                "deleted; to delete their assets, crawl with --allow-empty "
                "(CAIRN_CRAWL_ALLOW_EMPTY=true)"
            )
        try:
            located = _located(source, listing, pusher)
        except CatalogueUnreachable as exc:
            raise SourceCrawlFailed(str(exc)) from exc
        docs = _documents(source, listing, located)
        report.documents = len(docs)
        upserts, changed = [], {}
        for key, doc in docs.items():
            old = previous.get(key)
            if old is not None and (old.fingerprint == doc["_hash"] or key in listing.partial):
                # A partial description (its schema unread this time) does not replace what
                # was pushed whole: the asset stays as it was until it can be read again.
                report.unchanged += 1
                continue
            upserts.append({**doc, "crawled_at": now.isoformat()})
            changed[key] = ManifestState(doc["_hash"], [doc.get("location")], [_stored(doc)])
        deletions = []
        for key, old in previous.items():
            if key in docs or key in listing.unreadable:
                continue
            deletions += [
                {**d, "deleted": True, "crawled_at": now.isoformat()}
                for d in old.docs
                if not d.get("deleted")
            ]
        _push(pusher, settings, source, deletions + upserts, changed, previous, report, state)
    except StateError as exc:
        raise SourceCrawlFailed(str(exc)) from exc
    finally:
        state.close()


def _located(source: Source, listing: SourceListing, pusher: CataloguePusher) -> dict[str, str]:
    """``location -> asset id`` of the assets volume crawls catalogued where this source's
    assets are, as the catalogue knows them (whichever machine crawled the volume)."""
    if source.edge_origin is None:
        return {}
    wanted = {
        a.fields["location"]: location_spellings(a.fields["location"])
        for a in listing.assets
        if a.fields.get("location")
    }
    urls = list(dict.fromkeys(u for spellings in wanted.values() for u in spellings))
    found = pusher.by_location(urls)
    linked: dict[str, str] = {}
    for location, spellings in wanted.items():
        for url in spellings:
            # Only assets from volumes: a table is not linked to itself or to another
            # metastore's table over the same folder.
            volume_assets = [a for a in found.get(url, []) if not is_source_url(a.volume or "")]
            if volume_assets:
                linked[location] = volume_assets[0].id
                break
    return linked


def _documents(
    source: Source, listing: SourceListing, located: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Asset documents by key, with ids filled in and, under ``_upstreams``, the ids of the
    assets the source says each one comes from (its lineage edges, sent apart)."""
    ids = {a.key: source_asset_id(source.url, a.key) for a in listing.assets}
    out: dict[str, dict[str, Any]] = {}
    for asset in listing.assets:
        doc = dict(asset.fields)
        doc["id"] = ids[asset.key]
        doc["volume"] = source.url
        doc["manifest_path"] = asset.key
        upstreams = [ids[k] for k in asset.upstream if k in ids]
        if doc.get("location") in located:
            # The table reads the files a volume crawl catalogued there.
            upstreams.append(located[doc["location"]])
        # The edges are part of what is compared: a link that appears (the volume was
        # crawled since) or goes is sent even when the asset itself did not change.
        doc["_upstreams"] = list(dict.fromkeys(upstreams))
        body = {k: v for k, v in doc.items() if k != "crawled_at"}
        doc["_hash"] = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        out[asset.key] = doc
    return out


def _stored(doc: dict[str, Any]) -> dict[str, Any]:
    """The asset as the catalogue holds it (what a later crawl soft-deletes)."""
    return {k: v for k, v in doc.items() if k not in ("_hash", "_upstreams")}


def _push(
    pusher: CataloguePusher,
    settings: Settings,
    source: Source,
    items: list[dict[str, Any]],
    changed: dict[str, ManifestState],
    previous: dict[str, ManifestState],
    report: Any,
    state: CrawlState,
) -> None:
    """Sends ``items`` in batches, each followed by its assets' lineage edges; saves the state
    of every key whose asset and edges the catalogue acknowledged."""
    saved: dict[str, ManifestState] = {}
    removed: list[str] = []
    try:
        for start in range(0, len(items), settings.crawl_batch_size):
            batch = items[start : start + settings.crawl_batch_size]
            wire = [_stored(d) for d in batch]
            # Marked first: a crawl killed once the catalogue took the batch, before the state
            # is saved below, must not leave the next crawl blind to what it sent.
            state.mark_unsettled(batch, previous.__contains__)
            try:
                result = pusher.bulk(wire)
            except CatalogueUnreachable as exc:
                raise SourceCrawlFailed(str(exc)) from exc
            landed: dict[str, ManifestState] = {}
            edges: dict[str, list[str]] = {}
            for item, res in zip(batch, result.results, strict=True):
                key = item["manifest_path"]
                if res.status == "error":
                    where = f"{item['volume']} {key}"
                    report.errors.append(Problem(path=where, reason=res.error or ""))
                    report.failed += 1
                    continue
                if res.status == "deleted" or item.get("deleted"):
                    # A dropped table keeps its edges, as a deleted file's asset keeps its
                    # depends_on: lineage hides deleted assets from the living, and the
                    # dropped table's own page still says where it came from.
                    report.deleted += int(res.status == "deleted")
                    report.unchanged += int(res.status != "deleted")
                    removed.append(key)
                    continue
                setattr(report, res.status, getattr(report, res.status) + 1)
                landed[key] = changed[key]
                edges[item["id"]] = item["_upstreams"]
            if source.edge_origin is not None and edges:
                try:
                    pusher.edges(source.edge_origin, edges)
                except CatalogueUnreachable as exc:
                    raise SourceCrawlFailed(str(exc)) from exc
            saved.update(landed)
    finally:
        state.save(saved, [k for k in removed if k in previous])

"""One crawl of a source (``kafka://``, ``thrift://``): list, diff, link, push, soft-delete.

The crawl state is the one volume crawls keep (``crawler/state.py``), with one row per asset
key instead of per manifest: an asset whose content hash did not change is not sent again,
and an asset that was pushed before and is no longer listed is soft-deleted. A listing that
fails (broker or metastore down) fails the crawl before anything is compared, so nothing is
deleted because a server could not be reached.
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
from crawler.state import CrawlState, ManifestState, pushed_locations


class SourceCrawlFailed(Exception):
    """The source could not be listed, or the catalogue stopped answering mid-push."""


def source_asset_id(source_url: str, key: str) -> str:
    return crawled_id(source_url, key, 0)


def location_key(url: str) -> str:
    """What two location URLs share when they name the same place: ``file:/x`` and
    ``file:///x/`` agree, and so do HDFS URLs that differ only by port (a metastore records
    the NameNode's RPC port, Cairn's hdfs:// volumes its HTTP port)."""
    text = url.strip()
    if text.startswith("file:/") and not text.startswith("file://"):
        text = "file://" + text[len("file:") :]
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    netloc = parts.netloc
    if scheme in ("hdfs", "webhdfs"):
        scheme, netloc = "hdfs", (parts.hostname or "")
    path = parts.path.rstrip("/") or "/"
    return f"{scheme}://{netloc}{path}"


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
    state = CrawlState(settings.crawl_state_dir, source.url, catalogue_id)
    try:
        previous = state.load()
        docs = _documents(source, listing, settings, catalogue_id)
        report.documents = len(docs)
        upserts, changed = [], {}
        for key, doc in docs.items():
            old = previous.get(key)
            if old is not None and old.fingerprint == doc["_hash"]:
                report.unchanged += 1
                continue
            upserts.append({**doc, "crawled_at": now.isoformat()})
            changed[key] = ManifestState(doc["_hash"], [doc.get("location")], [doc])
        deletions = []
        for key, old in previous.items():
            if key in docs or key in listing.unreadable:
                continue
            deletions += [
                {**d, "deleted": True, "crawled_at": now.isoformat()}
                for d in old.docs
                if not d.get("deleted")
            ]
        _push(pusher, settings, deletions + upserts, changed, previous, report, state)
    finally:
        state.close()


def _documents(
    source: Source, listing: SourceListing, settings: Settings, catalogue_id: str
) -> dict[str, dict[str, Any]]:
    """Asset documents by key, with ids, upstream links and location links filled in."""
    ids = {a.key: source_asset_id(source.url, a.key) for a in listing.assets}
    located = any(a.fields.get("location") for a in listing.assets)
    places: dict[str, str] = {}
    if located:
        # Only assets from volumes: a table is not linked to another metastore's table.
        found = pushed_locations(
            settings.crawl_state_dir, catalogue_id, lambda volume: not is_source_url(volume)
        )
        for location, asset_id in found.items():
            places.setdefault(location_key(location), asset_id)
    out: dict[str, dict[str, Any]] = {}
    for asset in listing.assets:
        doc = dict(asset.fields)
        doc["id"] = ids[asset.key]
        doc["volume"] = source.url
        doc["manifest_path"] = asset.key
        depends = list(doc.get("depends_on") or [])
        depends += [ids[k] for k in asset.upstream if k in ids]
        if doc.get("location"):
            linked = places.get(location_key(doc["location"]))
            if linked is not None:
                # The table reads the files a volume crawl catalogued there: they are its
                # upstream in the lineage picture.
                depends.append(linked)
                doc["extra"] = {**doc.get("extra", {}), "location_asset": linked}
        if depends:
            doc["depends_on"] = list(dict.fromkeys(depends))
        body = {k: v for k, v in doc.items() if k != "crawled_at"}
        doc["_hash"] = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        out[asset.key] = doc
    return out


def _push(
    pusher: CataloguePusher,
    settings: Settings,
    items: list[dict[str, Any]],
    changed: dict[str, ManifestState],
    previous: dict[str, ManifestState],
    report: Any,
    state: CrawlState,
) -> None:
    """Sends ``items`` in batches; saves the state of every key the catalogue acknowledged."""
    saved: dict[str, ManifestState] = {}
    removed: list[str] = []
    try:
        for start in range(0, len(items), settings.crawl_batch_size):
            batch = items[start : start + settings.crawl_batch_size]
            wire = [{k: v for k, v in d.items() if k != "_hash"} for d in batch]
            try:
                result = pusher.bulk(wire)
            except CatalogueUnreachable as exc:
                raise SourceCrawlFailed(str(exc)) from exc
            for item, res in zip(batch, result.results, strict=True):
                key = item["manifest_path"]
                if res.status == "error":
                    where = f"{item['volume']} {key}"
                    report.errors.append(Problem(path=where, reason=res.error or ""))
                    report.failed += 1
                    continue
                if res.status == "deleted" or item.get("deleted"):
                    report.deleted += int(res.status == "deleted")
                    report.unchanged += int(res.status != "deleted")
                    removed.append(key)
                    continue
                setattr(report, res.status, getattr(report, res.status) + 1)
                saved[key] = changed[key]
    finally:
        state.save(saved, [k for k in removed if k in previous])

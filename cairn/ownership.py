"""Which assets a crawled write may change: read by both catalogue backends when they write,
and by the crawler before it sends a manifest whose ``id:`` another asset may hold."""

from __future__ import annotations

from typing import Any

__all__ = ["owner_conflict"]


def _place(doc: dict[str, Any]) -> str:
    if doc.get("volume"):
        return f"{doc.get('manifest_path') or '?'} on {doc['volume']}"
    return "a writer of the API (no volume)"


def owner_conflict(new: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why a crawled write may not change ``current``, or None when it may.

    A crawled write (one with a volume) may only change assets of its own volume and manifest
    path, so an ``id:`` in a manifest cannot take over an asset written over the API, a feature
    set's entry or another manifest's asset (nor, later, soft-delete it). A soft-deleted asset
    of the same volume is free to take: its manifest went away. API writes may change anything.
    """
    volume = new.get("volume")
    if not volume:
        return None
    mine = current.get("manifest_path") == new.get("manifest_path") or current.get("deleted")
    if current.get("volume") == volume and mine:
        return None
    return (
        f"id {new['id']!r} already belongs to asset {current.get('name')!r} from "
        f"{_place(current)}; a manifest may only write the assets it declares itself, so "
        f"choose another id in {new.get('manifest_path') or 'this manifest'} or drop its id"
    )

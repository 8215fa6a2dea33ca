"""Parsing of the search route's query string, with messages that say what to fix."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.datastructures import QueryParams

from cairn.errors import InvalidRequest, unknown_param
from cairn.errors import invalid_param as _fail
from cairn.models import composed
from catalogue_service.api.deps import parse_labels
from catalogue_service.backends.base import SearchQuery, decode_cursor

# In the order an unknown parameter's message lists them.
PARAMETERS = (
    "q",
    "name",
    "tag",
    "type",
    "label",
    "owner",
    "include_deleted",
    "drifted",
    "limit",
    "cursor",
    "facets",
)
KNOWN = frozenset(PARAMETERS)
MAX_LENGTHS = {"q": 1024, "name": 256, "type": 64, "owner": 1024, "cursor": 4096, "tag": 1024}
TRUE, FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})
# Each tag or label filter is a clause of the search: a thousand overran SQLite's expression
# depth (a 500). Mastro's tag search takes 100 tags too.
MAX_FILTERS = 100


def _bool(params: dict[str, str], key: str, default: bool | None) -> bool | None:
    value = params.get(key)
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise _fail(key, f"{value!r} is not a boolean; use true or false")


def _unknown(key: str) -> InvalidRequest:
    if key == "page":  # Mastro's paging, on its own route (GET /assets/?limit=&page=)
        return unknown_param(
            key, PARAMETERS, "the next page is cursor=<next_cursor> of the answer; "
        )
    return unknown_param(key, PARAMETERS)


def parse_search(params: QueryParams) -> SearchQuery:
    return parse_search_items(params.multi_items())


def parse_query_string(raw: bytes) -> SearchQuery:
    """``parse_search`` of a raw query string, read as Starlette's ``QueryParams`` reads it,
    without building one (the search route's hot path)."""
    return parse_search_items(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))


def parse_search_items(items: Iterable[tuple[str, str]]) -> SearchQuery:
    # As QueryParams: a repeated parameter's last value, except the two that repeat.
    params: dict[str, str] = {}
    tags: list[str] = []
    labels: list[str] = []
    for key, value in items:
        limit = MAX_LENGTHS.get(key)
        if limit is not None and len(value) > limit:
            raise _fail(key, f"is {len(value)} characters long; the limit is {limit}")
        params[key] = value
        if key == "tag":
            tags.append(value)
        elif key == "label":
            labels.append(value)
    for key in params:
        if key not in KNOWN:
            raise _unknown(key)
    for key, given in (("tag", tags), ("label", labels)):
        if len(given) > MAX_FILTERS:
            raise _fail(key, f"is given {len(given)} times; send at most {MAX_FILTERS}")
    raw_limit = params.get("limit")
    limit = 20
    if raw_limit:
        try:
            limit = int(raw_limit)
        except ValueError:
            raise _fail("limit", f"{raw_limit!r} is not a whole number") from None
        if not 1 <= limit <= 1000:
            raise _fail("limit", "must be between 1 and 1000")
    cursor = params.get("cursor")
    name, owner = params.get("name"), params.get("owner")
    return SearchQuery(
        # Blank is no text query: a search box left with a space in it lists everything.
        q=params.get("q", "").strip() or None,
        # Composed as the names, tags and owners they are compared with were when written.
        name=composed(name) if name else None,
        tags=[composed(t) for t in tags if t],
        type=params.get("type") or None,
        labels=parse_labels(labels),
        owner=composed(owner) if owner else None,
        include_deleted=bool(_bool(params, "include_deleted", False)),
        limit=limit,
        cursor=decode_cursor(cursor) if cursor else None,
        facets=bool(_bool(params, "facets", True)),
        drifted=_bool(params, "drifted", None),
    )

"""The search page's whole state lives in its URL, so a search can be shared and the back
button restores it. ``SearchState`` parses a query string leniently (a bad value is dropped or
shortened with a notice, never an error) and builds the links that change one thing.

URL parameters: ``q`` text; ``tag`` (repeated, AND); ``type``; ``label`` (``key:value``,
repeated); ``owner``; ``deleted=1`` to include deleted assets; ``cursor`` of the page shown,
``page`` its number, and ``back``: the cursors of the previous pages (at most ``MAX_BACK``,
so "Previous" works without JavaScript while the URL stays short).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus

from starlette.datastructures import QueryParams

PAGE_SIZE = 20
MAX_Q = 1024
MAX_VALUE = 1024
MAX_TYPE = 64
MAX_FILTERS = 20
MAX_BACK = 20
MAX_CURSOR = 4096
MAX_PAGE = 10**9

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CURSOR = re.compile(r"^[A-Za-z0-9_-]+$")


def clean(value: str, limit: int) -> tuple[str, bool]:
    """``value`` without control characters, cut to ``limit``; True when it was cut."""
    value = _CONTROL.sub(" ", value).strip()
    if len(value) > limit:
        return value[:limit], True
    return value, False


DRIFT_VALUES = frozenset({"", "drifted", "stable"})


# Values up to this long are looked up (tags, types, owners: what a page repeats); longer ones
# (a pasted search, cursors) are encoded each time, so the table stays a few MiB at most
# whatever URLs the UI is sent.
SHORT_VALUE = 64


def _encoded(value: str) -> str:
    """A query-string value as ``urlencode`` writes it."""
    return _short_encoded(value) if len(value) <= SHORT_VALUE else quote_plus(value)


@lru_cache(maxsize=4096)
def _short_encoded(value: str) -> str:
    return quote_plus(value)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


@dataclass(slots=True)
class Filter:
    kind: str
    label: str
    value: str
    remove_url: str


@dataclass(slots=True)
class SearchState:
    q: str = ""
    tags: list[str] = field(default_factory=list)
    type: str = ""
    labels: list[str] = field(default_factory=list)
    owner: str = ""
    deleted: bool = False
    cursor: str = ""
    back: list[str] = field(default_factory=list)
    page: int = 1
    base: str = "/"  # the page these links point at
    drift: str = ""  # "drifted" or "stable": crawled datasets by their newest profile

    @classmethod
    def parse(cls, params: QueryParams, base: str = "/") -> tuple[SearchState, list[str]]:
        notices: list[str] = []
        q, cut = clean(params.get("q", ""), MAX_Q)
        if cut:
            notices.append(f"Your search text was shortened to its first {MAX_Q:,} characters.")
        # In lower case, as the catalogue matches and counts tags: a result's "Sales" and the
        # facet "sales" are one filter.
        tags = _unique(clean(t, MAX_VALUE)[0].lower() for t in params.getlist("tag"))
        labels = []
        for raw in params.getlist("label"):
            value = clean(raw, MAX_VALUE)[0]
            key, sep, _ = value.partition(":")
            if sep and key:
                labels.append(value)
            elif value:
                notices.append(f"Ignored the label filter {value!r}: write it as key:value.")
        labels = _unique(labels)
        if len(tags) + len(labels) > MAX_FILTERS:
            notices.append(f"Only the first {MAX_FILTERS} tag and label filters are used.")
            tags = tags[:MAX_FILTERS]
            labels = labels[: max(0, MAX_FILTERS - len(tags))]
        kind, cut = clean(params.get("type", ""), MAX_TYPE)
        if cut:
            kind = ""
            notices.append("Ignored a type filter longer than any type name.")
        owner = clean(params.get("owner", ""), MAX_VALUE)[0]
        deleted = params.get("deleted", "").lower() in {"1", "true", "yes", "on"}
        cursor = params.get("cursor", "")
        back = [c for c in params.get("back", "").split(".") if c]
        if not _valid_cursor(cursor) or not all(_valid_cursor(c) for c in back):
            if cursor or back:
                notices.append("That page link was not valid, so this is the first page.")
            cursor, back = "", []
        back = back[-MAX_BACK:]
        page = _int(params.get("page"), 1, 1, MAX_PAGE) if cursor else 1
        if cursor and page < 2:
            page = len(back) + 2
        drift = params.get("drift", "")
        if drift not in DRIFT_VALUES:
            notices.append(f"Ignored the drift filter {drift[:40]!r}: use drifted or stable.")
            drift = ""
        state = cls(q, tags, kind, labels, owner, deleted, cursor, back, page, base, drift)
        return state, notices

    # --- what the catalogue is asked ----------------------------------------------------------

    def label_map(self) -> dict[str, str]:
        """The label filters as the clients take them: a key given twice keeps its last value
        (together they could match nothing: a label has one value)."""
        return dict(lab.split(":", 1) for lab in self.labels)

    def search_args(self, limit: int = PAGE_SIZE) -> dict[str, Any]:
        """``AsyncCatalogueClient.search``'s arguments for this state."""
        return {
            "q": self.q or None,
            "tags": self.tags,
            "type": self.type or None,
            "labels": self.label_map(),
            "owner": self.owner or None,
            "include_deleted": self.deleted,
            "cursor": self.cursor or None,
            "limit": limit,
            "drifted": {"drifted": True, "stable": False}.get(self.drift),
        }

    # --- links --------------------------------------------------------------------------------

    @property
    def is_empty(self) -> bool:
        """No text and no filter: the catalogue's front page."""
        return not (self.q or self.tags or self.type or self.labels or self.owner or self.drift)

    @property
    def first_row(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1

    def url(self, **changes: Any) -> str:
        """This page's link with ``changes`` (field names) applied. A search page holds about
        130 links (facets, each result's tags); built through ``dataclasses.replace`` and
        ``urlencode``, they were a fifth of the page's CPU, so the values are read and their
        encodings looked up here."""
        if not changes.keys() <= _FIELDS:
            raise TypeError(f"unknown fields: {sorted(changes.keys() - _FIELDS)}")
        get = changes.get
        parts: list[str] = []
        if q := get("q", self.q):
            parts.append("q=" + _encoded(q))
        parts += ["tag=" + _encoded(t) for t in get("tags", self.tags)]
        if kind := get("type", self.type):
            parts.append("type=" + _encoded(kind))
        parts += ["label=" + _encoded(lab) for lab in get("labels", self.labels)]
        if owner := get("owner", self.owner):
            parts.append("owner=" + _encoded(owner))
        if drift := get("drift", self.drift):
            parts.append("drift=" + _encoded(drift))
        if get("deleted", self.deleted):
            parts.append("deleted=1")
        if cursor := get("cursor", self.cursor):
            parts.append("cursor=" + _encoded(cursor))
            parts.append("page=" + _encoded(str(get("page", self.page))))
            if back := get("back", self.back):
                parts.append("back=" + _encoded(".".join(back)))
        base = get("base", self.base)
        return f"{base}?{'&'.join(parts)}" if parts else base

    def _first_page(self, **changes: object) -> str:
        return self.url(cursor="", back=[], page=1, **changes)

    def with_tag(self, tag: str) -> str:
        if tag.lower() in self.tags:
            return self.without_tag(tag)
        return self._first_page(tags=[*self.tags, tag.lower()])

    def without_tag(self, tag: str) -> str:
        return self._first_page(tags=[t for t in self.tags if t != tag.lower()])

    def with_type(self, kind: str) -> str:
        return self._first_page(type="" if kind == self.type else kind)

    def with_label(self, label: str) -> str:
        if label in self.labels:
            return self._first_page(labels=[x for x in self.labels if x != label])
        return self._first_page(labels=[*self.labels, label])

    def with_drift(self, value: str) -> str:
        return self._first_page(drift="" if value == self.drift else value)

    def toggle_deleted(self) -> str:
        return self._first_page(deleted=not self.deleted)

    def clear_url(self) -> str:
        """Same text, no filters."""
        return SearchState(q=self.q, base=self.base).url()

    def filters(self) -> list[Filter]:
        """The active filters, each with the link that removes it."""
        out = [Filter("tag", "tag", t, self.without_tag(t)) for t in self.tags]
        if self.type:
            out.append(Filter("type", "type", self.type, self._first_page(type="")))
        out += [
            Filter(
                "label", "label", lab, self._first_page(labels=[x for x in self.labels if x != lab])
            )
            for lab in self.labels
        ]
        if self.owner:
            out.append(Filter("owner", "owner", self.owner, self._first_page(owner="")))
        if self.drift:
            out.append(Filter("drift", "drift", self.drift, self._first_page(drift="")))
        return out

    def next_url(self, next_cursor: str) -> str:
        back = [*self.back, self.cursor] if self.cursor else []
        return self.url(cursor=next_cursor, back=back[-MAX_BACK:], page=self.page + 1)

    def prev_url(self) -> str | None:
        if self.page <= 1 or not self.cursor:
            return None
        if self.page == 2:
            return self._first_page()
        if not self.back:
            return None  # the trail was cut: only "First page" and the back button remain
        return self.url(cursor=self.back[-1], back=self.back[:-1], page=self.page - 1)

    def first_url(self) -> str:
        return self._first_page()


_FIELDS = frozenset(f.name for f in fields(SearchState))


def _valid_cursor(value: str) -> bool:
    return not value or (len(value) <= MAX_CURSOR and bool(_CURSOR.match(value)))


def _int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        value = int(raw or "")
    except ValueError:
        return default
    return min(max(value, low), high)

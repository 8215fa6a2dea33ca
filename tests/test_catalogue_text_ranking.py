"""A text-only search on SQLite is ranked off the FTS index alone (deleted assets come from a
partial index, the exact name from the name index) instead of probing every match's row: it
must answer exactly what the general plan (FTS joined with the assets) answers, page by page,
with deleted assets left out and an exact name first."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import orjson
import pytest

from catalogue_service.backends import sqlite as backend
from catalogue_service.backends.base import SearchHits, SearchQuery, decode_cursor
from catalogue_service.backends.sqlite import SQLiteStore
from tests.conftest import write_assets


def _names(hits: SearchHits) -> list[str]:
    return [orjson.loads(d)["name"] for d in hits.docs]


def _pages(store: SQLiteStore, query: SearchQuery) -> list[SearchHits]:
    conn = store.db.new_reader()
    pages = [store._search_sync(conn, query)]
    while pages[-1].next_cursor is not None:
        cursor = decode_cursor(pages[-1].next_cursor)
        pages.append(store._search_sync(conn, dataclasses.replace(query, cursor=cursor)))
    return pages


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "c.db")
    asyncio.run(store.open())
    items = [
        {
            "id": f"a{i}",
            "name": f"orders_{i:02d}",
            "type": "dataset",
            "tags": ["orders"] if i % 4 else ["orders", "finance"],
            "description": "orders " * (1 + i % 5) + f"batch {i}",
        }
        for i in range(40)
    ]
    # An asset named exactly as the query, which its text alone would not rank first.
    items.append({"id": "exact", "name": "Orders", "type": "table", "description": "x"})
    write_assets(store, items)
    # Soft-deleted assets stay in the FTS index; a search without include_deleted skips them.
    write_assets(store, [{**items[i], "deleted": True} for i in (3, 17, 28)])
    return store


def test_text_only_plan_answers_as_the_general_plan(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    queries = [
        SearchQuery(q="orders", limit=7),
        SearchQuery(q="ord", limit=5),
        SearchQuery(q="orders batch", limit=4, facets=False),
        SearchQuery(q="nothing", limit=5),
    ]
    fast = [_pages(store, q) for q in queries]
    store._counts.clear()
    monkeypatch.setattr(backend, "_text_only", lambda query: False)
    general = [_pages(store, q) for q in queries]
    assert len(fast[0]) > 2  # several pages, each with its cursor
    for mine, theirs in zip(fast, general, strict=True):
        assert [(p.docs, p.total, p.facets, p.next_cursor) for p in mine] == [
            (p.docs, p.total, p.facets, p.next_cursor) for p in theirs
        ]


def test_text_only_plan_leaves_out_deleted_and_ranks_the_exact_name_first(
    store: SQLiteStore,
) -> None:
    pages = _pages(store, SearchQuery(q="orders", limit=10))
    names = [n for page in pages for n in _names(page)]
    assert names[0] == "Orders"
    assert {"orders_03", "orders_17", "orders_28"}.isdisjoint(names)
    assert len(names) == pages[0].total == 41 - 3
    # A write (here a delete) changes the next answer: nothing stale is kept.
    write_assets(store, [{"id": "exact", "name": "Orders", "type": "table", "deleted": True}])
    again = _pages(store, SearchQuery(q="orders", limit=10))
    assert _names(again[0])[0] != "Orders" and again[0].total == 40 - 3

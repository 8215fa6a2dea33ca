"""Searches the SQLite store answers on the event loop (``_bounded_shape``): they must answer
exactly what the worker-thread path answers, and leave for it whenever counting is needed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from catalogue_service.backends import sqlite as backend
from catalogue_service.backends.base import SearchQuery
from catalogue_service.backends.page_cache import PageCache
from catalogue_service.backends.sqlite import SQLiteStore
from catalogue_service.backends.tag_facets import PAIRED_TAGS
from tests.conftest import hit_ids, write_assets


class _Counting:
    """Counts the searches that ran on the calling thread and those that gave up there."""

    def __init__(self, store: SQLiteStore) -> None:
        self.here = 0
        self.left = 0
        self._read_here = store.db.read_here

        def read_here(fn: Any, *args: Any) -> Any:
            try:
                found = self._read_here(fn, *args)
            except backend._Unbounded:
                self.left += 1
                raise
            self.here += 1
            return found

        store.db.read_here = read_here  # type: ignore[method-assign]


def _store(tmp_path: Path) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "c.db")
    # These tests follow the path each search takes: a search asked again must take it again,
    # not be answered from the whole answers kept (test_catalogue_page_cache.py).
    store._pages = PageCache(answers=0)
    asyncio.run(store.open())
    write_assets(
        store,
        [
            {"id": f"a{i}", "name": f"sales_{i:03d}", "type": "dataset", "tags": [f"t{i % 3}"]}
            for i in range(60)
        ],
    )
    return store


def test_bounded_answers_match_the_thread_path(tmp_path: Path) -> None:
    store = _store(tmp_path)
    try:
        conn = store.db.new_reader()
        for query in (
            SearchQuery(tags=["t1"], limit=7),
            SearchQuery(name="sales_0", limit=7),
            SearchQuery(name="SALES_01", limit=3, facets=False),
        ):
            assert backend._bounded_shape(query)
            here = asyncio.run(store.search(query))  # counts cached by the first, then here
            here = asyncio.run(store.search(query))
            store._counts.clear()
            thread = store._search_sync(conn, query)
            assert (here.docs, here.total, here.facets, here.next_cursor) == (
                thread.docs,
                thread.total,
                thread.facets,
                thread.next_cursor,
            )
    finally:
        asyncio.run(store.close())


def test_a_write_sends_a_name_search_back_to_counting(tmp_path: Path) -> None:
    store = _store(tmp_path)
    counting = _Counting(store)
    try:
        query = SearchQuery(name="sales_00", limit=5)
        first = asyncio.run(store.search(query))  # no counts yet: counted in a worker thread
        assert (counting.here, counting.left, first.total) == (0, 1, 10)
        asyncio.run(store.search(query))
        assert (counting.here, counting.left) == (1, 1)
        write_assets(store, [{"id": "new", "name": "sales_000x", "type": "dataset"}])
        after = asyncio.run(store.search(query))  # the write dropped the cached counts
        assert (counting.here, counting.left, after.total) == (1, 2, 11)
        assert "new" in hit_ids(after)
    finally:
        asyncio.run(store.close())


def test_one_tag_pages_here_and_follows_writes(tmp_path: Path) -> None:
    store = _store(tmp_path)
    counting = _Counting(store)
    try:
        query = SearchQuery(tags=["t2"], limit=50)
        before = asyncio.run(store.search(query))
        assert counting.here == 1 and before.total == 20
        write_assets(
            store,
            [
                {"id": "a2", "name": "sales_002", "type": "dataset", "deleted": True},
                {"id": "a5", "name": "aaa_first", "type": "table", "tags": ["t2"]},
            ],
        )
        after = asyncio.run(store.search(query))
        assert counting.here == 2
        assert after.total == 19 and after.facets.types == {"dataset": 18, "table": 1}
        assert hit_ids(after)[0] == "a5" and "a2" not in hit_ids(after)
    finally:
        asyncio.run(store.close())


def test_a_tag_on_an_asset_with_too_many_tags_is_counted_in_a_thread(tmp_path: Path) -> None:
    store = _store(tmp_path)
    counting = _Counting(store)
    wide = [f"w{j}" for j in range(PAIRED_TAGS + 1)]
    write_assets(store, [{"id": "wide", "name": "wide_one", "type": "dataset", "tags": wide}])
    try:
        hits = asyncio.run(store.search(SearchQuery(tags=["w0"], limit=5)))
        assert (counting.here, counting.left) == (0, 1)
        assert hits.total == 1 and hit_ids(hits) == ["wide"] and hits.facets.tags["w5"] == 1
    finally:
        asyncio.run(store.close())


def test_a_rare_word_is_searched_here_and_a_common_one_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    write_assets(
        store,
        [
            {"id": f"r{i}", "name": f"rare_{i}", "type": "dataset", "description": "zebrafish"}
            for i in range(3)
        ],
    )
    counting = _Counting(store)
    try:
        rare = asyncio.run(store.search(SearchQuery(q="zebra", limit=2)))
        assert (counting.here, counting.left) == (1, 0)
        conn = store.db.new_reader()
        thread = store._search_sync(conn, SearchQuery(q="zebra", limit=2))
        assert (rare.docs, rare.total, rare.facets, rare.next_cursor) == (
            thread.docs,
            thread.total,
            thread.facets,
            thread.next_cursor,
        )
        assert rare.total == 3 and rare.next_cursor is not None
        # 60 assets hold "sales": above the limit, counted in a worker thread.
        monkeypatch.setattr(backend, "HERE_MATCHES", 10)
        common = asyncio.run(store.search(SearchQuery(q="sales")))
        assert (counting.here, counting.left) == (1, 1) and common.total == 60
    finally:
        asyncio.run(store.close())


def test_a_text_search_with_its_counts_cached_skips_the_vocabulary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(tmp_path)
    counting = _Counting(store)
    asked: list[str] = []
    most_matches = backend._most_matches

    def bound(conn: Any, q: str) -> int:
        asked.append(q)
        return most_matches(conn, q)

    monkeypatch.setattr(backend, "_most_matches", bound)
    try:
        query = SearchQuery(q="sales", limit=5)
        first = asyncio.run(store.search(query))  # counts unknown: the vocabulary bounds them
        assert (counting.here, counting.left, asked) == (1, 0, ["sales"])
        again = asyncio.run(store.search(query))  # the cached total (60) says it is small
        assert (counting.here, counting.left, asked) == (2, 0, ["sales"])
        assert (again.docs, again.total, again.next_cursor) == (
            first.docs,
            first.total,
            first.next_cursor,
        )
        # A cached total over the limit is no licence: the vocabulary is asked, and says no.
        monkeypatch.setattr(backend, "HERE_MATCHES", 10)
        third = asyncio.run(store.search(query))
        assert (counting.here, counting.left, asked) == (2, 1, ["sales", "sales"])
        assert third.docs == first.docs and third.total == 60
    finally:
        asyncio.run(store.close())

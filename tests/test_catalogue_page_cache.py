"""Whole search answers kept until the next write (``catalogue_service.backends.page_cache``):
asked again they are not searched again, any commit to the file (this store's or another
process's) makes them searched afresh, and what a caller does to an answer stays its own."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cairn.models import Facets
from cairn.settings import Settings
from catalogue_service.backends.base import SearchHits, SearchQuery
from catalogue_service.backends.page_cache import OVERHEAD, PageCache, page_key
from catalogue_service.backends.sqlite import SQLiteStore, from_settings
from catalogue_service.spelling.fallback import with_typo_fallback
from tests.conftest import hit_ids, open_store, write_assets


class _Searches:
    """Counts the searches that reached SQLite."""

    def __init__(self, store: SQLiteStore) -> None:
        self.ran = 0
        search = store._search

        async def counted(query: SearchQuery) -> SearchHits:
            self.ran += 1
            return await search(query)

        store._search = counted  # type: ignore[method-assign]


def _hits(docs: int, size: int) -> SearchHits:
    return SearchHits(docs=[b"x" * size] * docs, total=docs, facets=Facets(), next_cursor=None)


def test_an_answer_is_kept_until_the_next_write(tmp_path: Path) -> None:
    store = open_store(tmp_path / "c.db")
    searches = _Searches(store)
    try:
        write_assets(
            store, [{"id": f"a{i}", "name": f"sales_{i}", "type": "dataset"} for i in range(5)]
        )
        for query in (
            SearchQuery(q="sales", limit=3),
            SearchQuery(name="sales_", limit=3),
            SearchQuery(q="sales", limit=3, cursor=[-1.0, 1]),
        ):
            first = asyncio.run(store.search(query))
            again = asyncio.run(store.search(query))
            assert (again.docs, again.total, again.next_cursor) == (
                first.docs,
                first.total,
                first.next_cursor,
            )
        assert searches.ran == 3

        write_assets(store, [{"id": "new", "name": "sales", "type": "dataset"}])
        after = asyncio.run(store.search(SearchQuery(q="sales", limit=3)))
        assert searches.ran == 4
        assert after.total == 6
        assert hit_ids(after)[0] == "new"  # the exact name first
    finally:
        asyncio.run(store.close())


def test_a_write_by_another_process_on_the_file_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    reader, writer = open_store(path), open_store(path)
    try:
        write_assets(writer, [{"id": "a", "name": "orders_daily", "type": "dataset"}])
        query = SearchQuery(q="orders")
        assert asyncio.run(reader.search(query)).total == 1
        assert asyncio.run(reader.search(query)).total == 1
        write_assets(writer, [{"id": "b", "name": "orders_weekly", "type": "dataset"}])
        found = asyncio.run(reader.search(query))
        assert (found.total, sorted(hit_ids(found))) == (2, ["a", "b"])
    finally:
        asyncio.run(reader.close())
        asyncio.run(writer.close())


def test_the_typo_fallback_does_not_mark_the_kept_answers(tmp_path: Path) -> None:
    store = open_store(tmp_path / "c.db")
    try:
        write_assets(store, [{"id": "s", "name": "sales_daily_report", "type": "dataset"}])
        typed, right = SearchQuery(q="salse daily"), SearchQuery(q="sales daily")
        assert hit_ids(asyncio.run(store.search(right))) == ["s"]  # kept before the fallback
        plain = asyncio.run(store.search(typed))
        assert plain.total == 0
        fixed = asyncio.run(with_typo_fallback(store, typed, plain, 1))
        assert (fixed.fuzzy, fixed.did_you_mean, hit_ids(fixed)) == (True, "sales daily", ["s"])
        for query, total in ((typed, 0), (right, 1)):
            kept = asyncio.run(store.search(query))
            assert (kept.total, kept.fuzzy, kept.did_you_mean) == (total, False, None)
    finally:
        asyncio.run(store.close())


def test_answers_are_copies_and_follow_the_generation() -> None:
    cache = PageCache()
    key = page_key(SearchQuery(q="sales"))
    cache.put(key, 7, _hits(2, 10))
    given = cache.get(key, 7)
    assert given is not None
    given.did_you_mean, given.fuzzy = "x", True
    again = cache.get(key, 7)
    assert again is not None and (again.did_you_mean, again.fuzzy, again.total) == (None, False, 2)
    assert cache.get(key, 8) is None
    assert (len(cache), cache.bytes) == (0, 0)  # an answer of an older generation goes


def test_memory_is_bounded_by_answers_and_bytes() -> None:
    size = OVERHEAD + 1000
    cache = PageCache(answers=3, max_bytes=16 * size)
    for n in range(5):
        cache.put(page_key(SearchQuery(q=f"w{n}")), 1, _hits(1, 1000))
    assert len(cache) == 3 and cache.bytes == 3 * size
    assert cache.get(page_key(SearchQuery(q="w1")), 1) is None  # least recently used out
    assert cache.get(page_key(SearchQuery(q="w4")), 1) is not None

    cache = PageCache(answers=100, max_bytes=16 * size)
    for n in range(20):
        cache.put(page_key(SearchQuery(q=f"w{n}")), 1, _hits(1, 1000))
    assert len(cache) == 16 and cache.bytes == 16 * size
    # An answer over a sixteenth of the bound is not kept, and pushes nothing out.
    cache.put(page_key(SearchQuery(q="big")), 1, _hits(2, 1000))
    assert cache.get(page_key(SearchQuery(q="big")), 1) is None
    assert len(cache) == 16


def test_any_decoded_cursor_makes_a_key() -> None:
    # A cursor is decoded from the client's string and checked by the search, after the key.
    odd = page_key(SearchQuery(q="x", cursor=[[1, 2], {"a": 1}, "z"]))
    plain = page_key(SearchQuery(q="x", cursor=[1.5, 2]))
    assert len({odd, plain, page_key(SearchQuery(q="x"))}) == 3


def test_no_answers_are_kept_with_the_setting_at_zero(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, search_cache_mib=0)
    store = from_settings(settings)
    assert store.path == tmp_path / "catalogue.db"
    asyncio.run(store.open())
    searches = _Searches(store)
    try:
        write_assets(store, [{"id": "a", "name": "orders_daily", "type": "dataset"}])
        for _ in range(3):
            assert asyncio.run(store.search(SearchQuery(q="orders"))).total == 1
        assert searches.ran == 3
        assert len(store._pages) == 0
    finally:
        asyncio.run(store.close())

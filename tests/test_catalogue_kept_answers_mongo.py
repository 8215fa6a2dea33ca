"""Whole search answers kept by the mongo backend (``index_generation``): asked again they are
not sent to Elasticsearch, a write is seen at once by the process that made it and within the
generation's max age by another process on the same MongoDB and index, and nothing is kept
while the generation is unknown. Real FerretDB and Elasticsearch."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cairn.models import AssetWrite
from cairn.settings import Settings
from catalogue_service.backends.base import PreparedWrite, SearchHits, SearchQuery
from catalogue_service.backends.index_generation import KEY, MAX_AGE, IndexGeneration
from catalogue_service.backends.mongo import MongoStore
from catalogue_service.spelling.base import WordInfo
from tests.conftest import backend_settings, hit_ids
from tests.servers.processes import refused_port

QUERY = SearchQuery(q="orders", limit=10)


class _Asked:
    """Counts the searches that reached Elasticsearch."""

    def __init__(self, store: MongoStore) -> None:
        self.ran = 0
        search = store.index.search

        async def counted(query: SearchQuery) -> SearchHits:
            self.ran += 1
            return await search(query)

        store.index.search = counted  # type: ignore[method-assign]


async def _write(store: MongoStore, *names: str) -> None:
    writes = [
        PreparedWrite.of(i, AssetWrite.model_validate({"id": n, "name": n, "type": "dataset"}))
        for i, n in enumerate(names)
    ]
    results = await store.upsert(writes, datetime.now(UTC))
    assert all(r.status in ("created", "updated") for r in results), results


async def _opened(settings: Settings) -> MongoStore:
    store = MongoStore(settings)
    await store.open()
    return store


async def _known(store: MongoStore) -> None:
    """Until the poller has read the shared counter once, nothing is kept."""
    deadline = time.monotonic() + 30
    while store.generation.current() is None:
        assert time.monotonic() < deadline, "the generation was never read"
        await asyncio.sleep(0.05)


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return backend_settings(request, "mongo", data_dir=tmp_path / "data")


def test_an_answer_is_kept_until_its_own_process_writes(settings: Settings) -> None:
    async def scenario() -> None:
        store = await _opened(settings)
        asked = _Asked(store)
        try:
            await _write(store, "orders_daily", "orders_weekly")
            await _known(store)
            first = await store.search(QUERY)
            again = await store.search(QUERY)
            assert sorted(hit_ids(first)) == ["orders_daily", "orders_weekly"]
            assert (again.docs, again.total) == (first.docs, first.total)
            assert asked.ran == 1

            await _write(store, "orders_hourly")  # no wait: the writer's next search sees it
            after = await store.search(QUERY)
            assert asked.ran == 2
            assert sorted(hit_ids(after)) == ["orders_daily", "orders_hourly", "orders_weekly"]
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_write_through_another_process_shows_within_the_max_age(settings: Settings) -> None:
    async def scenario() -> float:
        writer, reader = await _opened(settings), await _opened(settings)
        asked = _Asked(reader)
        try:
            await _write(writer, "orders_daily")
            await _known(reader)
            assert hit_ids(await reader.search(QUERY)) == ["orders_daily"]
            assert hit_ids(await reader.search(QUERY)) == ["orders_daily"]
            assert asked.ran == 1  # kept

            await _write(writer, "orders_weekly")
            written = time.monotonic()
            while len(hit_ids(await reader.search(QUERY))) < 2:
                # Broken, the reader would keep its answer for ever; a loaded machine may
                # be slow to poll, so the bound here is far above MAX_AGE.
                assert time.monotonic() - written < 10 * MAX_AGE + 5, "never seen"
                await asyncio.sleep(0.05)
            return time.monotonic() - written
        finally:
            await writer.close()
            await reader.close()

    asyncio.run(scenario())


def test_nothing_is_kept_while_the_generation_is_unknown(settings: Settings) -> None:
    async def scenario() -> None:
        store = await _opened(settings)
        # Read once, then never again within the test: the last read grows too old.
        store.generation.poll_seconds = 3600
        store.generation.max_age = 0.3
        asked = _Asked(store)
        try:
            await _write(store, "orders_daily")
            await _known(store)
            await store.search(QUERY)
            await store.search(QUERY)
            assert asked.ran == 1
            await asyncio.sleep(0.4)
            assert store.generation.current() is None
            await store.search(QUERY)
            await store.search(QUERY)
            assert asked.ran == 3
        finally:
            await store.close()

    asyncio.run(scenario())


def test_every_change_to_the_index_moves_the_shared_counter(settings: Settings) -> None:
    """Writes, drift flags and a reindex (``cairn reindex`` runs in a process of its own)."""

    async def counter(store: MongoStore) -> int:
        found = await store.db.get_collection("cairn_meta").find_one({"_id": KEY})
        return 0 if found is None else int(found["n"])

    async def scenario() -> list[int]:
        store = await _opened(settings)
        try:
            seen = [await counter(store)]
            await _write(store, "orders_daily")
            seen.append(await counter(store))
            await store.set_drift(
                "orders_daily", {"drifted": True, "columns": [], "profile_version": 1}
            )
            seen.append(await counter(store))
            await store.reindex(lambda done, total: None)
            seen.append(await counter(store))
            return seen
        finally:
            await store.close()

    seen = asyncio.run(scenario())
    assert seen == sorted(set(seen)), seen  # moved at each step


def test_spelling_lookups_are_kept_under_the_same_generation(settings: Settings) -> None:
    async def scenario() -> list[int]:
        store = await _opened(settings)
        looked: list[int] = []
        lookup = store.speller._lookup

        async def counted(typed: list[str]) -> list[WordInfo]:
            looked.append(1)
            return await lookup(typed)

        store.speller._lookup = counted  # type: ignore[method-assign]
        try:
            await _write(store, "orders_daily")
            await _known(store)
            first = await store.speller.lookup(["ordres"])
            again = await store.speller.lookup(["ordres"])
            assert [c.term for c in first[0].candidates] == ["orders"]
            assert again == first
            seen = [len(looked)]
            await _write(store, "ordres_typo")  # the word is now in the index
            after = await store.speller.lookup(["ordres"])
            assert after[0].uses == 1
            return [*seen, len(looked)]
        finally:
            await store.close()

    assert asyncio.run(scenario()) == [1, 2]


@pytest.mark.parametrize("paid_by", ["the next poll", "stop"])
def test_a_move_that_failed_is_made_later(settings: Settings, paid_by: str) -> None:
    """MongoDB unreachable just after an index change: the counter moves once it answers
    (by the poller, or by ``stop`` in a process that ends first, as ``cairn reindex``), so
    other processes see the change late, not never."""
    from pymongo import AsyncMongoClient

    async def scenario() -> int:
        dead: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            f"mongodb://127.0.0.1:{refused_port()}", serverSelectionTimeoutMS=200
        )
        store = await _opened(settings)
        poll = 0.05 if paid_by == "the next poll" else 3600
        generation = IndexGeneration(dead["nowhere"]["cairn_meta"], poll_seconds=poll)
        generation.start()
        live = store.db.get_collection("generation_test")
        try:
            await generation.moved()  # logged, owed
            await asyncio.sleep(0.5)  # the poller's tries fail too
            # MongoDB answers again (here: the same generation pointed at a live server).
            generation.meta = live
            if paid_by == "the next poll":
                deadline = time.monotonic() + 30
                while generation.current() is None:
                    assert time.monotonic() < deadline, "never read again"
                    await asyncio.sleep(0.05)
            else:
                await generation.stop()
            found = await live.find_one({"_id": KEY})
            return 0 if found is None else int(found["n"])
        finally:
            await generation.stop()
            await store.close()
            await dead.close()

    assert asyncio.run(scenario()) == 1


def test_a_search_during_a_write_keeps_nothing_the_write_makes_untrue(settings: Settings) -> None:
    """A search that reads the index while a write is being indexed must not leave its
    answer where later searches find it: the generation moves after the change is
    searchable, never before."""

    async def scenario() -> list[str]:
        store = await _opened(settings)
        bulk = store.index.bulk

        async def search_then_bulk(docs: list[dict[str, Any]], **kw: Any) -> Any:
            # A search in the middle of the write, before Elasticsearch has the asset.
            assert hit_ids(await store.search(QUERY)) == ["orders_daily"]
            return await bulk(docs, **kw)

        try:
            await _write(store, "orders_daily")
            await _known(store)
            # The shared counter as read now, for the rest of the test: only this
            # process's own moves tell the answers apart.
            store.generation.poll_seconds = store.generation.max_age = 3600
            await asyncio.sleep(0.5)  # its last read done, the poller sleeps for good
            store.index.bulk = search_then_bulk  # type: ignore[method-assign]
            await _write(store, "orders_weekly")
            store.index.bulk = bulk  # type: ignore[method-assign]
            return sorted(hit_ids(await store.search(QUERY)))
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ["orders_daily", "orders_weekly"]


def test_a_counter_made_afresh_matches_no_earlier_generation(settings: Settings) -> None:
    """Its collection dropped, the counter restarts: answers kept under the old one are
    not handed out, however the counts compare."""

    async def scenario() -> int:
        store = await _opened(settings)
        asked = _Asked(store)
        try:
            await _write(store, "orders_daily")
            await _known(store)
            await store.search(QUERY)
            before = store.generation.current()
            assert before is not None
            # The same count as before, made afresh (another epoch), with no move here.
            meta = store.db.get_collection("cairn_meta")
            await meta.replace_one({"_id": KEY}, {"n": before[2], "epoch": "remade"})
            deadline = time.monotonic() + 30
            while (now := store.generation.current()) is None or now[1] != "remade":
                assert time.monotonic() < deadline, "never read again"
                await asyncio.sleep(0.05)
            assert now[0] == before[0] and now[2] == before[2]
            await store.search(QUERY)
            return asked.ran
        finally:
            await store.close()

    assert asyncio.run(scenario()) == 2

"""Values the embedded catalogue keeps until the next commit to its file
(``catalogue_service.backends.generations``): the spelling lookups of a misspelt search are
made once per write generation, and any commit (this store's or another process's on the
same file) makes them afresh."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from catalogue_service.backends.generations import PerGeneration
from catalogue_service.backends.sqlite import SQLiteStore
from catalogue_service.spelling.base import WordInfo
from tests.conftest import open_store, write_assets


def test_a_value_belongs_to_its_generation() -> None:
    kept: PerGeneration[str, int] = PerGeneration(4)
    kept.put("a", 7, 1)
    assert kept.get("a", 7) == 1
    assert kept.get("a", 8) is None  # a commit since: computed again
    assert kept.get("b", 7) is None
    kept.put("a", 8, 2)
    assert kept.get("a", 8) == 2
    assert kept.get("a", 7) is None


def test_the_least_recently_used_goes_first() -> None:
    kept: PerGeneration[str, int] = PerGeneration(2)
    kept.put("a", 1, 1)
    kept.put("b", 1, 2)
    assert kept.get("a", 1) == 1  # "b" is now the older one
    kept.put("c", 1, 3)
    assert len(kept) == 2
    assert kept.get("b", 1) is None
    assert (kept.get("a", 1), kept.get("c", 1)) == (1, 3)


def test_clear_drops_everything() -> None:
    kept: PerGeneration[str, int] = PerGeneration(4)
    kept.put("a", 1, 1)
    kept.put("b", 1, 2)
    kept.clear()
    assert len(kept) == 0
    assert kept.get("a", 1) is None


def test_size_zero_keeps_nothing() -> None:
    kept: PerGeneration[str, int] = PerGeneration(0)
    kept.put("a", 1, 1)
    assert kept.get("a", 1) is None
    assert len(kept) == 0


class _Lookups:
    """Counts the speller's lookups that reached SQLite."""

    def __init__(self, store: SQLiteStore) -> None:
        self.ran = 0
        speller = store.speller
        lookup = speller._lookup

        def counted(conn: sqlite3.Connection, typed: list[str]) -> list[WordInfo]:
            self.ran += 1
            return lookup(conn, typed)

        speller._lookup = counted  # type: ignore[method-assign]


def _candidates(store: SQLiteStore, typed: list[str]) -> list[list[tuple[str, int]]]:
    infos = asyncio.run(store.speller.lookup(typed))
    return [[(c.term, c.uses) for c in info.candidates] for info in infos]


def _asset(key: str, name: str, description: str = "") -> dict[str, Any]:
    return {"id": key, "name": name, "type": "dataset", "description": description}


def test_a_lookup_asked_again_is_not_made_again(tmp_path: Path) -> None:
    store = open_store(tmp_path / "c.db")
    lookups = _Lookups(store)
    try:
        write_assets(store, [_asset("a", "churn_model", "weekly churn model")])
        first = _candidates(store, ["churn", "modle"])
        assert first == [[], [("model", 2)]]
        assert _candidates(store, ["churn", "modle"]) == first
        assert lookups.ran == 1
        assert _candidates(store, ["modle"]) == [[("model", 2)]]  # another query, its own
        assert lookups.ran == 2

        # A commit adds a closer word and counts the known one again: looked up afresh.
        write_assets(store, [_asset("b", "model_scores", "model in scoring mode")])
        assert _candidates(store, ["churn", "modle"]) == [[], [("model", 4), ("mode", 1)]]
        assert lookups.ran == 3
    finally:
        asyncio.run(store.close())


def test_a_commit_by_another_process_on_the_file_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    reader, writer = open_store(path), open_store(path)
    try:
        write_assets(writer, [_asset("a", "sales_daily")])
        assert _candidates(reader, ["salse"]) == [[("sales", 1)]]
        # The reader's own process made no commit: only the file says anything changed.
        write_assets(writer, [_asset("b", "sales_weekly", "sales by week")])
        assert _candidates(reader, ["salse"]) == [[("sales", 3)]]
    finally:
        asyncio.run(reader.close())
        asyncio.run(writer.close())

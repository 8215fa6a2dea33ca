"""The benchmarks' references that read the store's own code (bench_search's raw-SQLite
replay): they run against a catalogue file beside a running catalogue, so a change to the
store's private search path fails here, not first in a benchmark run. Also the search
benchmark's server warm-up, which must never ask what a timed run asks."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from benchmarks.bench_search import (
    COMBINED,
    combined_values,
    engine_cpu_ms,
    query_values,
    service_statements,
    warmup_values,
)
from benchmarks.gen_tree import make_assets
from cairn.settings import Settings
from catalogue_service.backends.sqlite import SQLiteStore
from catalogue_service.service import Catalogue


def test_the_raw_sqlite_reference_replays_the_stores_search(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.db"
    store = SQLiteStore(path)
    asyncio.run(store.open())
    try:
        items = [
            {"name": f"sales_{i}", "type": "dataset", "description": "daily sales", "tags": ["s"]}
            for i in range(30)
        ]
        assert asyncio.run(Catalogue(store, Settings()).bulk(items)).created == 30
        statements = service_statements(path, "sales")
        assert statements and any("assets_fts MATCH" in sql for sql, _ in statements)
        conn = sqlite3.connect(path)
        try:  # the recorded statements find what the service would list
            rows = [conn.execute(sql, params).fetchall() for sql, params in statements]
        finally:
            conn.close()
        assert len(rows[0]) == 21  # a page of 20 and one more (is there a next page?)
        assert engine_cpu_ms(path, ["/api/v1/assets?q=sales", "/api/v1/assets?tag=s"], 1) > 0
    finally:
        asyncio.run(store.close())


def test_the_search_benchmarks_warm_up_never_asks_a_timed_search() -> None:
    # A warm-up search asked again later would be answered from the kept answers (or
    # counts), and the timed figure would be that of a repeat, not of a first ask.
    assets = make_assets(5_000)
    timed = query_values(assets, 200)
    paths = warmup_values(assets, timed, 600)
    assert len(paths) == len(set(paths)) == 600
    asked = {path for values in timed.values() for path in values}
    for path in paths:
        params = parse_qs(urlsplit(path).query)
        assert set(params) <= {"name", "q", "type"}
        base = {k: v for k, v in params.items() if k != "type"}
        assert not {p for p in asked if parse_qs(urlsplit(p).query) == base}, path
    # The filter combinations are first asks too: none asked before, none twice.
    before = asked | set(paths)
    combined = combined_values(assets, 50, set(before))
    assert list(combined) == list(COMBINED)
    for kind, values in combined.items():
        assert len(values) == len(set(values)) == 50, kind
        assert not set(values) & before, kind
        assert all(len(parse_qs(urlsplit(v).query)) == 2 for v in values), kind

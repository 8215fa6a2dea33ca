"""A bounded mixed read/write load (64 concurrent clients) on a real ``cairn serve catalogue``
process, on both backends: every acknowledged write reads back as acknowledged, by id and in
search. No timing is asserted; benchmarks/bench_writes.py measures the same load."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import mixed_load
from tests.conftest import ProcessServer, cairn_env, searched_ids

CLIENTS = 64
# Fixed counts, so the run stops by itself: about 20-40 s on a busy 2-core machine. FerretDB
# (the tests' MongoDB-wire server, on SQLite) serves writes several times slower.
REQUESTS_PER_CLIENT = {"sqlite": 20, "mongo": 5}
SEARCH_CATCH_UP_S = 60  # the mongo backend's index may lag a write it could not index inline


@pytest.fixture
def served(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[ProcessServer]:
    extra = request.getfixturevalue("production_servers").env() if backend == "mongo" else {}
    env = cairn_env(tmp_path / "data", CAIRN_LOG_LEVEL="warning", **extra)
    server = ProcessServer("catalogue", env, tmp_path / "catalogue.log").start(timeout=60)
    yield server
    server.stop()


def test_mixed_load_keeps_every_acknowledged_write(served: ProcessServer, backend: str) -> None:
    result = asyncio.run(mixed_load.run(served.url, CLIENTS, REQUESTS_PER_CLIENT[backend]))
    assert not result.failures, result.failures[:5]
    assert len(result.acked) > CLIENTS * 2
    assert mixed_load.mismatches(served.url, result) == []
    live = {a for a, e in result.acked.items() if not e.deleted}
    deadline = time.monotonic() + SEARCH_CATCH_UP_S
    with httpx.Client(base_url=served.url, timeout=30) as client:
        while (found := searched_ids(client, tag=mixed_load.TAG)) != live:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert found == live, (sorted(found - live)[:5], sorted(live - found)[:5])
    assert "Traceback" not in served.logs()

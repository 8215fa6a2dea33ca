"""Nothing acknowledged is lost: kill -9 the catalogue mid-ingest, restart, count (per backend).

On the mongo backend the count comes from search, so it also proves that the index catches up
on writes whose inline indexing the kill cut short.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ProcessServer, cairn_env, searched_ids

# Over two of the catalogue's write chunks (WRITE_CHUNK): the kill lands on requests that are
# validated and written chunk by chunk in one transaction, with WAL copies in the background.
BATCH = 1200


def test_kill_9_during_bulk_ingest_loses_no_acknowledged_asset(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    extra = request.getfixturevalue("production_servers").env() if backend == "mongo" else {}
    env = cairn_env(tmp_path / "data", **extra)
    server = ProcessServer("catalogue", env, tmp_path / "cat.log").start()
    acknowledged: list[str] = []
    stop = threading.Event()
    errors: list[str] = []

    def ingest() -> None:
        n = 0
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set() and n < 400:
                batch = [
                    {"id": f"a{n}-{i}", "name": f"asset_{n}_{i}", "type": "dataset", "tags": ["t"]}
                    for i in range(BATCH)
                ]
                n += 1
                try:
                    response = client.post("/api/v1/assets/bulk", json=batch)
                except httpx.TransportError:
                    return  # the server died mid-request: this batch was never acknowledged
                if response.status_code != 200:
                    errors.append(response.text)
                    return
                acknowledged.extend(
                    r["id"] for r in response.json()["results"] if r["status"] == "created"
                )

    writer = threading.Thread(target=ingest)
    writer.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 2500 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()
    stop.set()
    writer.join(timeout=30)
    assert not errors, errors[:1]
    assert len(acknowledged) >= 2500

    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            found = searched_ids(client, tag="t")
            # The restarted process's indexer catches up on intents the kill left behind.
            deadline = time.monotonic() + 60
            while not set(acknowledged) <= found and time.monotonic() < deadline:
                time.sleep(0.5)
                found = searched_ids(client, tag="t")
            for asset_id in acknowledged[:: len(acknowledged) // 20]:
                assert client.get(f"/api/v1/assets/{asset_id}").status_code == 200
        missing = set(acknowledged) - found
        assert not missing, f"{len(missing)} acknowledged assets lost, e.g. {sorted(missing)[:3]}"
        # Beyond the acknowledged, only the request the kill cut short (SQLite applies it
        # whole or not at all; MongoDB's bulk insert is not one transaction).
        extra_found = len(found) - len(acknowledged)
        assert extra_found in (0, BATCH) if backend == "sqlite" else 0 <= extra_found <= BATCH
    finally:
        server.stop()

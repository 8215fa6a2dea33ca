"""Other processes on the embedded store's file.

One holding the write lock (a second server on the same file, a backup, a ``sqlite3`` shell):
a write that waited the whole busy timeout answers 503 saying so, the connection goes on
serving, and writes work again once the lock is released. Two catalogue servers on one file:
each sees the other's writes in its totals and facets at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cairn.settings import Settings
from tests.conftest import ProcessServer, ThreadServer, cairn_env

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


@contextmanager
def write_lock_held(db: Path) -> Iterator[None]:
    """Another process holds ``db``'s write lock until the block ends."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "locked"
            yield
        finally:
            holder.stdin.close()  # the holder rolls back and exits
            holder.wait(timeout=30)


def assert_locked_answer(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "locked by another" in response.json()["detail"]


def test_catalogue_write_behind_another_process_lock_is_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(backend="sqlite", data_dir=tmp_path / "data")
    from catalogue_service.app import create_app

    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as api,
    ):
        assert api.put("/assets/a", json={"name": "a", "type": "dataset"}).status_code == 201
        with write_lock_held(settings.catalogue_db):
            assert_locked_answer(api.put("/assets/b", json={"name": "b", "type": "dataset"}))
            # The same keep-alive connection goes on serving reads meanwhile.
            assert api.get("/assets/a").status_code == 200
            assert api.get("/assets/b").status_code == 404
        assert api.put("/assets/b", json={"name": "b", "type": "dataset"}).status_code == 201
    assert "unhandled error" not in caplog.text


def test_feature_store_write_behind_another_process_lock_is_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(backend="sqlite", data_dir=tmp_path / "data")
    from featurestore_service.app import create_app

    def version(value: int) -> dict:
        return {"name": "churn", "features": [{"name": "f", "dtype": "int64", "value": value}]}

    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as api,
    ):
        assert api.post("/featuresets", json=version(1)).status_code == 201
        with write_lock_held(settings.featurestore_db):
            assert_locked_answer(api.post("/featuresets", json=version(2)))
            assert api.get("/featuresets/churn").json()["version"] == 1
        created = api.post("/featuresets", json=version(2))
        assert created.status_code == 201 and created.json()["version"] == 2
    assert "unhandled error" not in caplog.text


def test_two_catalogue_processes_on_one_file_count_each_others_writes(tmp_path: Path) -> None:
    env = cairn_env(tmp_path / "data")
    first = ProcessServer("catalogue", env, tmp_path / "first.log").start()
    second = ProcessServer("catalogue", env, tmp_path / "second.log")
    try:
        second.start()
        with (
            httpx.Client(base_url=first.url + "/api/v1", timeout=30) as one,
            httpx.Client(base_url=second.url + "/api/v1", timeout=30) as two,
        ):
            asset = {"name": "orders", "type": "dataset", "tags": ["gold"]}
            assert one.put("/assets/orders", json=asset).status_code == 201
            queries: list[dict[str, str]] = [{"tag": "gold"}, {"q": "orders"}, {}]
            for params in queries:  # the first process counts (and keeps the counts)
                assert one.get("/assets", params=params).json()["total"] == 1

            assert two.put("/assets/refunds", json={**asset, "name": "refunds"}).status_code == 201
            assert two.delete("/assets/orders").status_code == 200

            for params in queries:
                page = one.get("/assets", params=params).json()
                ids = [item["id"] for item in page["items"]]
                assert page["total"] == len(ids), (params, page)
                assert page["facets"]["tags"] == ({"gold": 1} if ids else {}), (params, page)
            assert [
                i["id"] for i in one.get("/assets", params={"tag": "gold"}).json()["items"]
            ] == ["refunds"]
    finally:
        second.stop()
        first.stop()

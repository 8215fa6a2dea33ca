"""The mongo backend when its servers fail: real FerretDB and Elasticsearch, stopped mid-run.

- Elasticsearch down: writes are still acknowledged, search answers 503 with a body that says
  why, /readyz stays ready and says search is degraded, and after a restart the index catches
  up with zero missing documents.
- MongoDB down: reads and writes answer 503 with a clear body, /readyz is not ready, and the
  refused write is not half-there afterwards.
- ``cairn reindex`` rebuilds a lost index from MongoDB.
- A revision indexed late never replaces a newer one in Elasticsearch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cairn.client import AsyncCatalogueClient
from cairn.client._http import Health
from tests.conftest import ProcessServer, cairn_env, run_cairn, searched_ids
from tests.servers.fixtures import ProductionServers
from tests.servers.processes import patient


@pytest.fixture
def mongo_catalogue(
    production_servers: ProductionServers, tmp_path: Path
) -> Iterator[tuple[ProcessServer, dict[str, str]]]:
    env = cairn_env(tmp_path / "data", **production_servers.env())
    server = ProcessServer("catalogue", env, tmp_path / "catalogue.log").start()
    try:
        yield server, env
    finally:
        server.stop()


def batch(prefix: str, count: int, tag: str = "outage") -> list[dict]:
    return [
        {"id": f"{prefix}-{i}", "name": f"{prefix}_{i}", "type": "dataset", "tags": [tag]}
        for i in range(count)
    ]


def tagged_total(client: httpx.Client, tag: str) -> int:
    response = client.get("/api/v1/assets", params={"tag": tag, "limit": 1})
    assert response.status_code == 200, response.text
    return int(response.json()["total"])


async def probe(url: str) -> Health:
    async with AsyncCatalogueClient(url) as client:
        return await client.probe(timeout=10)


def wait_for(check, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + patient(timeout)
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"not true after {timeout}s")


def test_elasticsearch_outage_keeps_writes_and_catches_up(
    production_servers: ProductionServers, mongo_catalogue: tuple[ProcessServer, dict[str, str]]
) -> None:
    server, _ = mongo_catalogue
    es = production_servers.es
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/api/v1/assets/bulk", json=batch("before", 200)).status_code == 200
        assert tagged_total(client, "outage") == 200

        es.stop()
        try:
            during = client.post("/api/v1/assets/bulk", json=batch("during", 300))
            assert during.status_code == 200, during.text
            assert during.json()["created"] == 300
            single = client.put("/api/v1/assets/solo", json={"name": "solo", "type": "model"})
            assert single.status_code == 201, single.text
            # The source of truth still answers reads by id and name.
            assert client.get("/api/v1/assets/during-7").json()["name"] == "during_7"
            assert client.get("/api/v1/assets/by-name/solo").status_code == 200

            search = client.get("/api/v1/assets", params={"q": "during"})
            assert search.status_code == 503
            assert search.headers["content-type"].startswith("application/problem+json")
            problem = search.json()
            assert (
                "Elasticsearch" in problem["detail"]
                and "Writes are still accepted" in (problem["detail"])
            )
            # Still ready (writes and reads by id go on), and it says what does not work.
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert "Elasticsearch cannot be reached" in ready.json()["degraded"], ready.text
            # What the web UI's status page shows ("Ready: yes, but: ...").
            health = asyncio.run(probe(server.url))
            assert health.ok and "Elasticsearch cannot be reached" in health.degraded
        finally:
            es.start()
        wait_for(lambda: "degraded" not in client.get("/readyz").json())

        # The indexer finds the intents the failed inline indexing left and catches up; it works
        # through them in batches, so the single PUT may come after the bulk's 300.
        def solo_found() -> bool:
            found = client.get("/api/v1/assets", params={"name": "solo"}).json()["items"]
            return [item["id"] for item in found] == ["solo"]

        wait_for(lambda: tagged_total(client, "outage") == 500 and solo_found())
        ids = searched_ids(client, tag="outage")
        expected = {f"before-{i}" for i in range(200)} | {f"during-{i}" for i in range(300)}
        assert ids == expected
    assert "Elasticsearch indexing deferred" in server.logs()


def test_mongodb_outage_answers_503_and_writes_nothing(
    production_servers: ProductionServers, mongo_catalogue: tuple[ProcessServer, dict[str, str]]
) -> None:
    server, _ = mongo_catalogue
    mongo = production_servers.mongo
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/api/v1/assets/bulk", json=batch("kept", 20)).status_code == 200
        mongo.stop()
        try:
            refused = client.post("/api/v1/assets/bulk", json=batch("lost", 20))
            assert refused.status_code == 503, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            detail = refused.json()["detail"]
            assert "MongoDB cannot be reached" in detail and "nothing was half-written" in detail
            read = client.get("/api/v1/assets/kept-1")
            assert read.status_code == 503 and "MongoDB" in read.json()["detail"]
            ready = client.get("/readyz")
            assert ready.status_code == 503 and "MongoDB" in ready.json()["detail"]
        finally:
            mongo.start()
        wait_for(lambda: client.get("/readyz").status_code == 200)
        assert client.get("/api/v1/assets/kept-3").status_code == 200
        assert client.get("/api/v1/assets/lost-3").status_code == 404
        assert tagged_total(client, "outage") == 20
        again = client.post("/api/v1/assets/bulk", json=batch("lost", 20))
        assert again.status_code == 200 and again.json()["created"] == 20


def test_reindex_rebuilds_a_lost_index(
    production_servers: ProductionServers, mongo_catalogue: tuple[ProcessServer, dict[str, str]]
) -> None:
    server, env = mongo_catalogue
    with httpx.Client(base_url=server.url, timeout=30) as client:
        items = batch("re", 1500, tag="rebuilt")
        for start in range(0, 1500, 500):
            assert client.post("/api/v1/assets/bulk", json=items[start : start + 500]).is_success
        # Lose the index behind the alias, as after a wiped Elasticsearch volume.
        alias = env["CAIRN_ES_INDEX"]
        es_url = production_servers.es.url
        indexes = httpx.get(f"{es_url}/_alias/{alias}").json()
        for name in indexes:
            assert httpx.delete(f"{es_url}/{name}").is_success
        lost = client.get("/api/v1/assets", params={"tag": "rebuilt"})
        assert lost.status_code == 503 and "cairn reindex" in lost.json()["detail"]
        ready = client.get("/readyz")
        assert ready.status_code == 200 and "cairn reindex" in ready.json()["degraded"]
        # A write meanwhile is kept, and must not create a stray index under the alias's name.
        late = client.put("/api/v1/assets/late", json={"name": "late", "type": "dataset"})
        assert late.status_code == 201, late.text
        assert httpx.head(f"{es_url}/{alias}").status_code == 404

        done = run_cairn("reindex", env=env)
        assert done.returncode == 0, done.stderr
        assert "Reindexed 1501 assets on the mongo backend" in done.stdout
        # The Elasticsearch client's aiohttp session is closed, not left to the collector.
        assert "Unclosed" not in done.stderr, done.stderr
        assert tagged_total(client, "rebuilt") == 1500
        assert client.get("/readyz").json() == {"status": "ready"}
        found = client.get("/api/v1/assets", params={"name": "late"}).json()["items"]
        assert [item["id"] for item in found] == ["late"]
        new_indexes = set(httpx.get(f"{es_url}/_alias/{alias}").json())
        assert len(new_indexes) == 1 and not new_indexes & set(indexes)
        hit = client.get("/api/v1/assets", params={"q": "re_1499"}).json()["items"][0]
        assert hit["id"] == "re-1499"


def test_reindex_says_what_failed_when_the_index_is_unreachable(tmp_path: Path) -> None:
    env = cairn_env(
        tmp_path / "data",
        CAIRN_BACKEND="mongo",
        CAIRN_MONGO_URL="mongodb://127.0.0.1:9",
        CAIRN_MONGO_TIMEOUT="1",
        CAIRN_ES_URL="http://127.0.0.1:9",
    )
    done = run_cairn("reindex", env=env)
    assert done.returncode == 1
    assert "reindex failed" in done.stderr and "MongoDB cannot be reached" in done.stderr
    assert "Unclosed" not in done.stderr, done.stderr


def test_a_late_index_of_an_older_revision_never_replaces_the_newer(
    production_servers: ProductionServers,
) -> None:
    # README (production backends): documents carry their revision as an external version, so
    # a late indexing (a retry, a second catalogue process) never replaces a newer revision.
    import asyncio
    import uuid

    from catalogue_service.backends.es_index import SearchIndex

    def stored(revision: int, name: str) -> dict[str, object]:
        return {
            "id": "late-1",
            "name": name,
            "type": "dataset",
            "revision": revision,
            "updated_at": "2026-01-01T00:00:00+00:00",
        }

    async def run() -> None:
        index = SearchIndex(production_servers.es.url, f"cairn-late-{uuid.uuid4().hex[:12]}")
        try:
            await index.ensure()
            (newer,) = await index.bulk([stored(2, "newer_name")], refresh=True)
            (late,) = await index.bulk([stored(1, "older_name")], refresh=True)
            assert newer.ok and late.ok  # refused as outdated, which is as good as done
            found = await index.es.get(index=index.alias, id="late-1")
            assert found["_version"] == 2 and found["_source"]["name"] == "newer_name"
        finally:
            await index.drop(await index.current_indexes())
            await index.close()

    asyncio.run(run())

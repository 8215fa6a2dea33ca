"""Searches on the mongo backend ask Elasticsearch to keep their shard results (its request
cache), and a write is still seen by the next search: real FerretDB and Elasticsearch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ThreadServer, backend_settings


@pytest.fixture
def mongo_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[httpx.Client, str]]:
    from catalogue_service.app import create_app

    # Answers the catalogue keeps itself (test_catalogue_kept_answers_mongo.py) would never
    # reach Elasticsearch again: this is about what it keeps, for the answers not kept.
    settings = backend_settings(request, "mongo", data_dir=tmp_path / "data", search_cache_mib=0)
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=30) as client,
    ):
        yield client, f"{settings.es_url}/{settings.es_index}"


def _cache_hits(index_url: str) -> int:
    stats = httpx.get(f"{index_url}/_stats/request_cache", timeout=30).json()
    return int(stats["_all"]["total"]["request_cache"]["hit_count"])


def test_a_search_asked_again_is_kept_by_elasticsearch_until_a_write(
    mongo_api: tuple[httpx.Client, str],
) -> None:
    api, index_url = mongo_api
    items = [
        {"id": f"kept-{i}", "name": f"kept_{i:02d}", "type": "dataset", "tags": ["kept"]}
        for i in range(30)
    ]
    assert api.post("/assets/bulk", json=items).status_code == 200
    params = {"tag": "kept", "limit": 5}
    first = api.get("/assets", params=params)
    assert first.status_code == 200, first.text
    assert first.json()["total"] == 30
    hits = _cache_hits(index_url)

    again = api.get("/assets", params=params)
    assert again.json() == first.json()
    assert _cache_hits(index_url) > hits  # answered from Elasticsearch's request cache

    # The write refreshes the index, which drops what was kept: the new asset is found.
    put = api.put(
        "/assets/kept-new", json={"name": "kept_00a", "type": "dataset", "tags": ["kept"]}
    )
    assert put.status_code in (200, 201), put.text
    after = api.get("/assets", params=params).json()
    assert after["total"] == 31
    assert [item["name"] for item in after["items"]][:2] == ["kept_00", "kept_00a"]

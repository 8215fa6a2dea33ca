"""``GET /api/v1/assets`` is answered by ``catalogue_service.api.fast_search`` in front of
FastAPI's routing: the shared plumbing (metrics by route, CORS, problem+json) must still
apply, and the methods it leaves to the FastAPI route must still work."""

from __future__ import annotations

from pathlib import Path

import httpx

from cairn.settings import Settings
from catalogue_service.app import create_app
from tests.conftest import ThreadServer


def test_search_keeps_the_shared_plumbing(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", cors_origins=["http://ui.example"])
    with ThreadServer(create_app(settings)) as server:
        url = server.url + "/api/v1/assets"
        seeded = httpx.post(
            server.url + "/api/v1/assets/bulk",
            json=[{"name": "sales_daily", "type": "dataset", "tags": ["sales"]}],
        )
        assert seeded.status_code == 200, seeded.text
        found = httpx.get(url, params={"tag": "sales"}, headers={"origin": "http://ui.example"})
        assert found.status_code == 200
        assert found.headers["content-type"] == "application/json"
        assert found.headers["access-control-allow-origin"] == "http://ui.example"
        body = found.json()
        assert [i["name"] for i in body["items"]] == ["sales_daily"]
        assert body["total"] == 1 and body["facets"]["tags"] == {"sales": 1}

        bad = httpx.get(url, params={"limit": "many"})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"] == [
            {"field": "limit", "message": "'many' is not a whole number"}
        ]
        cursor = httpx.get(url, params={"cursor": "not-a-cursor"})
        assert cursor.status_code == 400 and cursor.json()["instance"] == "/api/v1/assets"

        # Other methods are not on the fast path: FastAPI's routing answers them as before.
        for refused in (httpx.head(url), httpx.post(url)):
            assert refused.status_code == 405
            assert "GET" in refused.headers["allow"]

        metrics = httpx.get(server.url + "/metrics").text
        assert 'route="/api/v1/assets",service="catalogue",status="200"' in metrics
        assert 'route="/api/v1/assets",service="catalogue",status="422"' in metrics

"""``GET /api/v1/assets`` is answered by ``catalogue_service.api.fast_search`` in front of
FastAPI's routing: the shared plumbing (metrics by route, CORS, problem+json) must still
apply, and the methods it leaves to the FastAPI route must still work."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

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

        # Without an Origin it is answered in front of the stack, marked as the CORS
        # middleware marks such answers (a cache must not hand it to another origin).
        plain = httpx.get(url, params={"tag": "sales"})
        assert plain.headers["vary"] == "Origin" and plain.content == found.content
        bad = httpx.get(url, params={"limit": "many"})
        assert bad.status_code == 422
        assert bad.headers["vary"] == "Origin"
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"] == [
            {"field": "limit", "message": "'many' is not a whole number"}
        ]
        cursor = httpx.get(url, params={"cursor": "not-a-cursor"})
        assert cursor.status_code == 400 and cursor.json()["instance"] == "/api/v1/assets"

        # Other methods are not on the fast path: FastAPI's routing answers them as before;
        # HEAD is the GET without its body (cairn.web.CairnApp).
        refused = httpx.post(url)
        assert refused.status_code == 405 and "GET" in refused.headers["allow"]
        head = httpx.head(url, params={"tag": "sales"}, headers={"origin": "http://ui.example"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == found.headers["content-length"]

        metrics = httpx.get(server.url + "/metrics").text
        assert 'route="/api/v1/assets",service="catalogue",status="200"' in metrics
        assert 'route="/api/v1/assets",service="catalogue",status="422"' in metrics


QUERIES: list[dict[str, str] | list[tuple[str, str]]] = [
    {"name": "sales_"},
    {"name": "SALES_D", "facets": "false"},
    {"tag": "sales"},
    [("tag", "sales"), ("tag", "daily"), ("type", "dataset")],
    {"q": "daily"},
    {"q": "dialy"},  # a typo: the corrected query answers, marked fuzzy
    {"q": "sales revenue", "limit": "2"},
    {"q": "nothingmatches"},
    {"owner": "team-a", "label": "tier=gold"},
    {"include_deleted": "true", "limit": "1"},
    {"limit": "many"},
    {"limit": "0"},
    {"cursor": "not-a-cursor"},
    {"facets": "maybe"},
    {"q": "x" * 1025},
]


def _seed(url: str) -> None:
    items = [
        {
            "name": f"sales_{kind}_{i}",
            "type": "dataset" if i % 2 else "table",
            "tags": ["sales", kind],
            "owners": ["team-a"] if i % 3 == 0 else [],
            "labels": {"tier": "gold"} if i % 4 == 0 else {},
            "description": f"{kind} sales revenue for region {i}",
        }
        for kind in ("daily", "weekly")
        for i in range(12)
    ]
    items.append({"name": "gone", "type": "dataset", "tags": ["sales"], "deleted": True})
    seeded = httpx.post(url + "/api/v1/assets/bulk", json=items)
    assert seeded.status_code == 200, seeded.text


def _answers(url: str) -> list[tuple[int, str, bytes]]:
    found = []
    with httpx.Client(base_url=url) as client:
        for query in QUERIES:
            params = list(query.items()) if isinstance(query, dict) else query
            page = client.get("/api/v1/assets", params=params)
            found.append((page.status_code, page.headers["content-type"], page.content))
            cursor = page.json().get("next_cursor") if page.status_code == 200 else None
            if cursor:
                more = client.get("/api/v1/assets", params=[*params, ("cursor", cursor)])
                found.append((more.status_code, more.headers["content-type"], more.content))
    return found


def test_fast_path_answers_byte_for_byte_as_the_route(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"))
    with ThreadServer(app) as server:
        _seed(server.url)
        fast = _answers(server.url)
        # Without the front handler every request goes through FastAPI's stack and route.
        front = dict(app.front)
        app.front.clear()
        generic = _answers(server.url)
        app.front.update(front)
    assert [status for status, _, _ in fast].count(200) >= 10
    assert any(b'"fuzzy":true' in body for _, _, body in fast)
    assert fast == generic


def test_fast_path_key_check_answers_as_the_route(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", api_keys=["k1"], read_needs_key=True)
    app = create_app(settings)
    with ThreadServer(app) as server:
        url = server.url + "/api/v1/assets"
        keyed = {"authorization": "Bearer k1"}
        answers = []
        for _ in range(2):
            answers.append(
                [
                    (r.status_code, r.content)
                    for r in (
                        httpx.get(url),
                        httpx.get(url, headers={"authorization": "Bearer wrong"}),
                        httpx.get(url, params={"q": "x"}, headers=keyed),
                    )
                ]
            )
            app.front.clear()
    assert [status for status, _ in answers[0]] == [401, 401, 200]
    assert answers[0] == answers[1]


def test_search_answer_is_the_plain_encoding_with_counts_cached_or_not(tmp_path: Path) -> None:
    """The spliced answer (documents as stored, facets as the count cache kept them encoded)
    is byte for byte what encoding the whole answer as one object gives."""
    app = create_app(Settings(data_dir=tmp_path / "data"))
    with ThreadServer(app) as server:
        _seed(server.url)
        url = server.url + "/api/v1/assets"
        for params in ({"tag": "sales"}, {"q": "revenue", "limit": "3"}, {"q": "dialy"}):
            first = httpx.get(url, params=params).content  # counts counted
            again = httpx.get(url, params=params).content  # counts from the cache
            assert first == again
            answer = orjson.loads(again)
            assert answer["total"] > 0 and answer["facets"]["tags"]
            assert orjson.dumps(answer) == again


def test_an_unexpected_error_is_the_apps_500_problem_either_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(Settings(data_dir=tmp_path / "data"))

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk caught fire")

    with ThreadServer(app) as server:
        monkeypatch.setattr(app.state.catalogue, "search", broken)
        url = server.url + "/api/v1/assets"
        fast = httpx.get(url, params={"q": "x"})
        app.front.clear()
        generic = httpx.get(url, params={"q": "x"})
        metrics = httpx.get(server.url + "/metrics").text
    for answer in (fast, generic):
        assert answer.status_code == 500
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["title"] == "Internal error"
        assert "fire" not in answer.text  # logged, never echoed
    assert fast.content == generic.content
    assert 'route="/api/v1/assets",service="catalogue",status="500"} 2.0' in metrics

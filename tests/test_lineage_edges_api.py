"""Crawler edge reports (``POST /api/v1/lineage/edges``) and location lookups
(``GET /api/v1/assets/by-location``): a real uvicorn server, once per backend (sqlite; MongoDB
via FerretDB with Elasticsearch)."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from cairn.settings import Settings
from tests.conftest import ThreadServer


def edges(api: httpx.Client, asset_id: str, **params: Any) -> set[tuple[str, str, str]]:
    response = api.get(f"/assets/{asset_id}/lineage", params=params)
    assert response.status_code == 200, response.text
    return {(e["source"], e["target"], e["origin"]) for e in response.json()["edges"]}


def report(api: httpx.Client, upstreams: dict[str, list[str]]) -> dict[str, Any]:
    response = api.post("/lineage/edges", json={"origin": "metastore", "upstreams": upstreams})
    assert response.status_code == 200, response.text
    return dict(response.json())


def put(api: httpx.Client, asset_id: str, **fields: Any) -> None:
    body = {"name": asset_id, "type": "table", **fields}
    assert api.put(f"/assets/{asset_id}", json=body).status_code in (200, 201)


def test_a_report_replaces_the_edges_into_each_named_asset(api: httpx.Client) -> None:
    for name in ("db", "files-a", "files-b", "t1", "t2"):
        put(api, name)
    put(api, "m-t1", depends_on=["t1"])  # a manifest edge out of t1
    receipt = report(api, {"t1": ["db", "files-a", "db"], "t2": ["db"]})
    assert receipt == {"origin": "metastore", "downstream": 2, "edges": 3}
    assert edges(api, "t1", direction="up") == {
        ("db", "t1", "metastore"),
        ("files-a", "t1", "metastore"),
    }
    assert edges(api, "db", direction="down", depth=1) == {
        ("db", "t1", "metastore"),
        ("db", "t2", "metastore"),
    }
    # The table moved: its edges are what the new report says; t2, not named, keeps its own.
    report(api, {"t1": ["db", "files-b"]})
    assert edges(api, "t1", direction="up") == {
        ("db", "t1", "metastore"),
        ("files-b", "t1", "metastore"),
    }
    assert edges(api, "t2", direction="up") == {("db", "t2", "metastore")}
    # An empty list removes them; manifest edges are not the report's to touch.
    report(api, {"t1": []})
    assert edges(api, "t1", direction="up") == set()
    assert edges(api, "t1", direction="down") == {("t1", "m-t1", "manifest")}


def test_edge_ends_may_be_names_as_in_depends_on(api: httpx.Client) -> None:
    # The README's example: "stores" is a name (the bulk write gives it an id), "sales-n" an id.
    created = api.post("/assets/bulk", json=[{"name": "stores-n", "type": "table"}])
    stores = created.json()["results"][0]["id"]
    assert stores != "stores-n"
    put(api, "orders-n", name="orders_named")
    put(api, "sales-n", depends_on=["orders_named"])
    assert report(api, {"sales-n": ["stores-n"]})["edges"] == 1
    lineage = api.get("/assets/sales-n/lineage", params={"direction": "up"}).json()
    assert {(e["source"], e["target"], e["origin"]) for e in lineage["edges"]} == {
        (stores, "sales-n", "metastore"),
        ("orders-n", "sales-n", "manifest"),
    }
    assert stores in {n["id"] for n in lineage["nodes"]} and not lineage["truncated"]
    assert edges(api, stores, direction="down") == {(stores, "sales-n", "metastore")}
    # The downstream may be named by its name too, and is found from either end.
    report(api, {"orders_named": ["stores-n"]})
    assert edges(api, "orders-n", direction="up") == {(stores, "orders-n", "metastore")}
    assert edges(api, stores, direction="down", depth=1) == {
        (stores, "sales-n", "metastore"),
        (stores, "orders-n", "metastore"),
    }


def test_edges_of_a_soft_deleted_table_leave_the_living_lineage(api: httpx.Client) -> None:
    put(api, "db2")
    put(api, "gone")
    report(api, {"gone": ["db2"]})
    assert api.delete("/assets/gone").status_code == 200
    # The database no longer shows the dropped table; the table's own page still says where
    # it came from, as a deleted asset's depends_on does.
    assert edges(api, "db2", direction="down") == set()
    assert edges(api, "gone", direction="up") == {("db2", "gone", "metastore")}


def test_only_crawler_origins_and_bounded_reports_are_taken(api: httpx.Client) -> None:
    for origin in ("openlineage", "manifest", "other"):
        bad = api.post("/lineage/edges", json={"origin": origin, "upstreams": {"a": ["b"]}})
        assert bad.status_code == 422, bad.text
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert "origin" in bad.text
    too_many = api.post(
        "/lineage/edges",
        json={"origin": "metastore", "upstreams": {"a": [f"u{i}" for i in range(1001)]}},
    )
    assert too_many.status_code == 422 and "at most 1000" in too_many.text, too_many.text
    for body in ({"origin": "metastore", "upstreams": {"": ["b"]}}, {"origin": "metastore"}):
        assert api.post("/lineage/edges", json=body).status_code == 422


def test_assets_by_location_lists_crawled_assets_first(api: httpx.Client) -> None:
    where = "s3://lake/loc/orders"
    put(api, "api-orders", location=where)
    crawled = {
        "id": "z-crawled-orders",
        "name": "crawled_orders",
        "type": "dataset",
        "location": where,
        "volume": "s3://lake/loc",
        "manifest_path": "orders/MANIFEST.yaml",
    }
    assert api.post("/assets/bulk", json=[crawled]).json()["created"] == 1
    put(api, "dead-orders", location=where)
    assert api.delete("/assets/dead-orders").status_code == 200
    response = api.get("/assets/by-location", params={"url": [where, "s3://lake/nothing"]})
    assert response.status_code == 200, response.text
    found = response.json()["assets"]
    assert list(found) == [where]
    assert [a["id"] for a in found[where]] == ["z-crawled-orders", "api-orders"]
    # Bad lookups are 4xx that say what to fix.
    assert api.get("/assets/by-location").status_code == 422
    empty = api.get("/assets/by-location", params={"url": ""})
    assert empty.status_code == 400 and "1 to" in empty.json()["detail"]
    many = api.get("/assets/by-location", params={"url": [f"s3://x/{i}" for i in range(501)]})
    assert many.status_code == 400 and "at most 500" in many.json()["detail"]


def test_edge_writes_need_the_api_key(settings: Settings) -> None:
    from catalogue_service.app import create_app

    keyed = settings.model_copy(update={"api_keys": [SecretStr("edge-key")]})
    body = {"origin": "metastore", "upstreams": {"t": ["db"]}}
    with ThreadServer(create_app(keyed)) as server:
        url = server.url + "/api/v1/lineage/edges"
        assert httpx.post(url, json=body).status_code == 401
        wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 401
        ok = httpx.post(url, json=body, headers={"Authorization": "Bearer edge-key"})
        assert ok.status_code == 200

"""Cairn as a drop-in for Mastro: its UI, crawler, Python client and Helm probes, unchanged.

The requests replayed here are the ones Mastro's own code sends (github.com/data-mill-cloud/
mastro): the UI's reducers (``ui/src/components/state/SearchReducer.jsx``,
``AssetDetailReducer.jsx``, ``FeaturesetReducer.jsx``: ``limit: 8, page: 0`` on the first
search, ``#tag`` searches as ``POST /assets/tags``, ``data.message`` read on errors,
``'pagination' in payload`` to tell a page from one asset), the crawler's ``Reconcile`` (one
``PUT`` of the JSON array of Go ``Asset`` structs, zero times and nulls included, Hive tables
with ``labels.schema`` as a map) and the Helm chart's probes. Mastro's Python client is the real
``mastro-fs`` package from PyPI, run against a real server. Storage runs on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mastro_fs.client import MastroFeatureStoreClient
from mastro_fs.dto import Feature, FeatureSet, PaginatedFeatureSets

from cairn.settings import Settings
from catalogue_service.app import create_app as catalogue_app
from featurestore_service.app import create_app as featurestore_app
from tests.conftest import ThreadServer, backend_settings, refused_port

GO_ZERO = "0001-01-01T00:00:00Z"
PAGINATION = {"total", "page", "perPage", "prev", "next", "totalPage"}
MASTRO_ASSET = {
    "last-discovered-at",
    "published-on",
    "name",
    "description",
    "depends-on",
    "type",
    "labels",
    "tags",
    "versions",
}


@pytest.fixture
def cat(settings: Settings) -> Iterator[httpx.Client]:
    with (
        ThreadServer(catalogue_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        yield client


@pytest.fixture
def fs_server(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Iterator[ThreadServer]:
    # No catalogue listens there: registrations stay queued, writes still succeed.
    settings = backend_settings(
        request,
        backend,
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
    )
    with ThreadServer(featurestore_app(settings)) as server:
        yield server


@pytest.fixture
def fs(fs_server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fs_server.url, timeout=60) as client:
        yield client


def go_asset(name: str, type_: str, **fields: Any) -> dict[str, Any]:
    """An asset as Go's encoding/json writes Mastro's Asset struct: every field, unset times
    as Go's zero time, unset slices and maps as null."""
    return {
        "last-discovered-at": GO_ZERO,
        "published-on": GO_ZERO,
        "name": name,
        "description": "",
        "depends-on": None,
        "type": type_,
        "labels": None,
        "tags": None,
        "versions": None,
        **fields,
    }


def ui_search(cat: httpx.Client, query: str) -> tuple[httpx.Response, dict[str, Any]]:
    """SearchReducer's getRequest: one word is a name, a '#' makes a tag list, else text; the
    first search is page 0 with 8 per page."""
    elements = query.split(",")
    if len(elements) == 1 and "#" not in elements[0] and " " not in elements[0]:
        answer = cat.get(f"/asset/name/{elements[0]}")
    elif "#" in elements[0]:
        tags = [e.strip().replace("#", "", 1) for e in elements]
        body = json.dumps({"tags": tags, "limit": 8, "page": 0})
        answer = cat.post(
            "/assets/tags", content=body, headers={"Content-Type": "application/json"}
        )
    else:
        body = json.dumps({"query": query, "limit": 8, "page": 0})
        answer = cat.post(
            "/assets/search", content=body, headers={"Content-Type": "application/json"}
        )
    return answer, answer.json()


def ui_reads_ok(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """What the 'search/fetched' reducer keeps: the page's data, or the one asset."""
    if "pagination" in payload:
        assert set(payload["pagination"]) == PAGINATION
        assert all(isinstance(v, int) for v in payload["pagination"].values())
        return list(payload["data"])
    return [payload]


# --- the crawler --------------------------------------------------------------------------


def test_the_crawlers_bulk_put_lands_with_nested_labels(cat: httpx.Client) -> None:
    schema = {"id": {"Type": "int", "Comment": ""}, "amount": {"Type": "double", "Comment": ""}}
    crawled = [
        go_asset("sales_db", "database"),
        go_asset("sales_db.orders", "table", labels={"schema": schema, "tier": 1}),
        go_asset(
            "model_x",
            "model",
            tags=["ml"],
            labels={"owner.team": "ml", "deps": ["a", "b"]},
            versions={"1700000000": {"model.pkl": "ab" * 32}},
        ),
    ]
    body = json.dumps(crawled)  # resty: SetHeader("Content-Type", ...) then Put(endpoint)
    for endpoint in ("/assets/", "/api/v1/assets/"):
        answer = cat.put(endpoint, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 201, answer.text
        assert answer.json() == crawled  # Mastro echoes the array
    table = cat.get("/asset/name/sales_db.orders").json()
    assert set(table) == MASTRO_ASSET
    assert table["labels"] == {"schema": schema, "tier": 1}
    assert table["last-discovered-at"] != GO_ZERO  # stamped on upsert, as Mastro does
    model = cat.get("/asset/id/model_x").json()  # Mastro's ids are names
    assert model["labels"] == {"owner.team": "ml", "deps": ["a", "b"]}  # keys with '.' kept
    assert model["versions"] == {"1700000000": {"model.pkl": "ab" * 32}}
    # Scalar label values are searchable; nested ones are kept, not indexed.
    found = cat.get("/api/v1/assets", params={"label": "tier:1"}).json()
    assert [a["name"] for a in found["items"]] == ["sales_db.orders"]
    assert cat.get("/api/v1/assets", params={"label": "owner.team:ml"}).json()["total"] == 1
    assert cat.get("/api/v1/assets", params={"label": f"schema:{schema}"}).json()["total"] == 0
    # Cairn's own routes show them too.
    own = cat.get("/api/v1/assets/by-name/sales_db.orders").json()
    assert own["labels"]["schema"] == schema


def test_a_bulk_with_an_invalid_item_is_a_400_after_storing_the_valid_ones(
    cat: httpx.Client,
) -> None:
    answer = cat.put("/assets/", json=[go_asset("good_one", "dataset"), go_asset("", "nope")])
    assert answer.status_code == 400
    error = answer.json()
    assert error["status"] == 400 and error["error"] == "bad_request"
    assert "item 1" in error["message"] and "name" in error["message"]
    assert cat.get("/asset/name/good_one").status_code == 200
    not_a_list = cat.put("/assets/", json={"name": "x"})
    assert not_a_list.status_code == 400 and "array" in not_a_list.json()["message"]


def test_put_asset_answers_201_with_a_list_and_any_content_type(cat: httpx.Client) -> None:
    body = json.dumps(go_asset("one", "report", tags=["t"]))
    answer = cat.put("/asset/", content=body, headers={"Content-Type": "text/plain"})
    assert answer.status_code == 201, answer.text
    (asset,) = answer.json()
    assert set(asset) == MASTRO_ASSET and asset["tags"] == ["t"]
    no_type = cat.put("/asset/", content=body)
    assert no_type.status_code == 201


# --- the UI ---------------------------------------------------------------------------------


def test_the_uis_searches_parse_as_its_reducers_read_them(cat: httpx.Client) -> None:
    assets = [
        go_asset(f"sales_{i}", "dataset", tags=["sales", "gold" if i % 2 else "raw"])
        for i in range(10)
    ]
    assets.append(go_asset("stores", "table", description="every store we own", tags=["ref"]))
    assert cat.put("/assets/", json=assets).status_code == 201

    answer, payload = ui_search(cat, "#sales")  # the first tag search: page 0
    assert answer.status_code == 200, answer.text
    data = ui_reads_ok(payload)
    assert len(data) == 8 and all(set(a) == MASTRO_ASSET for a in data)
    assert payload["pagination"] == {
        "total": 10,
        "page": 1,
        "perPage": 8,
        "prev": 0,
        "next": 2,
        "totalPage": 2,
    }
    # 'search/gotopage' sends the page the PageSelector picked.
    page2 = cat.post("/assets/tags", json={"tags": ["sales"], "limit": 8, "page": 2}).json()
    assert len(page2["data"]) == 2 and page2["pagination"]["next"] == 0
    _, both = ui_search(cat, "#sales, #gold")
    assert len(ui_reads_ok(both)) == 5

    answer, payload = ui_search(cat, "store we own")  # a text search: page 0
    assert answer.status_code == 200, answer.text
    assert [a["name"] for a in ui_reads_ok(payload)] == ["stores"]

    answer, payload = ui_search(cat, "stores")  # one word: the asset page
    assert answer.status_code == 200 and ui_reads_ok(payload)[0]["name"] == "stores"

    # Errors: the reducers show `${statusText}: ${data.message}`.
    for query in ("nothing_here", "#no_such_tag", "no such words"):
        answer, payload = ui_search(cat, query)
        assert answer.status_code == 404, (query, answer.text)
        assert isinstance(payload["message"], str) and payload["message"]
        assert payload["status"] == 404 and payload["error"] == "not_found"


def test_mastro_paging_rules(cat: httpx.Client) -> None:
    assert cat.get("/assets/", params={"limit": 8, "page": 0}).status_code == 404  # empty
    cat.put("/assets/", json=[go_asset("a", "dataset"), go_asset("b", "dataset")])
    listing = cat.get("/assets/", params={"limit": 10000, "page": 0})
    assert listing.status_code == 200 and listing.json()["pagination"]["total"] == 2
    for params in ({"page": 1}, {"limit": 8}, {}):
        missing = cat.get("/assets/", params=params)
        assert missing.status_code == 400, params
        assert missing.json()["error"] == "bad_request"
    too_many = cat.get("/assets/", params={"limit": 10001, "page": 1})
    assert too_many.status_code == 400 and "10000" in too_many.json()["message"]
    no_limit = cat.post("/assets/search", json={"query": "a"})
    assert no_limit.status_code == 400 and "limit" in no_limit.json()["message"]
    beyond = cat.post("/assets/tags", json={"tags": ["x"], "limit": 8, "page": 5})
    assert beyond.status_code == 404


def test_the_feature_set_page_and_its_errors(fs: httpx.Client) -> None:
    features = [{"name": "f", "value": 1.5, "data_type": "float"}]
    for version in ("v1", "v2"):
        body = {"name": "churn", "version": version, "features": features, "labels": {"t": "x"}}
        assert fs.put("/featureset/", json=body).status_code == 201
    # FeaturesetReducer: GET featureset/name/<asset>?limit=8&page=0 on the asset page.
    answer = fs.get("/featureset/name/churn?limit=8&page=0")
    assert answer.status_code == 200, answer.text
    payload = answer.json()
    assert "pagination" in payload and set(payload["pagination"]) == PAGINATION
    assert [d["version"] for d in payload["data"]] == ["v2", "v1"]
    missing = fs.get("/featureset/name/nope?limit=8&page=0")
    assert missing.status_code == 404 and missing.json()["message"]


# --- the Python client ----------------------------------------------------------------------


def test_mastro_fs_puts_gets_searches_and_lists(fs_server: ThreadServer) -> None:
    client = MastroFeatureStoreClient("127.0.0.1", fs_server.port)
    written = FeatureSet(
        name="fraud:features",  # a name Cairn's own API does not allow: mapped reversibly
        version="2024-01-01",
        description="made by mastro-fs",
        labels={"team": "risk"},
        features=[
            Feature("amount", 12.5, "float"),
            Feature("history", [1, 2, 3], "array"),
            Feature("frame", {"a": [1, 2], "b": ["x", "y"]}, "dataframe"),
        ],
    )
    created = client.create_featureset(written)  # raises a TypeError on any unknown field
    assert created.name == written.name and created.version == written.version
    assert created.features == written.features  # values and data_type spellings kept
    assert created.labels == {"team": "risk"}

    page = client.get_featureset_by_name("fraud:features")
    assert isinstance(page, PaginatedFeatureSets)
    assert [f.version for f in page.data] == ["2024-01-01"]
    assert page.pagination.total == 1 and page.pagination.prev == 0

    assert client.get_featureset_by_id("fraud:features@1").features == written.features
    assert client.get_featureset_by_id("fraud:features").version == "2024-01-01"  # latest
    assert client.search("fraud").data[0].name == "fraud:features"
    assert client.search_featuresets_by_labels({"team": "risk"}).pagination.total == 1
    assert client.list_all(limit=5, page=1).data[0].description == "made by mastro-fs"


def test_feature_sets_by_query_labels_and_by_id(fs: httpx.Client) -> None:
    feature = {"name": "f", "value": "v", "data_type": "string"}
    body = {"name": "s", "version": "1", "features": [feature], "labels": {"a": "1", "b": "x"}}
    assert fs.put("/featureset/", json=body).status_code == 201
    found = fs.get("/featureset/labels", params={"a": "1", "b": "x", "limit": 8, "page": 0})
    assert found.status_code == 200 and found.json()["pagination"]["total"] == 1
    assert fs.get("/featureset/labels", params={"a": "2", "limit": 8, "page": 0}).status_code == 404
    empty = fs.get("/featureset/labels", params={"limit": 8, "page": 0})
    assert empty.status_code == 400 and "label" in empty.json()["message"]
    assert fs.get("/featureset/id/s@1").json()["name"] == "s"
    assert fs.get("/featureset/id/s@9").status_code == 404
    assert fs.get("/featureset/id/s@x").status_code == 400
    assert fs.get("/featureset/id/s@²").status_code == 400  # "²".isdigit(): was a 500
    # Past a 64-bit version number: no store holds it, so it is named, not looked up.
    too_big = fs.get(f"/featureset/id/s@{2**63}")
    assert too_big.status_code == 400 and str(2**63 - 1) in too_big.json()["message"]


def test_a_name_cairn_does_not_allow_is_stored_under_its_mapped_name(fs: httpx.Client) -> None:
    # README (Mastro drop-in): `fraud:v1` becomes `x--fraud_3a_v1` on Cairn's own API.
    # An unknown data_type is stored as `json` and shown back as sent; a set needs a feature.
    feature = {"name": "f", "value": [1, 2], "data_type": "tensor"}
    assert (
        fs.put("/featureset/", json={"name": "fraud:v1", "features": [feature]}).status_code == 201
    )
    stored = fs.get("/api/v1/featuresets/x--fraud_3a_v1").json()
    assert stored["version"] == 1 and stored["features"][0]["dtype"] == "json"
    shown = fs.get("/featureset/name/fraud:v1", params={"limit": 8, "page": 1}).json()
    assert [d["name"] for d in shown["data"]] == ["fraud:v1"]
    assert shown["data"][0]["features"] == [feature]
    empty = fs.put("/featureset/", json={"name": "fraud:v1", "features": []})
    assert empty.status_code == 400 and empty.json()["message"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_body_over_the_cap_on_a_mastro_route_is_a_413_problem(
    tmp_path: Path, backend: str
) -> None:
    # README (Mastro drop-in): errors on Mastro's routes are Mastro's, except a too-large body.
    small = Settings(data_dir=tmp_path, max_body_bytes=10_000)
    with ThreadServer(catalogue_app(small)) as server:
        items = [go_asset(f"a{i}", "dataset") for i in range(100)]
        for path in ("/assets/", "/api/v1/assets/"):
            response = httpx.put(server.url + path, json=items)
            assert response.status_code == 413, path
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "10000 bytes" in response.json()["detail"]


# --- probes, mounts, CORS -------------------------------------------------------------------


def test_the_helm_charts_probes_answer(cat: httpx.Client, fs: httpx.Client) -> None:
    # helm-charts/mastro/templates/*/deployment.yaml: liveness and readiness paths.
    for client, path in (
        (cat, "/healthcheck/asset"),
        (fs, "/healthcheck/featureset"),
        (fs, "/healthcheck/metricset"),
    ):
        probe = client.get(path)
        assert (probe.status_code, probe.text) == (200, "pong"), path


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_root_mount_can_be_turned_off(tmp_path: Path, backend: str) -> None:
    settings = Settings(data_dir=tmp_path, mastro_root_routes=False)
    with ThreadServer(catalogue_app(settings)) as server:
        base = server.url
        assert httpx.put(base + "/asset/", json=go_asset("x", "dataset")).status_code == 404
        assert httpx.put(base + "/api/v1/asset/", json=go_asset("x", "dataset")).status_code == 201


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cors_origins_are_a_setting_and_none_by_default(tmp_path: Path, backend: str) -> None:
    ui = "http://mastro-ui.example:3000"
    preflight = {"Origin": ui, "Access-Control-Request-Method": "POST"}
    with ThreadServer(catalogue_app(Settings(data_dir=tmp_path / "a"))) as server:
        answer = httpx.options(server.url + "/assets/tags", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    allowed = Settings(data_dir=tmp_path / "b", cors_origins=ui)  # type: ignore[arg-type]
    with ThreadServer(featurestore_app(allowed)) as server:
        answer = httpx.options(server.url + "/featureset/search", headers=preflight)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == ui
        got = httpx.get(server.url + "/healthcheck/featureset", headers={"Origin": ui})
        assert got.headers["access-control-allow-origin"] == ui

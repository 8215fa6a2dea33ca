"""Catalogue API contract: a real uvicorn server on a free port, once per backend."""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cairn.settings import Settings, get_settings
from tests.conftest import ThreadServer, backend_settings


def asset(name: str, **fields: object) -> dict:
    return {"name": name, "type": fields.pop("type", "dataset"), **fields}


def seed(api: httpx.Client, items: list[dict]) -> dict:
    response = api.post("/assets/bulk", json=items)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["failed"] == 0, body
    return body


def names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def page_names(
    api: httpx.Client,
    params: dict[str, object],
    between: Callable[[int], None] | None = None,
    pages: int = 10,
) -> list[str]:
    """The names of a search's pages in order, following next_cursor; ``between(page)`` runs
    after each page that has a next one."""
    seen: list[str] = []
    cursor = None
    for page in range(pages):
        body = api.get("/assets", params={**params, **({"cursor": cursor} if cursor else {})})
        assert body.status_code == 200, body.text
        seen += [i["name"] for i in body.json()["items"]]
        cursor = body.json()["next_cursor"]
        if not cursor:
            break
        if between is not None:
            between(page)
    return seen


LAKE = [
    asset("sales_raw", tags=["sales", "raw"], owners=["ana@example.com"], labels={"pii": "true"}),
    asset(
        "sales_daily",
        description="Daily sales per store, deduplicated.",
        tags=["sales", "daily", "gold"],
        labels={"domain": "retail", "pii": False},
        owners=["ana@example.com"],
        depends_on=["sales_raw", "stores"],
        schema=[{"name": "store_id", "type": "int64"}, {"name": "amount", "type": "double"}],
    ),
    asset("stores", type="table", tags=["reference"], owners=["bo@example.com"]),
    asset("churn_model", type="model", tags=["ml", "gold"], depends_on=["sales_daily"]),
    asset("weekly_report", type="report", tags=["sales"], depends_on=["churn_model"]),
]


def test_put_get_and_revision(api: httpx.Client) -> None:
    created = api.put("/assets/sales-1", json=asset("sales", tags=["a"]))
    assert created.status_code == 201
    assert created.json()["revision"] == 1
    same = api.put("/assets/sales-1", json=asset("sales", tags=["a"]))
    assert same.status_code == 200 and same.json()["revision"] == 1  # no change, no new revision
    changed = api.put("/assets/sales-1", json=asset("sales", tags=["a", "b"]))
    assert changed.json()["revision"] == 2
    assert api.get("/assets/sales-1").json()["tags"] == ["a", "b"]
    assert api.get("/assets/by-name/sales").json()["id"] == "sales-1"


def test_bulk_reports_each_item(api: httpx.Client) -> None:
    body = api.post(
        "/assets/bulk",
        json=[asset("ok_one"), {"name": "bad_type", "type": "spaceship"}, {"type": "dataset"}],
    ).json()
    statuses = [r["status"] for r in body["results"]]
    assert statuses == ["created", "error", "error"]
    assert "spaceship" in body["results"][1]["error"]
    assert "name" in body["results"][2]["error"]
    assert body["created"] == 1 and body["failed"] == 2
    assert api.get("/assets/by-name/ok_one").status_code == 200


def test_bulk_accepts_items_envelope_and_rejects_other_shapes(api: httpx.Client) -> None:
    assert api.post("/assets/bulk", json={"items": [asset("x1")]}).json()["created"] == 1
    # JSON of another shape is the 422 a route with a body model answers (a PUT of an array),
    # naming what the route takes; it was a 400.
    put = api.put("/assets/x", json=[asset("x")])
    assert put.status_code == 422
    for body, field, expected in (
        ({"name": "x"}, "(body)", "a JSON array of assets"),
        ("x", "(body)", "a JSON array of assets"),
        (7, "(body)", "a JSON array of assets"),
        ({"items": {"name": "x"}}, "items", "a JSON array of assets"),
    ):
        bad = api.post("/assets/bulk", json=body)
        assert bad.status_code == 422, (body, bad.text)
        assert bad.headers["content-type"] == put.headers["content-type"]
        problem = bad.json()
        assert (problem["type"], problem["title"]) == (put.json()["type"], put.json()["title"])
        (error,) = problem["errors"]
        assert error["field"] == field and expected in error["message"], problem
        assert expected in problem["detail"]
    not_json = api.post(
        "/assets/bulk", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 422 and "not valid JSON" in not_json.json()["detail"]


def test_bulk_item_cap(api: httpx.Client) -> None:
    response = api.post("/assets/bulk", json=[asset(f"a{i}") for i in range(5001)])
    assert response.status_code == 400
    assert "at most 5000" in response.json()["detail"]


def test_validation_problem_names_the_field(api: httpx.Client) -> None:
    response = api.put("/assets/x", json={"name": "x", "type": "dataset", "tags": "notalist"})
    assert response.status_code == 422
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] == "Invalid request"
    assert any(e["field"] == "tags" for e in problem["errors"])
    control = api.put("/assets/x", json={"name": "bad\x00name", "type": "dataset"})
    assert control.status_code == 422 and "control characters" in control.text
    # The id in the URL follows the rule a bulk item's id does (letters, digits, . _ : @ -).
    for bad_id in ("a b", "x%00y", "%E2%80%AEabc", "x" * 257):
        refused = api.put(f"/assets/{bad_id}", json={"name": "idcheck", "type": "dataset"})
        assert refused.status_code == 422, (bad_id, refused.text)
        assert refused.json()["errors"][0]["field"] == "asset_id", refused.text
    assert api.get("/assets/by-name/idcheck").status_code == 404
    # curl -d without -H 'content-type: application/json' sends a form content type: the
    # answer says which header to send, not that "(root)" should be a dictionary.
    for content_type in ("application/x-www-form-urlencoded", "text/plain"):
        untyped = api.put(
            "/assets/ct-1",
            content=b'{"name": "ct1", "type": "dataset"}',
            headers={"content-type": content_type},
        )
        assert untyped.status_code == 422, untyped.text
        assert "content-type: application/json" in untyped.json()["detail"], untyped.text
        assert content_type in untyped.json()["detail"], untyped.text
    bulk = api.post("/assets/bulk", json=[{"id": "a b", "name": "idcheck", "type": "dataset"}])
    assert bulk.json()["results"][0]["status"] == "error"
    fine = api.put("/assets/ok:id@1.a_b-c", json={"name": "idcheck", "type": "dataset"})
    assert fine.status_code == 201, fine.text


def test_a_schema_naming_a_column_twice_is_a_422(api: httpx.Client) -> None:
    columns = [{"name": "id"}, {"name": "amount"}, {"name": "id", "type": "string"}]
    response = api.put("/assets/dup-1", json=asset("dup", schema=columns))
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["field"].startswith("schema") and "'id'" in error["message"], error
    bulk = api.post("/assets/bulk", json=[asset("dup", schema=columns)])
    assert bulk.json()["results"][0]["status"] == "error", bulk.text
    assert api.get("/assets/by-name/dup").status_code == 404


def test_an_asset_stored_with_a_column_twice_still_reads_back() -> None:
    # Written before the check: it is read as stored, never refused.
    from cairn.models import Asset

    stored = asset("old", id="old-1", schema=[{"name": "id"}, {"name": "id"}])
    read = Asset.model_validate(stored)
    assert [c.name for c in read.schema_ or []] == ["id", "id"]


def test_name_conflict_is_409_and_names_the_other_asset(api: httpx.Client) -> None:
    api.put("/assets/first", json=asset("shared", manifest_path="a/MANIFEST.yaml"))
    response = api.put("/assets/second", json=asset("shared"))
    assert response.status_code == 409
    assert "first" in response.json()["detail"] and "a/MANIFEST.yaml" in response.json()["detail"]


def test_name_conflict_names_the_other_assets_volume(api: httpx.Client) -> None:
    # Two volumes often hold manifests at the same path: the path alone would read the same.
    first = asset("twin", manifest_path="sales/MANIFEST.yaml", volume="file:///lake-a")
    assert api.put("/assets/in-a", json=first).status_code == 201
    second = asset("twin", manifest_path="sales/MANIFEST.yaml", volume="file:///lake-b")
    body = api.post("/assets/bulk", json=[{**second, "id": "in-b"}]).json()
    (result,) = body["results"]
    assert result["status"] == "error"
    assert "sales/MANIFEST.yaml in volume file:///lake-a" in result["error"]


def test_soft_delete(api: httpx.Client) -> None:
    seed(api, LAKE)
    target = api.get("/assets/by-name/stores").json()
    deleted = api.delete(f"/assets/{target['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert api.get(f"/assets/{target['id']}").json()["deleted"] is True  # still there
    assert "stores" not in names(api.get("/assets", params={"name": "sto"}))
    assert "stores" in names(api.get("/assets", params={"name": "sto", "include_deleted": True}))
    # The name is free again for a new asset.
    assert api.put("/assets/stores-2", json=asset("stores")).status_code == 201


def test_search_filters(api: httpx.Client) -> None:
    seed(api, LAKE)
    assert names(api.get("/assets", params={"name": "sal"})) == ["sales_daily", "sales_raw"]
    assert names(api.get("/assets", params={"name": "SALES_D"})) == ["sales_daily"]
    assert set(names(api.get("/assets", params={"tag": "sales"}))) == {
        "sales_raw",
        "sales_daily",
        "weekly_report",
    }
    assert names(api.get("/assets", params=[("tag", "sales"), ("tag", "gold")])) == ["sales_daily"]
    assert names(api.get("/assets", params={"type": "model"})) == ["churn_model"]
    assert names(api.get("/assets", params={"label": "pii:true"})) == ["sales_raw"]
    assert names(api.get("/assets", params={"label": "pii:false"})) == ["sales_daily"]
    assert names(api.get("/assets", params={"owner": "bo@example.com"})) == ["stores"]
    assert names(api.get("/assets", params={"tag": "nope"})) == []


def test_a_search_by_a_type_no_asset_can_have_is_a_422_naming_the_types(
    api: httpx.Client,
) -> None:
    # It answered 200 with nothing, as if no asset of that type had been written yet.
    seed(api, LAKE)
    put = api.put("/assets/ship-1", json=asset("ship", type="spaceship"))
    assert put.status_code == 422, put.text
    (put_error,) = [e for e in put.json()["errors"] if e["field"] == "type"]
    # Answered in front of the middleware stack, and (with an Origin) by the FastAPI route.
    for headers in ({}, {"origin": "http://elsewhere.example"}):
        refused = api.get("/assets", params={"type": "spaceship", "q": "sales"}, headers=headers)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        # The message a PUT of that type gets: the same known types, CAIRN_EXTRA_TYPES too.
        assert refused.json()["errors"] == [{"field": "type", "message": put_error["message"]}]
        assert "'spaceship'" in refused.json()["detail"]
        for kind in ("dataset", "model", "workflow", "CAIRN_EXTRA_TYPES"):
            assert kind in refused.json()["detail"], refused.text
    assert names(api.get("/assets", params={"type": "report"})) == ["weekly_report"]
    assert names(api.get("/assets", params={"type": "notebook"})) == []  # known, none yet


@contextmanager
def served(settings: Settings) -> Iterator[httpx.Client]:
    """A client of a catalogue app built with ``settings``."""
    from catalogue_service.app import create_app

    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        yield http


@pytest.fixture
def no_extra_types_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No CAIRN_EXTRA_TYPES in the environment, nor in the process's cached settings."""
    monkeypatch.delenv("CAIRN_EXTRA_TYPES", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.usefixtures("no_extra_types_env")
def test_an_app_allows_the_extra_types_of_the_settings_it_is_built_with(
    settings: Settings,
) -> None:
    # The type checks read CAIRN_EXTRA_TYPES from the process's environment, so an app built
    # with settings carrying extra types refused them all the same.
    with served(settings.model_copy(update={"extra_types": ["experiment"]})) as http:
        # Known before any asset has it: an empty answer, not a 422.
        assert names(http.get("/api/v1/assets", params={"type": "experiment"})) == []
        one = http.put("/api/v1/assets/exp-1", json=asset("exp_one", type="experiment"))
        assert one.status_code == 201, one.text
        bulk = http.post("/api/v1/assets/bulk", json=[asset("exp_two", type="experiment")])
        assert bulk.json()["created"] == 1, bulk.text
        mastro = http.put("/asset/", json=asset("exp_three", type="experiment"))
        assert mastro.status_code == 201, mastro.text
        found = http.get("/api/v1/assets", params={"type": "experiment"})
        assert sorted(names(found)) == ["exp_one", "exp_three", "exp_two"]
        # A type neither Mastro's nor the settings' is refused, listing the settings' too.
        refused = http.put("/api/v1/assets/ship", json=asset("ship", type="spaceship"))
        assert refused.status_code == 422, refused.text
        assert "'spaceship' is not one of:" in refused.text and "experiment" in refused.text
    # The same store served without the extra type refuses a write of it.
    with served(settings) as http:
        again = http.put("/api/v1/assets/exp-4", json=asset("exp_four", type="experiment"))
        assert again.status_code == 422, again.text


@pytest.mark.usefixtures("no_extra_types_env")
def test_types_lists_every_type_however_many(settings: Settings) -> None:
    # The mongo backend's aggregation kept the 100 most common types; the embedded one all.
    extra = [f"kind{i:03d}" for i in range(120)]
    with served(settings.model_copy(update={"extra_types": extra})) as http:
        items = [asset(f"many_{i}", type=kind) for i, kind in enumerate(extra)]
        items += [asset(f"more_{i}", type="kind000") for i in range(3)]
        bulk = http.post("/api/v1/assets/bulk", json=items)
        assert bulk.json()["created"] == len(items), bulk.text
        types = http.get("/api/v1/types").json()
    assert types == {"kind000": 4, **{kind: 1 for kind in extra[1:]}}
    assert next(iter(types)) == "kind000"  # most first


@pytest.mark.usefixtures("no_extra_types_env")
def test_a_deleted_asset_of_a_type_no_longer_allowed_is_found_with_include_deleted(
    settings: Settings,
) -> None:
    # Its type was checked against the live assets' types only: no live asset had it, so the
    # search was a 422 saying the type is unknown, though include_deleted asked for the
    # deleted assets, one of which has it.
    with served(settings.model_copy(update={"extra_types": ["experiment"]})) as http:
        for name in ("exp_gone", "exp_kept"):
            put = http.put(f"/api/v1/assets/{name}", json=asset(name, type="experiment"))
            assert put.status_code == 201, put.text
        assert http.delete("/api/v1/assets/exp_gone").status_code == 200
    with served(settings) as http:  # the setting no longer allows it
        kinds = {"type": "experiment", "include_deleted": "true"}
        assert sorted(names(http.get("/api/v1/assets", params=kinds))) == ["exp_gone", "exp_kept"]
        assert http.delete("/api/v1/assets/exp_kept").status_code == 200
        # No live asset has the type now: the deleted ones are still found.
        assert sorted(names(http.get("/api/v1/assets", params=kinds))) == ["exp_gone", "exp_kept"]
        with_text = {**kinds, "q": "exp_gone"}
        assert names(http.get("/api/v1/assets", params=with_text)) == ["exp_gone"]
        # Without include_deleted, or for a type no asset ever had, it is the 422 naming types.
        for params in ({"type": "experiment"}, {"type": "spaceship", "include_deleted": "true"}):
            refused = http.get("/api/v1/assets", params=params)
            assert refused.status_code == 422, (params, refused.text)
            assert refused.json()["errors"][0]["field"] == "type"


def test_a_search_parameter_the_route_does_not_take_is_a_422_naming_it(
    api: httpx.Client,
) -> None:
    # A misspelt filter (tga=sales, lable=pii:true) was dropped without a word: the answer
    # listed every asset, as if every one had matched.
    seed(api, LAKE)
    for headers in ({}, {"origin": "http://elsewhere.example"}):
        for params, said in (
            ({"tga": "sales"}, "did you mean tag?"),
            ({"q": "sales", "lable": "pii:true"}, "did you mean label?"),
            ({"page": "2"}, "the next page is cursor=<next_cursor>"),
            ({"sort": "name"}, None),
        ):
            refused = api.get("/assets", params=params, headers=headers)
            assert refused.status_code == 422, (params, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            (error,) = refused.json()["errors"]
            wrong = next(k for k in params if k != "q")
            assert error["field"] == wrong, refused.text
            assert "is not a parameter of this search" in error["message"], refused.text
            if said:
                assert said in error["message"], refused.text
            assert "q, name, tag, type, label, owner" in error["message"], refused.text
    # Every parameter the route documents is still taken.
    taken = {
        "q": "sales",
        "name": "sal",
        "tag": "sales",
        "type": "table",
        "label": "pii:false",
        "owner": "ana@example.com",
        "include_deleted": "false",
        "limit": "5",
        "facets": "true",
        "drifted": "false",
    }
    assert api.get("/assets", params=taken).status_code == 200


def test_a_blank_text_query_is_no_text_query(api: httpx.Client) -> None:
    # A search box left with spaces (or a tab) in it lists what an empty one lists.
    seed(api, LAKE)
    everything = names(api.get("/assets", params={"tag": "sales"}))
    assert everything and names(api.get("/assets", params={"tag": "sales", "q": "  \t "})) == (
        everything
    )


def test_text_search_relevance_and_prefix(api: httpx.Client) -> None:
    seed(api, LAKE)
    # "sal" is a prefix of a name token: search-as-you-type finds sales_*.
    assert set(names(api.get("/assets", params={"q": "sal"}))) >= {"sales_raw", "sales_daily"}
    assert names(api.get("/assets", params={"q": "deduplicated"})) == ["sales_daily"]
    # Column names are searchable.
    assert names(api.get("/assets", params={"q": "amount"})) == ["sales_daily"]
    # An exact name match ranks first.
    assert names(api.get("/assets", params={"q": "stores"}))[0] == "stores"
    # FTS syntax in user input is quoted, never interpreted.
    for hostile in ['"', "sales OR", "NEAR(a b)", "*", "a AND (", "name:sales", "-x"]:
        response = api.get("/assets", params={"q": hostile})
        assert response.status_code == 200, (hostile, response.text)


def test_facets_are_exact_counts(api: httpx.Client) -> None:
    seed(api, LAKE)
    body = api.get("/assets", params={"tag": "sales"}).json()
    assert body["total"] == 3
    assert body["facets"]["tags"] == {"sales": 3, "daily": 1, "gold": 1, "raw": 1}
    assert body["facets"]["types"] == {"dataset": 2, "report": 1}


def test_cursor_pagination_has_no_cap(api: httpx.Client) -> None:
    # 12,000 assets: past the 10,000-result window other engines cap at.
    for start in range(0, 12000, 4000):
        seed(api, [asset(f"t{i:05d}", tags=["bulk"]) for i in range(start, start + 4000)])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"tag": "bulk", "limit": 1000, "facets": False}
        if cursor:
            params["cursor"] = cursor
        body = api.get("/assets", params=params).json()
        seen += [i["name"] for i in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 12000 and len(set(seen)) == 12000
    assert seen == sorted(seen)
    assert body["total"] == 12000


def test_text_search_pages_are_disjoint(api: httpx.Client) -> None:
    seed(api, [asset(f"orders_{i:03d}", description="orders table") for i in range(45)])
    seen = page_names(api, {"q": "orders", "limit": 10})
    assert len(seen) == 45 and len(set(seen)) == 45


def test_text_search_pages_survive_writes_between_them(api: httpx.Client) -> None:
    # A crawl writing while someone pages through a text search: each write moves every
    # match's relevance score (it weighs a word by how many assets hold it), so a page's
    # cursor holding the last score skipped or repeated whole pages.
    wanted = {f"refunds_{i:03d}" for i in range(30)}
    seed(api, [asset(name, description="refunds ledger") for name in sorted(wanted)])

    def write_more(page: int) -> None:
        seed(api, [asset(f"other_{page}_{n:02d}", description="x " * n) for n in range(25)])

    seen = page_names(api, {"q": "refunds ledger", "limit": 7}, between=write_more)
    assert sorted(seen) == sorted(wanted)


def test_text_search_reads_decomposed_accents_as_composed_ones(api: httpx.Client) -> None:
    # "crème" typed as e + U+0300 (NFD: what some keyboards, pastes and file names give) is
    # the same word as the composed "è" to whoever typed it, and to the index.
    seed(api, [asset("creme_brulee", description="Crème brûlée recipes")])
    for text in ("crème brûlée", "crème", "brûl"):
        decomposed = unicodedata.normalize("NFD", text)
        assert decomposed != text
        found = api.get("/assets", params={"q": decomposed}).json()
        assert [i["name"] for i in found["items"]] == ["creme_brulee"], (text, found)


def test_names_and_tags_are_one_text_however_their_accents_are_typed(api: httpx.Client) -> None:
    # "Crème" with a composed è and with e + U+0300 look the same to everyone: they were two
    # names (so two assets could hold the "unique" name) and two tags in the facets.
    def nfd(text: str) -> str:
        return unicodedata.normalize("NFD", text)

    def nfc(text: str) -> str:
        return unicodedata.normalize("NFC", text)

    seed(api, [{"id": "creme-1", "name": nfd("Crème"), "type": "dataset", "tags": [nfd("crème")]}])
    other = {"id": "creme-2", "name": nfc("Crème"), "type": "table"}
    taken = api.post("/assets/bulk", json=[other])
    (result,) = taken.json()["results"]
    assert result["status"] == "error" and result["conflict"] == "name", result
    stored = api.get("/assets/creme-1").json()
    assert stored["name"] == nfc("Crème") and stored["tags"] == [nfc("crème")]
    for form in (nfc, nfd):
        assert api.get(f"/assets/by-name/{form('Crème')}").json()["id"] == "creme-1"
        for params in ({"tag": form("crème")}, {"name": form("Crè")}):
            found = api.get("/assets", params=params).json()
            assert [i["id"] for i in found["items"]] == ["creme-1"], (params, found)
    tags = [t["tag"] for t in api.get("/tags").json()]
    assert tags == [nfc("crème")]


def test_tags_match_and_count_whatever_their_case(api: httpx.Client) -> None:
    """``tag=Sales`` found nothing when the assets were tagged ``sales``, and ``Sales`` and
    ``sales`` were two facets. Tags are matched and counted in lower case; each asset keeps
    its tags as written."""
    seed(
        api,
        [
            {"id": "t-1", "name": "t_lower", "type": "dataset", "tags": ["sales", "gold"]},
            {"id": "t-2", "name": "t_title", "type": "table", "tags": ["Sales", "Gold"]},
            {"id": "t-3", "name": "t_both", "type": "table", "tags": ["SALES", "sales"]},
            {"id": "t-4", "name": "t_other", "type": "report", "tags": ["raw"]},
        ],
    )
    everyone = ["t_both", "t_lower", "t_title"]
    for tag in ("sales", "Sales", "SALES", "sAlEs"):
        found = api.get("/assets", params={"tag": tag}).json()
        assert sorted(i["name"] for i in found["items"]) == everyone, (tag, found)
        assert found["total"] == 3 and found["facets"]["tags"] == {"sales": 3, "gold": 2}
    both = api.get("/assets", params=[("tag", "SALES"), ("tag", "gold")]).json()
    assert sorted(i["name"] for i in both["items"]) == ["t_lower", "t_title"]
    assert both["facets"]["tags"] == {"sales": 2, "gold": 2}
    texts = api.get("/assets", params={"q": "t_", "tag": "Gold"}).json()
    assert sorted(i["name"] for i in texts["items"]) == ["t_lower", "t_title"]
    assert {t["tag"]: t["count"] for t in api.get("/tags").json()} == {
        "sales": 3,
        "gold": 2,
        "raw": 1,
    }
    mastro = api.post("/assets/tags", json={"tags": ["Sales"], "limit": 10, "page": 1}).json()
    assert sorted(a["name"] for a in mastro["data"]) == everyone
    assert api.get("/assets/t-2").json()["tags"] == ["Sales", "Gold"]  # kept as written
    # A rewrite that changes only a tag's case moves no count.
    seed(api, [{"id": "t-2", "name": "t_title", "type": "table", "tags": ["sales", "gold"]}])
    assert api.get("/assets", params={"tag": "Sales"}).json()["facets"]["tags"] == {
        "sales": 3,
        "gold": 2,
    }
    seed(api, [{"id": "t-3", "name": "t_both", "type": "table", "tags": ["raw"]}])
    after = api.get("/assets", params={"tag": "RAW"}).json()
    assert after["total"] == 2 and after["facets"]["tags"] == {"raw": 2}
    assert api.get("/assets", params={"tag": "sales"}).json()["total"] == 2


def test_a_mongo_catalogue_indexed_before_tags_were_folded_finds_them_in_any_case(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Migration 3 has every asset indexed again: an index written before tags were indexed
    in lower case held ``Sales`` as written, which ``tag=sales`` (now always lower case)
    never matched until someone ran ``cairn reindex``."""
    import asyncio
    import time
    from datetime import UTC, datetime

    from cairn.models import AssetWrite
    from catalogue_service.backends.base import PreparedWrite, SearchQuery
    from catalogue_service.backends.mongo import MongoStore

    settings = backend_settings(request, "mongo", data_dir=tmp_path / "data")

    async def found(store: MongoStore) -> list[bytes]:
        return (await store.search(SearchQuery(tags=["sales"], limit=10))).docs

    async def scenario() -> list[bytes]:
        store = MongoStore(settings)
        await store.open()
        write = AssetWrite.model_validate(
            {"id": "old-tags", "name": "old_tags", "type": "dataset", "tags": ["Sales"]}
        )
        await store.upsert([PreparedWrite.of(0, write)], datetime.now(UTC))
        # As the index was written before migration 3: the tag as written, at the revision
        # (the index's external version) the store wrote.
        es = store.index
        source = (await es.es.get(index=es.alias, id="old-tags"))["_source"]
        await es.es.index(
            index=es.alias,
            id="old-tags",
            document={**source, "tags": ["Sales"]},
            version=source["revision"],
            version_type="external_gte",
            refresh=True,
        )
        await store.db.get_collection("cairn_meta").update_one(
            {"_id": "schema:catalogue"}, {"$set": {"version": 2}}
        )
        assert await found(store) == []
        await store.close()
        reopened = MongoStore(settings)
        await reopened.open()
        try:
            deadline = time.monotonic() + 30
            while not (docs := await found(reopened)) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            return docs
        finally:
            await reopened.close()

    (doc,) = asyncio.run(scenario())
    assert b'"old_tags"' in doc


def test_dot_and_dot_dot_are_no_asset_ids(api: httpx.Client) -> None:
    # In a URL path "." and ".." (and %2E%2E) are the folder itself and its parent: browsers
    # and HTTP clients resolve them away, so such an asset's page could never be opened.
    body = api.post(
        "/assets/bulk",
        json=[{"id": i, "name": f"dots{n}", "type": "dataset"} for n, i in enumerate([".", ".."])]
        + [{"id": "...", "name": "dots2", "type": "dataset"}],
    ).json()
    first, second, third = body["results"]
    for result in (first, second):
        assert result["status"] == "error" and result["error"].startswith("id: "), result
        assert "parent" in result["error"], result
    assert third["status"] == "created", third
    put = api.put("/assets/%2E%2E", json={"name": "dots3", "type": "dataset"})
    assert put.request.url.raw_path.endswith(b"/assets/%2E%2E")
    assert put.status_code == 422 and "asset_id" in put.text, put.text
    assert api.get("/assets/...").json()["name"] == "dots2"


def test_a_location_with_a_password_is_refused(api: httpx.Client) -> None:
    # Credentials never go into the catalogue: a crawl strips them from its URLs, and an
    # asset written over the API may not bring them in either.
    secret = "s3cr3t-pw"
    location = f"postgres://etl:{secret}@db.internal:5432/sales"
    one = api.put("/assets/pw-1", json={"name": "pw1", "type": "dataset", "location": location})
    assert one.status_code == 422, one.text
    assert one.json()["errors"][0]["field"] == "location" and "password" in one.text
    bulk = api.post("/assets/bulk", json=[{"name": "pw2", "type": "dataset", "location": location}])
    (result,) = bulk.json()["results"]
    assert result["status"] == "error" and "password" in result["error"]
    assert secret not in one.text and secret not in bulk.text
    assert api.get("/assets", params={"q": "pw1 pw2"}).json()["total"] == 0
    # A user name alone, and ADLS's filesystem@account, are not secrets.
    for name, fine in (
        ("pw3", "hdfs://etl@namenode:8020/sales"),
        ("pw4", "abfss://lake@account.dfs.core.windows.net/sales"),
        ("pw5", "https://dashboards.internal?owner=ana:eu@corp"),  # an '@' past the authority
    ):
        stored = api.put(
            f"/assets/{name}", json={"name": name, "type": "dataset", "location": fine}
        )
        assert stored.status_code == 201 and stored.json()["location"] == fine, stored.text


def test_a_location_or_version_with_a_signature_or_token_is_refused(api: httpx.Client) -> None:
    """Signed URLs (S3, Azure SAS), tokens and a JDBC URL's password carry the secret in the
    query string, which the password check did not look at; a variant's location in
    `versions` was not checked at all."""
    secret = "S3CRET-sig"
    for i, (field, value) in enumerate(
        (
            ("location", f"https://store.example/x.parquet?sig={secret}"),
            ("location", f"abfss://fs@acct.dfs.core.windows.net/x?sv=2024&sig={secret}"),
            ("location", f"s3://b/x?X-Amz-Credential=a&X-Amz-Signature={secret}"),
            ("location", f"file:///lake/jdbc:mysql:/db:3306/s%3Fuser=u&password={secret}"),
            ("versions", {"v1": f"s3://etl:{secret}@bucket/v1"}),
            ("versions", {"v1": f"https://store.example/v1?token={secret}"}),
        )
    ):
        doc = {"name": f"signed{i}", "type": "dataset", field: value}
        one = api.put(f"/assets/signed-{i}", json=doc)
        assert one.status_code == 422 and "credentials are never stored" in one.text, one.text
        assert secret not in one.text
    # A query string without a secret is a location like any other.
    plain = {"name": "versioned", "type": "dataset", "location": "s3://b/x?versionId=3"}
    assert api.put("/assets/versioned", json=plain).status_code == 201


def test_a_cursor_of_another_search_is_a_400(api: httpx.Client) -> None:
    seed(api, [asset(f"cursor_{i:02d}", description="cursor table") for i in range(6)])
    by_name = api.get("/assets", params={"name": "cursor_", "limit": 2}).json()["next_cursor"]
    by_text = api.get("/assets", params={"q": "cursor", "limit": 2}).json()["next_cursor"]
    assert by_name and by_text
    forged = base64.urlsafe_b64encode(b"[null,null]").decode().rstrip("=")
    # Each kind of search keys its pages differently: a cursor of the other kind, or a forged
    # one, would compare against keys of another type and answer an empty page.
    for params in (
        {"q": "cursor", "cursor": by_name},
        {"name": "cursor_", "cursor": by_text},
        {"q": "cursor", "cursor": forged},
        {"name": "cursor_", "cursor": forged},
    ):
        answer = api.get("/assets", params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert "does not belong to this kind of search" in answer.json()["detail"]
    # Its own search's cursor still pages on.
    page = api.get("/assets", params={"q": "cursor", "limit": 2, "cursor": by_text}).json()
    assert len(page["items"]) == 2


def test_bad_query_parameters_are_4xx(api: httpx.Client) -> None:
    assert api.get("/assets", params={"cursor": "garbage!"}).status_code == 400
    bad_label = api.get("/assets", params={"label": "nocolon"})
    assert bad_label.status_code == 400 and "key:value" in bad_label.json()["detail"]
    assert api.get("/assets", params={"limit": 0}).status_code == 422
    assert api.get("/assets", params={"q": "x" * 5000}).status_code == 422
    missing = api.get("/assets/does-not-exist")
    assert missing.status_code == 404 and "does-not-exist" in missing.json()["detail"]
    assert api.get("/nowhere").status_code == 404


def test_too_many_tag_or_label_filters_are_a_422(api: httpx.Client) -> None:
    # Each filter is a clause of the query: a thousand of them broke SQLite's expression
    # depth, and the search answered a 500.
    seed(api, [asset("filtered", tags=[f"t{i}" for i in range(100)], labels={"k": "v"})])
    most = api.get("/assets", params=[("tag", f"t{i}") for i in range(100)])
    assert [i["name"] for i in most.json()["items"]] == ["filtered"], most.text
    for key, value in (("tag", "t{}"), ("label", "k{}:v")):
        many = api.get("/assets", params=[(key, value.format(i)) for i in range(1100)])
        assert many.status_code == 422, many.text
        assert many.json()["errors"][0]["field"] == key and "at most 100" in many.text


def test_lineage(api: httpx.Client) -> None:
    seed(api, [*LAKE, asset("orphan", depends_on=["ghost"])])
    daily = api.get("/assets/by-name/sales_daily").json()
    up = api.get(f"/assets/{daily['id']}/lineage", params={"direction": "up"}).json()
    assert {n["name"] for n in up["nodes"]} == {"sales_daily", "sales_raw", "stores"}
    assert len(up["edges"]) == 2 and all(e["target"] == daily["id"] for e in up["edges"])
    down = api.get(f"/assets/{daily['id']}/lineage", params={"direction": "down"}).json()
    assert {n["name"] for n in down["nodes"]} == {"sales_daily", "churn_model", "weekly_report"}
    shallow = api.get(
        f"/assets/{daily['id']}/lineage", params={"direction": "down", "depth": 1}
    ).json()
    assert {n["name"] for n in shallow["nodes"]} == {"sales_daily", "churn_model"}
    orphan = api.get("/assets/by-name/orphan").json()
    missing = api.get(f"/assets/{orphan['id']}/lineage").json()
    ghost = [n for n in missing["nodes"] if n["name"] == "ghost"]
    assert ghost and ghost[0]["missing"] is True
    assert (
        api.get(f"/assets/{daily['id']}/lineage", params={"direction": "sideways"}).status_code
        == 422
    )


def test_lineage_stops_at_the_node_limit_and_says_so(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One popular source with more consumers than the limit, all on one level: the limit
    # used to be checked between levels only, so the answer held every consumer.
    import catalogue_service.service as service

    monkeypatch.setattr(service, "MAX_LINEAGE_NODES", 5)
    seed(api, [asset("hub"), *(asset(f"hub_user_{i}", depends_on=["hub"]) for i in range(8))])
    seed(api, [asset("hub_fan", depends_on=[f"hub_src_{i}" for i in range(8)])])
    for name, direction in (("hub", "down"), ("hub_fan", "up")):
        root = api.get(f"/assets/by-name/{name}").json()
        answer = api.get(f"/assets/{root['id']}/lineage", params={"direction": direction})
        graph = answer.json()
        assert len(graph["nodes"]) == 5 and graph["truncated"] is True
        ids = {n["id"] for n in graph["nodes"]}
        assert len(graph["edges"]) == 4
        assert all(e["source"] in ids and e["target"] in ids for e in graph["edges"])
    small = api.get(f"/assets/{root['id']}/lineage", params={"direction": "down"}).json()
    assert small["truncated"] is False


def test_lineage_shows_an_upstream_deleted_by_name_as_deleted(api: httpx.Client) -> None:
    # A soft delete never makes an asset vanish: an upstream named in depends_on that was
    # deleted is drawn as deleted (its page exists), not as a name the catalogue lacks.
    seed(api, [asset("shelf_raw"), asset("shelf", depends_on=["shelf_raw"])])
    raw = api.get("/assets/by-name/shelf_raw").json()
    shelf = api.get("/assets/by-name/shelf").json()
    assert api.delete(f"/assets/{raw['id']}").status_code == 200
    up = api.get(f"/assets/{shelf['id']}/lineage", params={"direction": "up"}).json()
    nodes = {n["name"]: n for n in up["nodes"]}
    assert nodes["shelf_raw"]["id"] == raw["id"], up
    assert nodes["shelf_raw"]["deleted"] is True and nodes["shelf_raw"]["missing"] is False
    assert [(e["source"], e["target"]) for e in up["edges"]] == [(raw["id"], shelf["id"])]
    # A live asset that takes the name over is the upstream again.
    seed(api, [{**asset("shelf_raw"), "id": "shelf-raw-2"}])
    up = api.get(f"/assets/{shelf['id']}/lineage", params={"direction": "up"}).json()
    assert {n["id"] for n in up["nodes"]} == {shelf["id"], "shelf-raw-2"}


def test_tags_and_types(api: httpx.Client) -> None:
    seed(api, LAKE)
    tags = {t["tag"]: t["count"] for t in api.get("/tags").json()}
    assert tags["sales"] == 3 and tags["gold"] == 2
    assert api.get("/types").json() == {"dataset": 2, "model": 1, "report": 1, "table": 1}


def test_mastro_routes(api: httpx.Client) -> None:
    mastro = {
        "name": "legacy",
        "type": "dataset",
        "depends-on": ["sales_raw"],
        "published-on": "2024-01-31T00:00:00Z",
        "tags": ["old", "sales"],
    }
    put = api.put("/asset/", json=mastro)
    assert put.status_code == 201
    assert put.json()[0]["depends-on"] == ["sales_raw"]
    assert api.put("/assets/", json=LAKE).status_code == 201
    by_name = api.get("/asset/name/legacy").json()
    assert by_name["depends-on"] == ["sales_raw"] and by_name["published-on"].startswith(
        "2024-01-31"
    )
    assert api.get("/asset/id/legacy").json()["name"] == "legacy"
    page = api.post("/assets/tags", json={"tags": ["sales"], "limit": 2, "page": 1}).json()
    assert page["pagination"] == {
        "total": 4,
        "page": 1,
        "perPage": 2,
        "prev": 0,
        "next": 2,
        "totalPage": 2,
    }
    page2 = api.post("/assets/tags", json={"tags": ["sales"], "limit": 2, "page": 2}).json()
    assert {a["name"] for a in page["data"]}.isdisjoint({a["name"] for a in page2["data"]})
    found = api.post("/assets/search", json={"query": "deduplicated", "limit": 8, "page": 0})
    assert [a["name"] for a in found.json()["data"]] == ["sales_daily"]
    listing = api.get("/assets/", params={"limit": 100, "page": 1}).json()
    assert listing["pagination"]["total"] == 6
    empty = api.post("/assets/tags", json={"tags": [], "limit": 1, "page": 1})
    assert empty.status_code == 400 and empty.json()["error"] == "bad_request"


def test_body_cap_gives_413(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from catalogue_service.app import create_app

    small = settings.model_copy(update={"max_body_bytes": 10_000})
    with ThreadServer(create_app(small)) as server:
        response = httpx.post(
            server.url + "/api/v1/assets/bulk", json=[asset(f"n{i}") for i in range(500)]
        )
        assert response.status_code == 413
        assert "larger than 10000 bytes" in response.json()["detail"]


def test_health_ready_metrics_and_openapi(catalogue: ThreadServer) -> None:
    assert httpx.get(catalogue.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(catalogue.url + "/readyz").status_code == 200
    httpx.get(catalogue.url + "/api/v1/assets")
    metrics = httpx.get(catalogue.url + "/metrics").text
    assert 'route="/api/v1/assets"' in metrics
    spec = httpx.get(catalogue.url + "/openapi.json").json()
    assert "/api/v1/assets/bulk" in spec["paths"]


@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "Basic abc", "Bearer"])
def test_writes_need_a_valid_key(settings, header, caplog) -> None:  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    from catalogue_service.app import create_app

    keyed = settings.model_copy(update={"api_keys": [SecretStr("s3cret-key-1"), SecretStr("k2")]})
    with ThreadServer(create_app(keyed)) as server:
        headers = {"authorization": header} if header else {}
        response = httpx.put(server.url + "/api/v1/assets/a", json=asset("a"), headers=headers)
        assert response.status_code == 401
        assert "s3cret" not in response.text
        ok = httpx.put(
            server.url + "/api/v1/assets/a",
            json=asset("a"),
            headers={"authorization": "Bearer s3cret-key-1"},
        )
        assert ok.status_code == 201
        # Reads stay open unless CAIRN_READ_NEEDS_KEY is set.
        assert httpx.get(server.url + "/api/v1/assets").status_code == 200
    assert "s3cret" not in caplog.text


def test_reads_can_need_a_key(settings) -> None:  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    from catalogue_service.app import create_app

    keyed = settings.model_copy(update={"api_keys": [SecretStr("k")], "read_needs_key": True})
    with ThreadServer(create_app(keyed)) as server:
        assert httpx.get(server.url + "/api/v1/assets").status_code == 401
        ok = httpx.get(server.url + "/api/v1/assets", headers={"authorization": "Bearer k"})
        assert ok.status_code == 200


def test_model_rules_on_the_api_path(api: httpx.Client) -> None:
    mastro_nulls = {"name": "n1", "type": "dataset", "tags": None, "description": None}
    assert api.put("/assets/n1", json=mastro_nulls).json()["tags"] == []
    both = {"name": "n2", "type": "dataset", "depends_on": ["a"], "depends-on": ["b"]}
    response = api.put("/assets/n2", json=both)
    assert response.status_code == 422 and "not both" in response.text
    not_a_map = {"name": "n3", "type": "dataset", "extra": 5, "unknown_field": 1}
    assert api.put("/assets/n3", json=not_a_map).status_code == 422
    huge = {"name": "n4", "type": "dataset", "labels": {"x": 2**70}}
    assert api.put("/assets/n4", json=huge).status_code == 422
    kept = api.put("/assets/n5", json={"name": "n5", "type": "dataset", "team": "core"}).json()
    assert kept["extra"] == {"team": "core"}


def test_unfiltered_counts_follow_writes(api: httpx.Client) -> None:
    """The home-page counts are cached per write generation; a write must show at once."""
    seed(api, LAKE)
    before = api.get("/assets").json()
    assert before["total"] == 5 and before["facets"]["types"]["dataset"] == 2
    seed(api, [asset("another", tags=["sales"])])
    after = api.get("/assets").json()
    assert after["total"] == 6 and after["facets"]["tags"]["sales"] == 4
    target = api.get("/assets/by-name/another").json()["id"]
    api.delete(f"/assets/{target}")
    assert api.get("/assets").json()["total"] == 5
    no_facets = api.get("/assets", params={"facets": "false"}).json()
    assert no_facets["total"] == 5 and no_facets["facets"] == {"tags": {}, "types": {}, "drift": {}}
    assert api.get("/assets").json()["facets"]["tags"]["sales"] == 3


def test_filtered_counts_follow_writes(api: httpx.Client) -> None:
    """Counts of any filter are cached per write generation; a write must show at once."""
    seed(api, LAKE)
    assert api.get("/assets", params={"tag": "sales"}).json()["facets"]["types"] == {
        "dataset": 2,
        "report": 1,
    }
    seed(api, [asset("sales_model", type="model", tags=["sales"])])
    after = api.get("/assets", params={"tag": "sales"}).json()
    assert after["total"] == 4 and after["facets"]["types"]["model"] == 1
    # Another page of the same filter reuses the counts; they still agree.
    page = api.get("/assets", params={"tag": "sales", "limit": 2}).json()
    second = api.get("/assets", params={"tag": "sales", "cursor": page["next_cursor"]}).json()
    assert second["total"] == 4 and second["facets"] == after["facets"]


HOSTILE = [
    "$where",
    '{"$gt": ""}',
    '{"$ne": null}',
    "this.name == 'x' || true",
    "*:*",
    "name:sales* OR tags:*",
    'sales" OR "1"="1',
    "_id",
    "\\",
]


def test_no_filter_value_is_read_as_an_operator_or_query_syntax(api: httpx.Client) -> None:
    # Values that are operators or query syntax elsewhere are stored and matched as plain data.
    seed(
        api,
        [
            asset("plain_sales", tags=["sales"], owners=["ana@example.com"], labels={"k": "v"}),
            asset(
                "odd_one",
                tags=['{"$ne": null}', "$where"],
                owners=['{"$gt": ""}'],
                labels={"$where": "1", "a.b": '{"$ne": null}'},
            ),
        ],
    )
    odd = api.get("/assets/by-name/odd_one").json()
    assert odd["labels"] == {"$where": "1", "a.b": '{"$ne": null}'}
    for value in HOSTILE:
        for param in ("q", "name", "tag", "owner"):
            response = api.get("/assets", params={param: value})
            assert response.status_code == 200, (param, value, response.text)
            found = {item["name"] for item in response.json()["items"]}
            # Only the asset that holds the exact value may match; never everything.
            assert found <= {"odd_one"}, (param, value, found)
            assert "plain_sales" not in found
        label = api.get("/assets", params={"label": f"k:{value}"})
        assert label.status_code == 200 and label.json()["items"] == [], value
        kind = api.get("/assets", params={"type": value})
        assert kind.status_code in (200, 422), kind.text
        assert kind.status_code == 422 or kind.json()["items"] == []
        cursor = api.get("/assets", params={"cursor": value})
        assert cursor.status_code == 400, cursor.text
    exact = {
        "tag": '{"$ne": null}',
        "owner": '{"$gt": ""}',
        "label": "$where:1",
    }
    for param, value in exact.items():
        assert names(api.get("/assets", params={param: value})) == ["odd_one"], param
    assert names(api.get("/assets", params={"label": 'a.b:{"$ne": null}'})) == ["odd_one"]
    # Operators in a JSON body are refused by validation, not passed to the store.
    for body in (
        {"name": {"$ne": None}, "type": "dataset"},
        {"name": "x", "type": "dataset", "tags": {"$gt": ""}},
        {"name": "x", "type": {"$in": ["dataset"]}},
    ):
        response = api.put("/assets/injected", json=body)
        assert response.status_code == 422, response.text
    assert api.get("/assets/injected").status_code == 404


def test_instance_id_is_created_with_the_store(
    api: httpx.Client, settings: Settings, request: pytest.FixtureRequest, backend: str, tmp_path
) -> None:
    from catalogue_service.app import create_app

    first = api.get("/instance")
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["backend"] == backend and len(body["instance_id"]) >= 16
    assert api.get("/instance").json() == body
    # The same store opened again (a restart) keeps its id; a new or wiped store has another.
    with ThreadServer(create_app(settings)) as again:
        assert httpx.get(again.url + "/api/v1/instance").json() == body
    fresh = backend_settings(request, backend, data_dir=tmp_path / "fresh")
    with ThreadServer(create_app(fresh)) as other:
        answer = httpx.get(other.url + "/api/v1/instance").json()
    assert answer["backend"] == backend and answer["instance_id"] != body["instance_id"]

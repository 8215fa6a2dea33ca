"""OpenLineage endpoint contract: a real uvicorn server, once per backend (sqlite; MongoDB via
FerretDB with Elasticsearch), events as OpenLineage 2-0-x producers send them."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cairn.models import AssetWrite
from cairn.settings import Settings
from catalogue_service.openlineage import ol_id
from tests.conftest import ThreadServer, backend_settings

RECORDED = Path(__file__).parent / "data" / "openlineage" / "dbt_model_complete.json"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def run_event(
    event_type: str = "COMPLETE",
    *,
    run_id: str | None = None,
    time: str = "2026-01-01T03:00:00Z",
    job: str = "sales_daily",
    inputs: list[tuple[str, str]] | None = None,
    outputs: list[tuple[str, str]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": time,
        "producer": "https://example.com/nightly",
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id or str(uuid.uuid4())},
        "job": {"namespace": "nightly", "name": job},
        "inputs": [
            {"namespace": ns, "name": n} for ns, n in inputs or [("s3://lake", "raw/sales")]
        ],
        "outputs": [
            {"namespace": ns, "name": n} for ns, n in outputs or [("s3://lake", "gold/sales")]
        ],
        **fields,
    }


def post(api: httpx.Client, event: dict[str, Any], status: int = 201) -> dict[str, Any]:
    response = api.post("/lineage", json=event)
    assert response.status_code == status, response.text
    return response.json()


def edges(api: httpx.Client, asset_id: str, **params: Any) -> set[tuple[str, str, str]]:
    response = api.get(f"/assets/{asset_id}/lineage", params=params)
    assert response.status_code == 200, response.text
    return {(e["source"], e["target"], e["origin"]) for e in response.json()["edges"]}


def test_a_run_maps_datasets_and_job_to_assets_and_edges(api: httpx.Client) -> None:
    receipt = post(api, run_event())
    job = ol_id("job", "nightly", "sales_daily")
    raw, gold = (
        ol_id("dataset", "s3://lake", "raw/sales"),
        ol_id("dataset", "s3://lake", "gold/sales"),
    )
    assert receipt == {
        "kind": "RunEvent",
        "duplicate": False,
        "job": job,
        "inputs": [raw],
        "outputs": [gold],
        "edges": 2,
    }
    pipeline = api.get(f"/assets/{job}").json()
    assert pipeline["type"] == "pipeline" and pipeline["name"] == "nightly/sales_daily"
    dataset = api.get(f"/assets/{gold}").json()
    assert dataset["type"] == "dataset" and dataset["location"] == "s3://lake/gold/sales"
    assert dataset["depends_on"] == []  # reported lineage is kept apart from depends_on
    assert edges(api, gold, direction="up") == {
        (job, gold, "openlineage"),
        (raw, job, "openlineage"),
    }
    assert edges(api, raw, direction="down") == edges(api, gold, direction="up")
    # The edge names the run that reported it.
    answer = api.get(f"/assets/{gold}/lineage").json()
    assert {e["run_id"] for e in answer["edges"]} == {receipt_run(api, job)}
    found = api.get("/assets", params={"tag": "openlineage"}).json()
    assert found["total"] == 3


def receipt_run(api: httpx.Client, job: str) -> str:
    (run,) = api.get(f"/assets/{job}/runs").json()
    return str(run["run_id"])


def test_a_namespace_with_a_password_is_refused(api: httpx.Client) -> None:
    """A dataset's namespace becomes its asset's name and a label: a database URL with a
    password (postgres://user:pw@host) put the password in the catalogue."""
    event = run_event(inputs=[("postgres://dbuser:S3CRETPW@db.example:5432", "public.sales")])
    refused = api.post("/lineage", json=event)
    assert refused.status_code == 422 and "namespace" in refused.text, refused.text
    assert "S3CRETPW" not in refused.text
    assert api.get("/assets", params={"q": "public.sales"}).json()["total"] == 0
    fine = run_event(inputs=[("postgres://db.example:5432", "public.sales")])
    assert post(api, fine)["kind"] == "RunEvent"


def test_run_state_follows_the_events_in_any_order(api: httpx.Client) -> None:
    run_id = str(uuid.uuid4())
    job = ol_id("job", "nightly", "sales_daily")
    # Delivered out of order: the COMPLETE first.
    post(api, run_event("COMPLETE", run_id=run_id, time="2026-01-01T03:05:00Z"))
    post(api, run_event("START", run_id=run_id, time="2026-01-01T03:00:00Z"))
    post(api, run_event("OTHER", run_id=run_id, time="2026-01-01T03:06:00Z"))
    (run,) = api.get(f"/assets/{job}/runs").json()
    assert run["state"] == "COMPLETE"
    assert run["started_at"] == "2026-01-01T03:00:00Z"
    assert run["ended_at"] == "2026-01-01T03:05:00Z"
    failed = str(uuid.uuid4())
    post(api, run_event("START", run_id=failed, time="2026-01-02T03:00:00Z"))
    post(
        api,
        run_event(
            "FAIL",
            run_id=failed,
            time="2026-01-02T03:01:00Z",
            run={
                "runId": failed,
                "facets": {"errorMessage": {"message": "disk full", "programmingLanguage": "SQL"}},
            },
        ),
    )
    runs = api.get(f"/assets/{job}/runs").json()
    assert [(r["run_id"], r["state"]) for r in runs] == [(failed, "FAIL"), (run_id, "COMPLETE")]
    assert runs[0]["error"] == "disk full"
    assert api.get(f"/assets/{job}/runs", params={"limit": 1}).json()[0]["run_id"] == failed
    assert api.get("/assets/nope/runs").status_code == 404


def test_an_event_sent_twice_lands_once(api: httpx.Client) -> None:
    event = run_event()
    first = post(api, event)
    again = post(api, event, status=200)
    assert again["duplicate"] is True and again["job"] == first["job"]
    job = first["job"]
    assert len(api.get(f"/assets/{job}/runs").json()) == 1
    # The same run's next event is not a duplicate.
    post(api, {**event, "eventType": "OTHER"})
    # Nor is the same type at another time (a RUNNING heartbeat, say).
    post(api, {**event, "eventTime": "2026-01-01T03:00:01Z"})


def test_storage_namespaces_map_to_the_crawled_asset_at_that_location(api: httpx.Client) -> None:
    crawled = {
        "id": "crawled-sales",
        "name": "sales_raw",
        "type": "dataset",
        "location": "hdfs://nn:8020/lake/raw/sales",
        "volume": "hdfs://nn:8020/lake",
        "manifest_path": "raw/sales/MANIFEST.yaml",
        "schema": [{"name": "amount", "type": "double"}],
    }
    assert api.put("/assets/crawled-sales", json=crawled).status_code == 201
    local = {"name": "local_orders", "type": "dataset", "location": "file:///data/orders.parquet"}
    assert api.put("/assets/local-orders", json=local).status_code == 201
    event = run_event(
        inputs=[("hdfs://nn:8020", "/lake/raw/sales"), ("file", "/data/orders.parquet")],
        outputs=[("warehouse", "gold.sales")],
    )
    event["inputs"][0]["facets"] = {"schema": {"fields": [{"name": "other", "type": "int"}]}}
    receipt = post(api, event)
    assert receipt["inputs"] == ["crawled-sales", "local-orders"]
    # Never rewritten: the manifest's schema and revision stay.
    kept = api.get("/assets/crawled-sales").json()
    assert kept["revision"] == 1 and kept["schema"][0]["name"] == "amount"
    # What the event said is kept beside it.
    reported = api.get("/assets/crawled-sales/columns").json()
    assert [c["name"] for c in reported["schema"]] == ["other"]
    # A namespace that is no storage URL Cairn knows still gets its asset.
    warehouse = api.get(f"/assets/{receipt['outputs'][0]}").json()
    assert warehouse["name"] == "warehouse/gold.sales" and warehouse["location"] is None


def test_reported_edges_sit_beside_manifest_edges_and_survive_rewrites(
    api: httpx.Client,
) -> None:
    manifest = [
        {"id": "m-raw", "name": "m_raw", "type": "dataset", "location": "s3://lake/m/raw"},
        {
            "id": "m-gold",
            "name": "m_gold",
            "type": "dataset",
            "location": "s3://lake/m/gold",
            "depends_on": ["m_raw"],
        },
    ]
    assert api.post("/assets/bulk", json=manifest).json()["created"] == 2
    job = post(api, run_event(inputs=[("s3://lake", "m/raw")], outputs=[("s3://lake", "m/gold")]))[
        "job"
    ]
    both = {
        ("m-raw", "m-gold", "manifest"),
        ("m-raw", job, "openlineage"),
        (job, "m-gold", "openlineage"),
    }
    assert edges(api, "m-gold", direction="up") == both
    assert api.get("/assets/m-gold").json()["depends_on"] == ["m_raw"]  # not overwritten
    # A rewrite of the asset (what a crawl does) leaves the reported edges alone.
    rewritten = {**manifest[1], "description": "recrawled", "depends_on": []}
    assert api.put("/assets/m-gold", json=rewritten).json()["revision"] == 2
    assert edges(api, "m-gold", direction="up") == {
        ("m-raw", job, "openlineage"),
        (job, "m-gold", "openlineage"),
    }


def test_later_runs_replace_the_edges_run_and_earlier_ones_do_not(api: httpx.Client) -> None:
    late, early = str(uuid.uuid4()), str(uuid.uuid4())
    gold = post(api, run_event(run_id=late, time="2026-03-01T00:00:00Z"))["outputs"][0]
    post(api, run_event(run_id=early, time="2026-02-01T00:00:00Z"))
    answer = api.get(f"/assets/{gold}/lineage", params={"direction": "up"}).json()
    assert {e["run_id"] for e in answer["edges"]} == {late}


def test_schema_and_column_lineage_of_a_recorded_dbt_event(api: httpx.Client) -> None:
    event = json.loads(RECORDED.read_text())
    receipt = post(api, event)
    (model,) = receipt["outputs"]
    (source,) = receipt["inputs"]
    columns = api.get(f"/assets/{model}/columns").json()
    assert [c["name"] for c in columns["schema"]] == ["customer_id", "total"]
    assert columns["columns"]["total"] == [
        {
            "namespace": "duckdb:///srv/dbt/shop/shop.duckdb",
            "name": "shop.main_raw.orders",
            "field": "amount",
            "asset_id": source,
            "transformations": [],
        }
    ]
    assert columns["run_id"] == event["run"]["runId"]
    # The model's own asset carries the schema, so a search by column finds it.
    assert model in {
        a["id"] for a in api.get("/assets", params={"q": "customer_id"}).json()["items"]
    }
    empty = api.get(f"/assets/{source}/columns").json()
    assert empty["columns"] == {} and empty["schema"] is None


def test_columns_of_a_crawled_asset_answer_its_schema(
    catalogue: ThreadServer, api: httpx.Client, tmp_path: Path
) -> None:
    """``/columns`` read only what OpenLineage reported: a crawled Parquet or CSV asset, whose
    schema the crawler read from its file, answered ``schema: null``. It now answers the
    asset's schema when no event reported one, and says where the schema came from."""
    from cairn.client import CatalogueClient
    from crawler.crawl import Crawler
    from tests.test_crawl_e2e import make_volume

    make_volume(tmp_path / "lake")
    settings = Settings(data_dir=tmp_path / "state", catalogue_url=catalogue.url)
    report = Crawler(settings, catalogue_url=catalogue.url).crawl(str(tmp_path / "lake"))
    assert report.errors == [] and report.created == 4, report
    for name, columns in (
        ("sales_raw", ["store_id", "amount"]),
        ("sales_daily", ["day", "store_id", "amount"]),
    ):
        asset = api.get(f"/assets/by-name/{name}").json()
        assert [c["name"] for c in asset["schema"]] == columns  # what the crawler read
        answer = api.get(f"/assets/{asset['id']}/columns").json()
        assert answer["schema"] == asset["schema"], answer
        assert answer["schema_source"] == "asset" and answer["columns"] == {}
        with CatalogueClient(catalogue.url) as client:
            assert [c.name for c in client.columns(asset["id"]).schema_ or []] == columns
    schemaless = api.get("/assets/by-name/stores").json()
    answer = api.get(f"/assets/{schemaless['id']}/columns").json()
    assert answer["schema"] is None and answer["schema_source"] is None

    # What an event reports comes first: it is the newer word on the data as written.
    raw = api.get("/assets/by-name/sales_raw").json()
    event = run_event(outputs=[("file", raw["location"].removeprefix("file://"))])
    event["outputs"][0]["facets"] = {"schema": {"fields": [{"name": "other", "type": "int"}]}}
    assert post(api, event)["outputs"] == [raw["id"]]
    reported = api.get(f"/assets/{raw['id']}/columns").json()
    assert [c["name"] for c in reported["schema"]] == ["other"]
    assert reported["schema_source"] == "openlineage"


def test_job_and_dataset_events(api: httpx.Client) -> None:
    base = {"eventTime": "2026-01-01T00:00:00Z", "producer": "p", "schemaURL": SCHEMA_URL}
    dataset = {
        "namespace": "warehouse",
        "name": "dim.customers",
        "facets": {
            "schema": {
                "fields": [
                    {
                        "name": "address",
                        "type": "struct",
                        "fields": [{"name": "city", "type": "string"}],
                    }
                ]
            },
            "documentation": {"description": "One row per customer."},
        },
    }
    receipt = post(api, {**base, "dataset": dataset})
    assert receipt["kind"] == "DatasetEvent" and receipt["edges"] == 0
    (asset_id,) = receipt["outputs"]
    asset = api.get(f"/assets/{asset_id}").json()
    assert [c["name"] for c in asset["schema"]] == ["address", "address.city"]
    assert asset["description"] == "One row per customer."
    job = {"namespace": "nightly", "name": "designed"}
    designed = post(
        api,
        {
            **base,
            "job": job,
            "inputs": [dataset],
            "outputs": [{"namespace": "warehouse", "name": "x"}],
        },
    )
    assert designed["kind"] == "JobEvent" and designed["edges"] == 2
    answer = api.get(f"/assets/{designed['job']}/lineage").json()
    assert {e["run_id"] for e in answer["edges"]} == {None}
    assert api.get(f"/assets/{designed['job']}/runs").json() == []


def field_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json()["errors"]]


def test_bad_events_are_refused_naming_the_field(api: httpx.Client) -> None:
    good = run_event()
    assert field_of(api.post("/lineage", json={**good, "run": {}})) == ["run.runId"]
    assert field_of(api.post("/lineage", json={**good, "run": {"runId": "nope"}})) == ["run.runId"]
    assert field_of(api.post("/lineage", json={**good, "eventType": "DONE"})) == ["eventType"]
    assert field_of(api.post("/lineage", json={**good, "eventTime": "1700000000"})) == ["eventTime"]
    no_producer = {k: v for k, v in good.items() if k != "producer"}
    assert field_of(api.post("/lineage", json=no_producer)) == ["producer"]
    assert field_of(api.post("/lineage", json={**good, "job": {"name": "x"}})) == ["job.namespace"]
    assert field_of(api.post("/lineage", json={"eventTime": "2026-01-01T00:00:00Z"})) == ["run"]
    bad_schema = copy.deepcopy(good)
    bad_schema["outputs"][0]["facets"] = {"schema": {"fields": [{"type": "int"}]}}
    assert field_of(api.post("/lineage", json=bad_schema)) == ["outputs.0.facets.schema.fields.0"]
    bad_lineage = copy.deepcopy(good)
    bad_lineage["outputs"][0]["facets"] = {
        "columnLineage": {"fields": {"c": {"inputFields": [{}]}}}
    }
    assert field_of(api.post("/lineage", json=bad_lineage)) == [
        "outputs.0.facets.columnLineage.fields.c.inputFields.0"
    ]
    not_json = api.post("/lineage", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 422 and not_json.json()["errors"][0]["field"] == "(body)"
    # JSON that is not one event (an array of them, a string) is a 422 too; it was a 400.
    for body in ([good], "RunEvent"):
        refused = api.post("/lineage", json=body)
        assert field_of(refused) == ["(body)"]
        assert "one OpenLineage event" in refused.json()["errors"][0]["message"]
    # Nothing was written by the refused events.
    assert api.get("/assets", params={"tag": "openlineage"}).json()["total"] == 0


def test_writes_need_the_api_key(settings: Settings) -> None:
    from catalogue_service.app import create_app

    keyed = settings.model_copy(update={"api_keys": [SecretStr("ol-key")]})
    with ThreadServer(create_app(keyed)) as server:
        url = server.url + "/api/v1/lineage"
        assert httpx.post(url, json=run_event()).status_code == 401
        wrong = httpx.post(url, json=run_event(), headers={"Authorization": "Bearer no"})
        assert wrong.status_code == 401
        ok = httpx.post(url, json=run_event(), headers={"Authorization": "Bearer ol-key"})
        assert ok.status_code == 201


def test_a_mongo_catalogue_from_before_lineage_finds_its_assets_by_location(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Migration 2 copies each stored asset's location into the field the lookup queries."""
    import asyncio

    from catalogue_service.backends.base import PreparedWrite
    from catalogue_service.backends.mongo import MongoStore

    settings = backend_settings(request, "mongo", data_dir=tmp_path / "data")

    async def scenario() -> str | None:
        store = MongoStore(settings)
        await store.open()
        crawled = AssetWrite.model_validate(
            {"id": "old", "name": "old", "type": "dataset", "location": "s3://lake/old"}
        )
        await store.upsert([PreparedWrite.of(0, crawled)], datetime.now(UTC))
        # As a catalogue written before migration 2 left it: no top-level location.
        await store.assets.update_one({"_id": "old"}, {"$unset": {"location": ""}})
        await store.db.get_collection("cairn_meta").update_one(
            {"_id": "schema:catalogue"}, {"$set": {"version": 1}}
        )
        assert await store.by_location(["s3://lake/old"]) == {}
        await store.close()
        reopened = MongoStore(settings)
        await reopened.open()
        try:
            found = await reopened.by_location(["s3://lake/old"])
            return found["s3://lake/old"][0].id if found else None
        finally:
            await reopened.close()

    assert asyncio.run(scenario()) == "old"

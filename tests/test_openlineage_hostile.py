"""Hostile OpenLineage events: each gets a clear 4xx or is stored safely, never a 500; and
reported lineage survives the crawls that rewrite the assets it links."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.models import MAX_NAME
from cairn.settings import Settings
from catalogue_service.app import create_app
from catalogue_service.openlineage import ol_id
from tests.conftest import ProcessServer, ThreadServer, cairn_env, run_cairn
from tests.test_openlineage_api import run_event


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data = tmp_path_factory.mktemp("hostile") / "data"
    with (
        ThreadServer(create_app(Settings(data_dir=data))) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=120) as client,
    ):
        yield client


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return dict(response.json())


def fields(response: httpx.Response) -> list[str]:
    return [e["field"] for e in problem(response, 422)["errors"]]


def test_a_body_over_the_size_cap_is_413_before_it_is_read(api: httpx.Client) -> None:
    event = run_event()
    event["run"]["facets"] = {"blob": {"text": "x" * (17 * 1024 * 1024)}}
    found = problem(api.post("/lineage", json=event), 413)
    assert "larger than" in found["detail"]


def test_a_big_facet_under_the_cap_is_accepted_and_not_kept(api: httpx.Client) -> None:
    event = run_event(job="big-facet")
    event["run"]["facets"] = {"notes": {"text": "x" * (8 * 1024 * 1024)}}
    receipt = api.post("/lineage", json=event)
    assert receipt.status_code == 201, receipt.text
    job = api.get(f"/assets/{receipt.json()['job']}").text
    assert len(job) < 10_000  # facets Cairn does not use are not copied into the asset


def test_too_many_facets_and_deep_nesting_name_the_field(api: httpx.Client) -> None:
    event = run_event()
    event["job"]["facets"] = {f"f{i}": {} for i in range(101)}
    assert fields(api.post("/lineage", json=event)) == ["job.facets"]
    deep: Any = "bottom"
    for _ in range(40):
        deep = {"d": deep}
    event = run_event()
    event["outputs"][0]["facets"] = {"custom": deep}
    response = api.post("/lineage", json=event)
    assert fields(response) == ["outputs.0.facets"]
    assert "nested more than 32 levels" in response.text
    # Deeper than the JSON parser goes: the 422 any route answers for a body it cannot
    # parse, naming the body and why, not a crash.
    abyss = "[" * 5000 + "]" * 5000
    text = json.dumps(run_event()).replace('"inputs": [', '"inputs": [' + abyss + ",", 1)
    refused = api.post("/lineage", content=text, headers={"content-type": "application/json"})
    assert refused.status_code == 422, refused.text
    assert fields(refused) == ["(body)"] and "too deeply" in refused.text


def test_ten_thousand_inputs_are_refused_with_the_limit(api: httpx.Client) -> None:
    event = run_event(inputs=[("s3://lake", f"part-{i}") for i in range(10_000)])
    response = api.post("/lineage", json=event)
    assert fields(response) == ["inputs"]
    assert "at most 1000" in response.text
    # The limit itself is fine: a thousand inputs land, each an asset and an edge.
    event = run_event(job="wide", inputs=[("s3://lake", f"part-{i}") for i in range(1000)])
    receipt = api.post("/lineage", json=event)
    assert receipt.status_code == 201, receipt.text
    assert receipt.json()["edges"] == 1001
    up = api.get(f"/assets/{receipt.json()['job']}/lineage", params={"direction": "up"}).json()
    assert len(up["nodes"]) == 1001


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ("job.name", ("job", "name")),
        ("job.namespace", ("job", "namespace")),
        ("outputs.0.name", ("outputs", 0, "name")),
        ("inputs.0.namespace", ("inputs", 0, "namespace")),
    ],
)
@pytest.mark.parametrize("control", ["\x00", "\n", "\x1b[31m", "\x7f"])
def test_control_characters_in_names_are_refused(
    api: httpx.Client, where: str, path: tuple[Any, ...], control: str
) -> None:
    event = run_event()
    holder: Any = event
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = f"bad{control}name"
    response = api.post("/lineage", json=event)
    assert fields(response) == [where]
    assert "control characters" in response.text


def test_a_schema_facet_naming_a_column_twice_names_the_second(api: httpx.Client) -> None:
    event = run_event()
    columns = [{"name": "id", "type": "int"}, {"name": "x"}, {"name": "id", "type": "string"}]
    event["outputs"][0]["facets"] = {"schema": {"fields": columns}}
    response = api.post("/lineage", json=event)
    assert fields(response) == ["outputs.0.facets.schema.fields.2.name"]
    assert "'id'" in response.text and "twice" in response.text, response.text


def test_control_characters_in_a_schema_column_are_refused(api: httpx.Client) -> None:
    event = run_event()
    event["outputs"][0]["facets"] = {"schema": {"fields": [{"name": "a\x00b", "type": "int"}]}}
    assert fields(api.post("/lineage", json=event)) == ["outputs.0.facets.schema.fields.0.name"]


@pytest.mark.parametrize(
    "namespace",
    ["my-team", "weird+scheme://host:1/x", "s3://", "file", "kafka://broker:9092", "ünïcødé"],
)
def test_any_namespace_gets_an_asset(api: httpx.Client, namespace: str) -> None:
    name = f"t-{uuid.uuid4().hex[:6]}"
    receipt = api.post("/lineage", json=run_event(outputs=[(namespace, name)]))
    assert receipt.status_code == 201, receipt.text
    (asset_id,) = receipt.json()["outputs"]
    assert asset_id == ol_id("dataset", namespace, name)
    asset = api.get(f"/assets/{asset_id}").json()
    assert asset["labels"] == {"openlineage_namespace": namespace, "openlineage_name": name}


def test_long_names_are_kept_apart(api: httpx.Client) -> None:
    stem = "s" * 1000
    receipt = api.post(
        "/lineage", json=run_event(outputs=[("warehouse", stem + "a"), ("warehouse", stem + "b")])
    )
    assert receipt.status_code == 201, receipt.text
    names = [api.get(f"/assets/{i}").json()["name"] for i in receipt.json()["outputs"]]
    assert len(set(names)) == 2 and all(len(n) <= MAX_NAME for n in names)
    too_long = api.post("/lineage", json=run_event(outputs=[("warehouse", "n" * 1025)]))
    assert fields(too_long) == ["outputs.0.name"]


def test_a_dataset_both_read_and_written_maps_once(api: httpx.Client) -> None:
    both = ("s3://lake", "cycle/table")
    receipt = api.post("/lineage", json=run_event(job="cycle", inputs=[both], outputs=[both]))
    assert receipt.status_code == 201, receipt.text
    body = receipt.json()
    assert body["inputs"] == body["outputs"]
    lineage = api.get(f"/assets/{body['job']}/lineage").json()
    assert {(e["source"], e["target"]) for e in lineage["edges"]} == {
        (body["inputs"][0], body["job"]),
        (body["job"], body["inputs"][0]),
    }


# --- a crawl after OpenLineage edges exist ----------------------------------------------------


def test_a_crawl_keeps_the_edges_openlineage_reported(
    tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    lake = tmp_path / "lake"
    (lake / "raw").mkdir(parents=True)
    (lake / "gold").mkdir()
    (lake / "raw" / "orders.csv").write_text("id,amount\n1,2.5\n")
    (lake / "gold" / "totals.csv").write_text("amount\n2.5\n")
    (lake / "raw" / "MANIFEST.yaml").write_text(
        "name: orders\ntype: dataset\nlocation: orders.csv\n"
    )
    (lake / "gold" / "MANIFEST.yaml").write_text(
        "name: totals\ntype: dataset\nlocation: totals.csv\ndepends_on: [orders]\n"
    )
    env = cairn_env(tmp_path / "crawler")

    def crawl() -> None:
        done = run_cairn("crawl", str(lake), "--catalogue", catalogue_process.url, env=env)
        assert done.returncode == 0, done.stdout + done.stderr

    crawl()
    base = catalogue_process.url + "/api/v1"
    orders = httpx.get(base + "/assets/by-name/orders").json()
    totals = httpx.get(base + "/assets/by-name/totals").json()
    event = run_event(
        job="totals",
        inputs=[("file", str(lake / "raw" / "orders.csv"))],
        outputs=[("file", str(lake / "gold" / "totals.csv"))],
    )
    receipt = httpx.post(base + "/lineage", json=event).json()
    assert receipt["inputs"] == [orders["id"]] and receipt["outputs"] == [totals["id"]]
    job = receipt["job"]
    reported = {(orders["id"], job, "openlineage"), (job, totals["id"], "openlineage")}

    def edges() -> set[tuple[str, str, str]]:
        answer = httpx.get(base + f"/assets/{totals['id']}/lineage", params={"direction": "up"})
        return {(e["source"], e["target"], e["origin"]) for e in answer.json()["edges"]}

    assert edges() == reported | {(orders["id"], totals["id"], "manifest")}
    # The manifest changes (its depends_on goes away) and the lake is crawled again.
    (lake / "gold" / "MANIFEST.yaml").write_text(
        "name: totals\ntype: dataset\nlocation: totals.csv\ndescription: now standalone\n"
    )
    crawl()
    recrawled = httpx.get(base + f"/assets/{totals['id']}").json()
    assert recrawled["description"] == "now standalone" and recrawled["depends_on"] == []
    assert edges() == reported
    # OpenLineage never rewrote the crawled assets.
    assert httpx.get(base + f"/assets/{orders['id']}").json()["revision"] == orders["revision"]

"""Metric-store API on both backends: profiles, drift flags, checks, restarts, metric sets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest

from cairn.settings import Settings
from featurestore_service.app import create_app
from featurestore_service.backends import create_store
from featurestore_service.blobstore import TableBlobs
from featurestore_service.metrics.store import create_metric_store
from featurestore_service.service import FeatureStore
from featurestore_service.table_limits import TableLimits
from featurestore_service.tables import DecodeSlots
from tests.conftest import ThreadServer, backend_settings, free_port
from tests.test_featurestore_api import parquet_bytes, upload, values

WAIT = 120.0  # profiling runs in the background: poll until it is done (not a speed check)


@pytest.fixture
def fs_settings(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Settings:
    return backend_settings(
        request, backend, data_dir=tmp_path / "fs", catalogue_url=f"http://127.0.0.1:{free_port()}"
    )


@pytest.fixture
def fs(fs_settings: Settings) -> Iterator[httpx.Client]:
    with (
        ThreadServer(create_app(fs_settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client,
    ):
        yield client


def table(seed: int, shift: float = 0.0, rows: int = 20_000) -> pa.Table:
    rng = np.random.default_rng(seed)
    p = [0.1, 0.2, 0.3, 0.4] if shift else [0.4, 0.3, 0.2, 0.1]
    return pa.table(
        {
            "spend": rng.normal(100 + 30 * shift, 20, rows),
            "plan": rng.choice(["free", "pro", "team", "corp"], rows, p=p),
            "visits": pa.array(
                rng.integers(0, 50, rows), mask=rng.random(rows) < 0.2 * (1 + shift)
            ),
        }
    )


def profiled(fs: httpx.Client, name: str, version: int) -> dict:
    deadline = time.monotonic() + WAIT
    while True:
        response = fs.get(f"/featuresets/{name}/versions/{version}/profile")
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "done", response.text
            return response.json()
        assert response.status_code == 202, response.text
        time.sleep(0.1)


def test_versions_are_profiled_and_drift_is_flagged(fs: httpx.Client) -> None:
    for seed, shift in ((1, 0.0), (2, 0.0), (3, 1.0)):
        assert upload(fs, "churn", parquet_bytes(table(seed, shift))).status_code == 201
    first = profiled(fs, "churn", 1)
    columns = {c["name"]: c for c in first["columns"]}
    assert first["rows"] == 20_000 and first["status"] == "done" and "sketches" not in first
    assert columns["spend"]["mean"] == pytest.approx(100, abs=1)
    assert columns["plan"]["distinct"] == 4 and columns["plan"]["top"][0]["value"] == "free"
    assert columns["visits"]["null_rate"] == pytest.approx(0.2, abs=0.02)
    profiled(fs, "churn", 2)
    third = profiled(fs, "churn", 3)
    assert third["drift"]["against"] == 2
    assert set(third["drift"]["drifted_columns"]) == {"spend", "plan", "visits"}

    quiet = fs.get("/featuresets/churn/versions/2/drift").json()["drift"]
    assert quiet["against"] == 1 and quiet["drifted"] is False
    against = fs.get("/featuresets/churn/versions/3/drift", params={"against": 1}).json()
    assert against["drift"]["against"] == 1 and against["drift"]["drifted"] is True
    by_column = {c["name"]: c for c in against["drift"]["columns"]}
    assert by_column["spend"]["test"] == "ks" and by_column["spend"]["p_value"] < 1e-6
    assert by_column["plan"]["test"] == "chi2"

    history = fs.get("/featuresets/churn/metrics").json()["items"]
    assert [(i["version"], i["drifted"]) for i in history] == [(3, True), (2, False), (1, False)]
    assert history[0]["null_rates"]["visits"] == pytest.approx(0.4, abs=0.02)

    fs.post("/featuresets", json=values("plain", ("a", "bool", True)))
    refused = fs.get("/featuresets/plain/versions/1/profile")
    assert refused.status_code == 404 and "not a table" in refused.json()["detail"]
    assert fs.get("/featuresets/churn/versions/9/profile").status_code == 404
    bad = fs.get("/featuresets/churn/versions/3/drift", params={"against": "x"})
    assert bad.status_code in (400, 422) and "against" in bad.text


def test_checks_reject_or_flag_versions(fs: httpx.Client) -> None:
    bad_checks = fs.put("/featuresets/scored/checks", json={"checks": [{"type": "nope"}]})
    assert bad_checks.status_code == 422 and "checks" in bad_checks.text
    declared = fs.put(
        "/featuresets/scored/checks",
        json={
            "checks": [
                {"type": "range", "column": "spend", "min": 0, "on_fail": "reject"},
                {"type": "not_null", "column": "visits"},
            ]
        },
    )
    assert declared.status_code == 200, declared.text
    negative = pa.table({"spend": [5.0, -1.0, 3.0], "visits": [1, 2, 3]})
    refused = upload(fs, "scored", parquet_bytes(negative))
    assert refused.status_code == 422, refused.text
    assert "-1.0" in refused.text and "range(spend)" in refused.text
    assert fs.get("/featuresets/scored").status_code == 404  # nothing was stored

    gaps = pa.table({"spend": [5.0, 1.0], "visits": pa.array([1, None])})
    assert upload(fs, "scored", parquet_bytes(gaps)).status_code == 201
    checks = {c["name"]: c for c in profiled(fs, "scored", 1)["checks"]}
    assert checks["range(spend)"]["passed"] is True
    assert checks["not_null(visits)"]["passed"] is False
    assert checks["not_null(visits)"]["failing"] == ["row 1"]
    history = fs.get("/featuresets/scored/metrics").json()["items"]
    assert history[0]["checks_failed"] == ["not_null(visits)"]


def test_mastro_metric_store_routes(fs: httpx.Client) -> None:
    deequ = {
        "resultKey": {"dataSetDate": 1700000000000, "tags": {"env": "prod"}},
        "analyzerContext": {
            "metricMap": [
                {
                    "analyzer": {"analyzerName": "Completeness", "column": "spend"},
                    "metric": {
                        "metricName": "DoubleMetric",
                        "entity": "Column",
                        "instance": "spend",
                        "name": "Completeness",
                        "value": 0.98,
                    },
                }
            ]
        },
    }
    body = {"name": "churn-quality", "version": "v1", "labels": {"team": "ml"}, "metrics": [deequ]}
    created = fs.put("/metricstore/", json=body)
    assert created.status_code == 201, created.text
    fs.put("/metricstore/", json={**body, "version": "v2", "labels": {"team": "ops"}})
    page = fs.get("/metricstore/name/churn-quality").json()
    assert page["pagination"]["total"] == 2 and page["data"][0]["version"] == "v2"
    assert (
        page["data"][1]["metrics"][0]["analyzerContext"]["metricMap"][0]["metric"]["value"] == 0.98
    )
    labelled = fs.post("/metricstore/labels", json={"labels": {"team": "ml"}}).json()
    assert [d["version"] for d in labelled["data"]] == ["v1"]
    broken = fs.put("/metricstore/", json={**body, "metrics": [{"analyzerContext": {}}]})
    # Mastro's routes answer a bad body with Mastro's 400 and its {message, status, error}.
    assert broken.status_code == 400 and "metricMap" in broken.json()["message"]
    assert fs.get("/metricstore/name/nothing").status_code == 404


def test_restart_finishes_pending_profiles(fs_settings: Settings) -> None:
    """A version committed before its profile was queued, and one queued but not profiled."""

    async def write_without_worker() -> None:
        store = create_store(fs_settings)
        blobs = TableBlobs.from_settings(
            fs_settings, TableLimits.from_settings(fs_settings), DecodeSlots(1)
        )
        metrics = create_metric_store(fs_settings)
        await store.open()
        blobs.open()
        await metrics.open()
        service = FeatureStore(store, blobs, fs_settings)
        for seed in (1, 2):
            data = parquet_bytes(table(seed))

            async def chunks(data: bytes = data) -> object:
                yield data

            from cairn.models import FeatureSetMeta

            stored = await service.create_table(FeatureSetMeta(name="crashy"), chunks())
            if seed == 2:  # queued, then the process died before profiling it
                await metrics.enqueue("featureset:crashy", stored.version, {
                    "kind": "featureset-table", "blob": stored.blob,
                })  # fmt: skip
        await metrics.close()
        await store.close()

    asyncio.run(write_without_worker())
    with (
        ThreadServer(create_app(fs_settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client,
    ):
        assert profiled(client, "crashy", 1)["rows"] == 20_000
        second = profiled(client, "crashy", 2)
        assert second["drift"]["against"] == 1 and second["drift"]["drifted"] is False


def test_metrics_cli_show_and_drift(fs: httpx.Client) -> None:
    from typer.testing import CliRunner

    from cairn.cli import app

    for seed, shift in ((1, 0.0), (2, 1.0)):
        assert upload(fs, "cli", parquet_bytes(table(seed, shift))).status_code == 201
    profiled(fs, "cli", 2)
    url = str(fs.base_url).removesuffix("/api/v1/").removesuffix("/api/v1")
    runner = CliRunner()
    shown = runner.invoke(app, ["metrics", "show", "cli", "--url", url])
    assert shown.exit_code == 0, shown.output
    assert "cli v2: 20000 rows" in shown.stdout and "visits" in shown.stdout
    drifted = runner.invoke(app, ["metrics", "drift", "cli", "2", "--url", url])
    assert drifted.exit_code == 3, drifted.output
    assert "spend: DRIFT (ks" in drifted.stdout
    same = runner.invoke(app, ["metrics", "drift", "cli", "1", "--url", url, "--json"])
    assert same.exit_code == 0 and '"drift": null' in same.stdout
    missing = runner.invoke(app, ["metrics", "show", "nope", "--url", url])
    assert missing.exit_code == 1 and "nope" in missing.output


def test_training_serving_skew(fs: httpx.Client) -> None:
    assert upload(fs, "served", parquet_bytes(table(1))).status_code == 201
    profiled(fs, "served", 1)
    nothing = fs.get("/featuresets/served/skew")
    assert nothing.status_code == 404 and "CAIRN_METRICS_SKEW_SAMPLE_RATE" in nothing.text

    def send(rows: list[dict]) -> None:
        for start in range(0, len(rows), 5000):
            sent = fs.post(
                "/featuresets/served/skew/samples", json={"rows": rows[start : start + 5000]}
            )
            assert sent.status_code == 202, sent.text

    send(table(2).to_pylist())  # served values like the training data
    quiet = fs.get("/featuresets/served/skew").json()
    assert quiet["version"] == 1 and quiet["skew"]["drifted"] is False, quiet
    assert quiet["rows_seen"] == 20_000 and quiet["rows_sampled"] == 10_000

    send(table(3, shift=1.0).to_pylist() * 3)  # then serving moves away from it
    moved = fs.get("/featuresets/served/skew").json()["skew"]
    assert "spend" in moved["drifted_columns"], moved
    bad = fs.post("/featuresets/served/skew/samples", json={"rows": []})
    assert bad.status_code == 422 and "rows" in bad.text
    assert fs.post("/featuresets/nope/skew/samples", json={"rows": [{}]}).status_code == 404


def test_skew_sampler_is_bounded_and_uniform() -> None:
    from featurestore_service.metrics.skew import MAX_SETS, SkewSampler

    sampler = SkewSampler(rate=1.0, rows=100, seed=1)
    for i in range(MAX_SETS + 5):
        sampler.observe(f"set{i}", [{"x": 1, "s": "y" * 5000, "n": {"deep": [1]}}])
    assert sampler.sample("set0", ["x"]) is None  # the oldest sets made room
    for i in range(10_000):
        sampler.observe("big", [{"x": i}])
    got = sampler.sample("big", ["x"])
    assert got is not None
    sample, seen = got
    assert seen == 10_000 and sample.num_rows == 100
    assert 2_500 < float(np.mean(sample.column("x").to_numpy())) < 7_500
    off = SkewSampler(rate=0.0, rows=100)
    off.observe("a", [{"x": 1}])
    assert off.sample("a", ["x"]) is None
    wide = sampler.sample(f"set{MAX_SETS + 4}", ["x", "s", "n"])
    assert wide is not None and len(wide[0].column("s")[0].as_py()) == 1000


def test_asset_profiles_are_versioned_by_fingerprint(fs: httpx.Client) -> None:
    import orjson

    from featurestore_service.metrics.profile import profile_table

    def send(fingerprint: str, data: pa.Table) -> httpx.Response:
        body = {"fingerprint": fingerprint, "profile": profile_table(data), "checks": []}
        return fs.put("/metrics/assets/a-9/profile", content=orjson.dumps(body))

    assert fs.get("/metrics/assets/a-9/profile").status_code == 404
    first = send("p:1:1", table(1))
    assert first.status_code == 201 and first.json()["version"] == 1
    again = send("p:1:1", table(1))
    assert again.status_code == 200 and again.json() == {
        "subject": "asset:a-9",
        "version": 1,
        "unchanged": True,
    }
    second = send("p:1:2", table(2, shift=1.0))
    assert second.status_code == 201 and second.json()["drifted"] is True
    latest = fs.get("/metrics/assets/a-9/profile").json()
    assert latest["version"] == 2 and latest["source"]["fingerprint"] == "p:1:2"
    assert fs.get("/metrics/assets/a-9/profile", params={"version": 1}).json()["version"] == 1
    drift = fs.get("/metrics/assets/a-9/drift", params={"version": 2, "against": 1}).json()
    assert drift["drift"]["against"] == 1 and drift["drift"]["drifted"] is True
    items = fs.get("/metrics/assets/a-9/history").json()["items"]
    assert [(i["version"], i["drifted"]) for i in items] == [(2, True), (1, False)]
    broken = fs.put("/metrics/assets/a-9/profile", json={"fingerprint": "x", "profile": {}})
    assert broken.status_code == 422 and "rows" in broken.text


def test_drifted_sets_are_a_catalogue_search_facet(tmp_path: Path) -> None:
    from catalogue_service.app import create_app as catalogue_app

    with ThreadServer(catalogue_app(Settings(data_dir=tmp_path / "cat"))) as catalogue:
        settings = Settings(data_dir=tmp_path / "fs", catalogue_url=catalogue.url)
        with (
            ThreadServer(create_app(settings)) as server,
            httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client,
        ):
            for seed, shift in ((1, 0.0), (2, 1.0)):
                assert (
                    upload(client, "moving", parquet_bytes(table(seed, shift))).status_code == 201
                )
            assert upload(client, "steady", parquet_bytes(table(1))).status_code == 201
            profiled(client, "moving", 2)
            profiled(client, "steady", 1)
            deadline = time.monotonic() + WAIT
            while True:
                found = httpx.get(
                    catalogue.url + "/api/v1/assets", params={"tag": "drifted"}
                ).json()
                if found["total"] or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert [a["name"] for a in found["items"]] == ["featureset:moving"]
            facets = httpx.get(catalogue.url + "/api/v1/assets", params={"q": "moving"}).json()
            assert facets["facets"]["tags"].get("drifted") == 1

"""Metric-store API on both backends: profiles, drift flags, checks, restarts, metric sets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pytest

from cairn.settings import Settings
from featurestore_service.app import create_app
from featurestore_service.backends import create_store
from featurestore_service.backends.base import FeatureSetStore
from featurestore_service.blobstore import TableBlobs
from featurestore_service.metrics.store import create_metric_store
from featurestore_service.metrics.store.base import MetricStore, summary_of
from featurestore_service.metrics.worker import subject_of
from featurestore_service.service import FeatureStore
from featurestore_service.table_limits import TableLimits
from featurestore_service.tables import DecodeSlots
from tests.conftest import ThreadServer, backend_settings, refused_port
from tests.test_featurestore_api import parquet_bytes, upload, values

WAIT = 120.0  # profiling runs in the background: poll until it is done (not a speed check)


@pytest.fixture
def fs_settings(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Settings:
    return backend_settings(
        request,
        backend,
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
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
    # As Mastro's other routes: page 0 is page 1, and an empty result is a 404.
    first = fs.get("/metricstore/name/churn-quality", params={"page": 0}).json()
    assert first["pagination"]["page"] == 1 and first["data"] == page["data"]
    zero = fs.post("/metricstore/labels", json={"labels": {"team": "ml"}, "page": 0}).json()
    assert zero["pagination"]["page"] == 1 and zero["data"] == labelled["data"]
    unmatched = fs.post("/metricstore/labels", json={"labels": {"team": "nobody"}})
    assert unmatched.status_code == 404 and unmatched.json()["status"] == 404


def test_numbers_past_what_the_stores_hold_are_a_4xx_naming_the_parameter(
    fs: httpx.Client,
) -> None:
    """Versions are 64-bit integers in both stores and Mastro's pages 32-bit ones: a larger
    number in a query string or a body is refused by name, never passed down to the store."""
    assert upload(fs, "big", parquet_bytes(table(1, rows=100))).status_code == 201
    profiled(fs, "big", 1)
    huge = str(2**63)
    for path, params in (
        ("/featuresets/big/versions/1/drift", {"against": huge}),
        ("/metrics/assets/a-1/profile", {"version": huge}),
        ("/metrics/assets/a-1/drift", {"version": huge}),
        ("/metrics/assets/a-1/drift", {"version": "1", "against": huge}),
    ):
        answer = fs.get(path, params=params)
        assert answer.status_code == 422, (path, params, answer.text)
        name = "against" if "against" in params else "version"
        assert f"{name}: must be between 1 and {2**63 - 1}" in answer.json()["detail"]
    body = {"name": "q", "metrics": [{"any": 1}]}
    assert fs.put("/metricstore/", json=body).status_code == 201
    for page in (2**31, 2**63):
        by_name = fs.get("/metricstore/name/q", params={"page": page, "limit": 10})
        by_labels = fs.post("/metricstore/labels", json={"labels": {"a": "b"}, "page": page})
        for answer in (by_name, by_labels):
            assert answer.status_code == 400, answer.text
            assert "page" in answer.json()["message"] and str(2**31 - 1) in answer.json()["message"]


async def _stores_without_workers(
    settings: Settings,
) -> tuple[FeatureSetStore, TableBlobs, MetricStore]:
    """The feature store's stores, opened in this process without the app's background
    workers, so a test decides when (and whether) a profile is taken."""
    store = create_store(settings)
    blobs = TableBlobs.from_settings(settings, TableLimits.from_settings(settings), DecodeSlots(1))
    metrics = create_metric_store(settings)
    await store.open()
    blobs.open()
    await metrics.open()
    return store, blobs, metrics


def test_restart_finishes_pending_profiles(fs_settings: Settings) -> None:
    """A version committed before its profile was queued, and one queued but not profiled."""

    async def write_without_worker() -> None:
        store, blobs, metrics = await _stores_without_workers(fs_settings)
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
        # Named values committed before their profile was queued: found again on start.
        from cairn.models import FeatureSetWrite

        named = values("crashy_values", ("threshold", "float", 1.5))
        warn = [{"type": "range", "column": "threshold", "max": 1, "on_fail": "warn"}]
        await metrics.put_checks("featureset:crashy_values", warn)
        await service.create(FeatureSetWrite.model_validate(named))
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
        # Asked by /metrics, which (unlike /profile) queues nothing itself.
        deadline = time.monotonic() + WAIT
        while True:
            items = client.get("/featuresets/crashy_values/metrics").json()["items"]
            if (items and items[0]["status"] == "done") or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert [(i["version"], i["status"], i["checks_failed"]) for i in items] == [
            (1, "done", ["range(threshold)"])
        ]


def test_a_failing_profile_is_retried_at_most_5_times(fs_settings: Settings) -> None:
    """README (Metric store): a profile that fails for a reason that may pass (here its table
    is missing from the blob store, a 503 to readers) is retried with backoff, at most 5
    times, then marked failed with the reason and never tried again."""
    from featurestore_service.metrics.worker import MAX_ATTEMPTS, ProfileWorker

    assert MAX_ATTEMPTS == 5
    missing = "0" * 64
    far_future = time.time() + 10**9  # every backoff has run out by then

    async def attempts() -> list[tuple[int, str]]:
        store, blobs, metrics = await _stores_without_workers(fs_settings)
        seen = []
        try:
            worker = ProfileWorker(FeatureStore(store, blobs, fs_settings), metrics, fs_settings)
            source = {"kind": "featureset-table", "blob": missing}
            await metrics.enqueue("featureset:ghost", 1, source)
            while due := await metrics.due(far_future, 20):
                assert len(due) == 1 and len(seen) <= MAX_ATTEMPTS, due
                seen.append((due[0].attempts, due[0].status))
                await worker.profile(due[0])
            record = await metrics.get("featureset:ghost", 1)
            assert record is not None
            seen.append((record.attempts, record.status))
            assert missing in (record.error or ""), record.error
        finally:
            await metrics.close()
            blobs.close()
            await store.close()
        return seen

    assert asyncio.run(attempts()) == [
        (0, "pending"),
        (1, "pending"),
        (2, "pending"),
        (3, "pending"),
        (4, "pending"),
        (5, "failed"),
    ]


def test_a_finished_profile_keeps_its_flag_change_until_it_is_passed_on(
    fs_settings: Settings,
) -> None:
    """MetricStore.finish records, in the same write, that the subject's flags may have changed;
    the change outlives a reopen, and passing it on drops only what was read: a record finished
    again meanwhile (a later version compared anew) stays owed."""
    source = {"kind": "featureset-table", "blob": "0" * 64}
    profile = {"rows": 3, "columns": []}

    async def scenario() -> list[list[tuple[str, int]]]:
        seen = []
        metrics = create_metric_store(fs_settings)
        await metrics.open()
        try:
            for version in (1, 2):
                await metrics.enqueue("featureset:flagged", version, source)
            await metrics.enqueue("featureset:other", 1, source)
            seen.append([(c.subject, c.version) for c in await metrics.flag_changes(10)])
            for subject, version in (("featureset:flagged", 1), ("featureset:flagged", 2)):
                await metrics.finish(subject, version, profile, summary_of(profile))
        finally:
            await metrics.close()
        metrics = create_metric_store(fs_settings)
        await metrics.open()
        try:
            changes = await metrics.flag_changes(10)
            seen.append(sorted((c.subject, c.version) for c in changes))
            assert len(await metrics.flag_changes(1)) == 1
            await metrics.finish("featureset:flagged", 2, profile, summary_of(profile))
            await metrics.flags_passed_on(changes)
            seen.append([(c.subject, c.version) for c in await metrics.flag_changes(10)])
            await metrics.flags_passed_on(await metrics.flag_changes(10))
            seen.append([(c.subject, c.version) for c in await metrics.flag_changes(10)])
        finally:
            await metrics.close()
        return seen

    assert asyncio.run(scenario()) == [
        [],
        [("featureset:flagged", 1), ("featureset:flagged", 2)],
        [("featureset:flagged", 2)],
        [],
    ]


def test_drift_found_by_a_process_that_died_before_queueing_its_registration_arrives(
    fs_settings: Settings, tmp_path: Path
) -> None:
    """The write's registration reached the catalogue before the profile was done; the process
    then stored a drifted profile and died before queueing the registration that carries the
    tag. After the restart the catalogue gets the tag, with no further write."""
    from cairn.models import FeatureSetMeta
    from catalogue_service.app import create_app as catalogue_app
    from featurestore_service.metrics.worker import ProfileWorker
    from featurestore_service.outbox import CatalogueRegistrar

    with ThreadServer(catalogue_app(Settings(data_dir=tmp_path / "cat"))) as catalogue:
        settings = fs_settings.model_copy(update={"catalogue_url": catalogue.url})

        def registered() -> dict:
            found = httpx.get(f"{catalogue.url}/api/v1/assets/featureset:moved", timeout=10)
            assert found.status_code == 200, found.text
            return found.json()

        async def crash_after_the_profile() -> None:
            store, blobs, metrics = await _stores_without_workers(settings)
            try:
                service = FeatureStore(store, blobs, settings)
                worker = ProfileWorker(service, metrics, settings)  # nothing to pass flags to
                service.asset_tags = worker.catalogue_tags
                for seed, shift in ((1, 0.0), (2, 1.0)):

                    async def chunks(data: bytes = parquet_bytes(table(seed, shift))) -> object:
                        yield data

                    stored = await service.create_table(FeatureSetMeta(name="moved"), chunks())
                    worker.notify(stored)
                async with httpx.AsyncClient() as client:
                    await CatalogueRegistrar(service, settings).deliver_due(client)
                assert await store.outbox_pending() == 0
                await worker.round()
                record = await metrics.get(subject_of("moved"), 2)
                assert record is not None and record.summary is not None
                assert record.summary["drifted"] is True
            finally:
                await metrics.close()
                blobs.close()
                await store.close()

        asyncio.run(crash_after_the_profile())
        before = registered()
        assert before["labels"]["version"] == 2 and "drifted" not in before["tags"]
        with ThreadServer(create_app(settings)):
            deadline = time.monotonic() + WAIT
            while "drifted" not in (after := registered())["tags"]:
                assert time.monotonic() < deadline, after
                time.sleep(0.1)
        assert after["labels"]["version"] == 2


def test_catalogue_tags_come_from_the_newest_finished_profile(fs_settings: Settings) -> None:
    """A set's catalogue tags were read from its newest profile record even while pending:
    the registration of a new version's write (sent before its profile is done) dropped
    "drifted" until that profile was done."""
    from cairn.models import FeatureSetMeta
    from featurestore_service.metrics.worker import ProfileWorker

    async def tags_as_versions_come() -> list[list[str]]:
        store, blobs, metrics = await _stores_without_workers(fs_settings)
        seen = []
        try:
            service = FeatureStore(store, blobs, fs_settings)
            worker = ProfileWorker(service, metrics, fs_settings)
            for seed, shift in ((1, 0.0), (2, 1.0), (2, 1.0)):

                async def chunks(data: bytes = parquet_bytes(table(seed, shift))) -> object:
                    yield data

                stored = await service.create_table(FeatureSetMeta(name="tagged"), chunks())
                source = {"kind": "featureset-table", "blob": stored.blob}
                assert await metrics.enqueue(subject_of("tagged"), stored.version, source)
                seen.append(await worker.catalogue_tags("tagged"))  # this version is pending
                await worker.round()
                seen.append(await worker.catalogue_tags("tagged"))
        finally:
            await metrics.close()
            blobs.close()
            await store.close()
        return seen

    assert asyncio.run(tags_as_versions_come()) == [
        [],  # version 1 pending: no profile yet
        [],  # version 1: nothing to compare with
        [],  # version 2 pending: version 1's verdict
        ["drifted"],  # version 2 drifted
        ["drifted"],  # version 3 pending: still version 2's verdict
        [],  # version 3, the same data as version 2: no drift
    ]


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
    # Version 0 is no version (numbers start at 1); it must not read as "the newest".
    zero = runner.invoke(app, ["metrics", "show", "cli", "--version", "0", "--url", url])
    assert zero.exit_code == 2 and "cli v2" not in zero.stdout, zero.output
    assert "--version" in zero.output and "1" in zero.output


def test_a_column_gone_all_null_drifts(fs: httpx.Client) -> None:
    from typer.testing import CliRunner

    from cairn.cli import app

    rows = 1_000
    before = pa.table({"n": pa.array(range(rows), pa.int64()), "t": pa.array(range(rows))})
    after = pa.table({"n": pa.nulls(rows, pa.int64()), "t": [str(i) for i in range(rows)]})
    for data in (before, after):
        assert upload(fs, "gone", parquet_bytes(data)).status_code == 201
    profiled(fs, "gone", 2)
    drift = fs.get("/featuresets/gone/versions/2/drift").json()["drift"]
    assert drift["drifted_columns"] == ["n"], drift
    url = str(fs.base_url).removesuffix("/api/v1/").removesuffix("/api/v1")
    shown = CliRunner().invoke(app, ["metrics", "drift", "gone", "2", "--url", url])
    assert shown.exit_code == 3, shown.output
    assert "n: DRIFT (values not compared, nulls 0.0% -> 100.0%)" in shown.stdout
    assert "t: ok (type changed, nulls 0.0% -> 0.0%)" in shown.stdout


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


def test_skew_samples_say_they_are_lost_on_a_restart(fs: httpx.Client) -> None:
    """The 202 of POST .../skew/samples is no promise to keep the rows: the route's OpenAPI
    text and the README say the sample lives in memory and a restart loses it."""
    root = str(fs.base_url).removesuffix("/").removesuffix("/api/v1")
    spec = fs.get(f"{root}/openapi.json").json()
    route = spec["paths"]["/api/v1/featuresets/{name}/skew/samples"]["post"]
    for text in (route["description"], route["responses"]["202"]["description"]):
        assert "memory" in text and "restart" in text, text
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    paragraph = readme[readme.index("Training/serving skew:") :].split("\n\n")[0]
    assert "skew/samples" in paragraph
    assert "in memory" in paragraph and "restart" in paragraph and "loses" in paragraph


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
    # A file the crawler could not read: a failed version, skipped by drift comparisons.
    failed = fs.put("/metrics/assets/a-9/profile", json={"fingerprint": "p:1:3", "error": "bad"})
    assert failed.status_code == 201, failed.text
    assert failed.json() == {
        "subject": "asset:a-9",
        "version": 3,
        "status": "failed",
        "error": "bad",
    }
    fourth = send("p:1:4", table(2, shift=1.0))
    assert fourth.status_code == 201 and fourth.json()["against"] == 2, fourth.text
    items = fs.get("/metrics/assets/a-9/history").json()["items"]
    assert [(i["version"], i["status"], i["error"]) for i in items][:2] == [
        (4, "done", None),
        (3, "failed", "bad"),
    ]


def test_a_malformed_asset_profile_is_a_422_naming_the_field(fs: httpx.Client) -> None:
    """The summary and the drift read each column's name, rows, nulls and null_rate, its top
    values and its sketch, and each check's name and verdict: a profile lacking them is
    refused by field, and stores nothing (it was a 500 before)."""
    from featurestore_service.metrics.profile import profile_table

    good = profile_table(table(1, rows=200))
    column = good["columns"][0]
    missing_rate = {k: v for k, v in column.items() if k != "null_rate"}
    cases = [
        ({"rows": 1, "columns": [{"name": "a"}]}, [], "profile.columns.0.null_rate"),
        ({**good, "columns": [missing_rate, *good["columns"][1:]]}, [], "null_rate"),
        ({**good, "columns": [{**column, "top": [{"value": "x"}]}]}, [], "top.0.count"),
        ({**good, "sketches": {column["name"]: "not-a-sketch"}}, [], "profile.sketches"),
        ({**good, "rows": -1}, [], "profile.rows"),
        (good, [{"passed": False}], "checks.0.name"),
    ]
    for profile, checks, field in cases:
        body = {"fingerprint": "f:1", "profile": profile, "checks": checks}
        answer = fs.put("/metrics/assets/a-odd/profile", json=body)
        assert answer.status_code == 422, (field, answer.text)
        assert field in answer.json()["detail"], (field, answer.text)
    assert fs.get("/metrics/assets/a-odd/profile").status_code == 404
    body = {"fingerprint": "f:1", "profile": good, "checks": []}
    assert fs.put("/metrics/assets/a-odd/profile", json=body).status_code == 201


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


def test_date_and_timestamp_columns_read_as_dates(fs: httpx.Client) -> None:
    from datetime import UTC, date, datetime, timedelta

    days = [date(2025, 1, 1) + timedelta(days=i % 200) for i in range(5000)]
    moments = [datetime(2025, 3, 1, tzinfo=UTC) + timedelta(hours=i) for i in range(5000)]
    dated = pa.table(
        {
            "day": pa.array(days, pa.date32()),
            "at": pa.array(moments, pa.timestamp("us", tz="UTC")),
            "n": pa.array(range(5000), pa.int64()),
        }
    )
    assert upload(fs, "dated", parquet_bytes(dated)).status_code == 201
    columns = {c["name"]: c for c in profiled(fs, "dated", 1)["columns"]}
    day, at, n = columns["day"], columns["at"], columns["n"]
    assert (day["min"], day["max"]) == ("2025-01-01", "2025-07-19")
    # Quantiles come from the sketch (within its rank error): ISO dates inside the range.
    for q in day["quantiles"].values():
        assert "2025-01-01" <= date.fromisoformat(q).isoformat() <= "2025-07-19"
    assert "2025-03-01T00:00:00Z" <= at["quantiles"]["0.5"] <= "2025-09-25T07:00:00Z"
    assert datetime.fromisoformat(at["quantiles"]["0.5"].replace("Z", "+00:00")).tzinfo
    # Histogram edges span the exact min and max.
    assert day["histogram"]["labels"][0] == "2025-01-01"
    assert day["histogram"]["labels"][-1] == "2025-07-19"
    assert len(day["histogram"]["labels"]) == len(day["histogram"]["edges"])
    assert day["epoch_unit"] == "day" and at["epoch_unit"] == "us"
    assert at["histogram"]["labels"][0] == "2025-03-01T00:00:00Z"
    assert at["histogram"]["labels"][-1] == "2025-09-25T07:00:00Z"  # 4999 hours later
    # Numbers stay numbers.
    assert isinstance(n["quantiles"]["0.5"], float) and "labels" not in n["histogram"]


def test_checks_declared_in_the_write_body(fs: httpx.Client) -> None:
    """POST /featuresets JSON and the Parquet upload's query declare checks like PUT .../checks:
    reject refuses the version, warn flags it, and they hold for later versions too."""
    bounded = [{"type": "range", "column": "threshold", "min": 0, "max": 1, "on_fail": "reject"}]
    first = fs.post(
        "/featuresets", json=values("serving", ("threshold", "float", 0.4), checks=bounded)
    )
    assert first.status_code == 201, first.text
    assert "checks" not in first.json()  # a version's document is unchanged by its checks
    assert fs.get("/featuresets/serving/checks").json()["checks"][0]["max"] == 1
    high = fs.post("/featuresets", json=values("serving", ("threshold", "float", 1.5)))
    assert high.status_code == 422, high.text  # declared with version 1, still held
    assert high.json()["errors"][0]["field"] == "checks.range(threshold)"
    assert "1.5" in high.json()["errors"][0]["message"]
    fresh = [{"type": "freshness", "column": "trained_at", "max_age": 3600, "on_fail": "reject"}]
    stale = values("serving", ("trained_at", "timestamp", "2020-01-01T00:00:00Z"), checks=fresh)
    refused = fs.post("/featuresets", json=stale)
    assert refused.status_code == 422 and "freshness(trained_at)" in refused.text
    assert fs.get("/featuresets/serving/checks").json()["checks"] == bounded  # not replaced
    cleared = fs.post(
        "/featuresets", json=values("serving", ("threshold", "float", 1.5), checks=[])
    )
    assert (
        cleared.status_code == 201 and fs.get("/featuresets/serving/checks").json()["checks"] == []
    )
    wrong = fs.post(
        "/featuresets", json=values("serving", ("x", "int", 1), checks=[{"type": "no"}])
    )
    assert wrong.status_code == 422 and "checks" in wrong.json()["errors"][0]["field"]

    gaps = parquet_bytes(pa.table({"spend": [5.0, 1.0], "visits": pa.array([1, None])}))
    nulls = [{"type": "not_null", "column": "visits", "on_fail": "reject"}]
    rejected = upload(fs, "uploaded", gaps, checks=orjson.dumps(nulls).decode())
    assert rejected.status_code == 422 and "not_null(visits)" in rejected.text, rejected.text
    assert fs.get("/featuresets/uploaded").status_code == 404  # nothing was stored
    warn = [{**nulls[0], "on_fail": "warn"}, {"type": "row_count", "min": 1}]
    accepted = upload(fs, "uploaded", gaps, checks=orjson.dumps(warn).decode())
    assert accepted.status_code == 201, accepted.text
    checks = {c["name"]: c for c in profiled(fs, "uploaded", 1)["checks"]}
    assert checks["not_null(visits)"]["passed"] is False and checks["row_count"]["passed"]
    assert fs.get("/featuresets/uploaded/metrics").json()["items"][0]["checks_failed"] == [
        "not_null(visits)"
    ]
    for raw, field in (("{nope", "checks"), ('[{"type": "range", "min": "x"}]', "checks")):
        bad = upload(fs, "uploaded", gaps, checks=raw)
        assert bad.status_code == 422, bad.text
        assert bad.json()["errors"][0]["field"].startswith(field), bad.text
    text_range = [{"type": "range", "column": "spend", "min": 0, "on_fail": "reject"}]
    words = parquet_bytes(pa.table({"spend": ["a", "b"]}))
    odd = upload(fs, "uploaded", words, checks=orjson.dumps(text_range).decode())
    assert odd.status_code == 422 and "cannot evaluate" in odd.text, odd.text


def test_a_failing_warn_check_on_named_values_is_kept_with_its_version(
    fs_settings: Settings, tmp_path: Path
) -> None:
    """Named values were held to reject checks only: a failing warn check left no profile, no
    metrics item and no catalogue tag. Each version of named values now gets the profile of
    its one-row table with its check results, as a table's version does."""
    from catalogue_service.app import create_app as catalogue_app

    warn = [{"type": "range", "column": "threshold", "min": 0, "max": 1, "on_fail": "warn"}]
    with ThreadServer(catalogue_app(Settings(data_dir=tmp_path / "cat"))) as catalogue:
        settings = fs_settings.model_copy(update={"catalogue_url": catalogue.url})
        with (
            ThreadServer(create_app(settings)) as server,
            httpx.Client(base_url=server.url + "/api/v1", timeout=60) as fs,
        ):
            body = values("chk_vals", ("threshold", "float", 1.5), ("plan", "string", "pro"))
            written = fs.post("/featuresets", json={**body, "checks": warn})
            assert written.status_code == 201, written.text
            first = profiled(fs, "chk_vals", 1)
            assert first["rows"] == 1 and "drift" not in first
            columns = {c["name"]: c for c in first["columns"]}
            assert columns["threshold"]["max"] == 1.5 and columns["plan"]["distinct"] == 1
            check = first["checks"][0]
            assert (check["name"], check["passed"], check["on_fail"]) == (
                "range(threshold)",
                False,
                "warn",
            )
            assert check["failing"] == [1.5], check
            items = fs.get("/featuresets/chk_vals/metrics").json()["items"]
            assert [(i["version"], i["rows"], i["checks_failed"]) for i in items] == [
                (1, 1, ["range(threshold)"])
            ]
            assert fs.get("/featuresets/chk_vals/versions/1/drift").json()["drift"] is None

            tagged = wait_for_tags(catalogue.url, "featureset:chk_vals", "checks-failed")
            assert "checks-failed" in tagged

            fixed = fs.post("/featuresets", json=values("chk_vals", ("threshold", "float", 0.5)))
            assert fixed.status_code == 201, fixed.text
            assert profiled(fs, "chk_vals", 2)["checks"][0]["passed"] is True
            items = fs.get("/featuresets/chk_vals/metrics").json()["items"]
            assert [(i["version"], i["checks_failed"]) for i in items] == [
                (2, []),
                (1, ["range(threshold)"]),
            ]
            assert "checks-failed" not in wait_for_tags(
                catalogue.url, "featureset:chk_vals", "checks-failed", present=False
            )

            # A table written after named values is not compared with them (one row is no
            # distribution), and its profile is unaffected.
            assert upload(fs, "chk_vals", parquet_bytes(table(1))).status_code == 201
            assert profiled(fs, "chk_vals", 3)["rows"] == 20_000


def wait_for_tags(url: str, asset_id: str, tag: str, *, present: bool = True) -> list[str]:
    """The catalogue tags of ``asset_id`` once ``tag`` is there (or gone); registrations run
    in the background."""
    deadline = time.monotonic() + WAIT
    while True:
        found = httpx.get(f"{url}/api/v1/assets/{asset_id}")
        tags = found.json().get("tags", []) if found.status_code == 200 else []
        if (tag in tags) == present or time.monotonic() > deadline:
            return list(tags)
        time.sleep(0.1)


def test_a_refused_write_leaves_the_sets_checks_as_they_were(fs: httpx.Client) -> None:
    """Checks a write declares become the set's only when its version is committed: a write
    refused for a stale version (409), or beaten by a concurrent one, keeps none of its own."""
    bounded = [{"type": "range", "column": "threshold", "min": 0, "max": 1, "on_fail": "reject"}]
    first = fs.post(
        "/featuresets", json=values("held", ("threshold", "float", 0.4), checks=bounded)
    )
    assert first.status_code == 201, first.text
    loose = [{**bounded[0], "max": 0.1, "on_fail": "warn"}]
    stale = values("held", ("threshold", "float", 0.5), version=1, checks=loose)
    refused = fs.post("/featuresets", json=stale)
    assert refused.status_code == 409, refused.text
    assert fs.get("/featuresets/held/checks").json()["checks"] == bounded
    high = fs.post("/featuresets", json=values("held", ("threshold", "float", 5)))
    assert high.status_code == 422 and "range(threshold)" in high.text, high.text

    # Two writes racing for version 2 of a set: the set keeps the winner's checks.
    for round_ in range(5):
        name = f"raced{round_}"
        assert fs.post("/featuresets", json=values(name, ("x", "int", 1))).status_code == 201
        own = [[{"type": "row_count", "min": i, "name": f"w{i}"}] for i in range(4)]
        bodies = [values(name, ("x", "int", 1), version=2, checks=c) for c in own]
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda b: fs.post("/featuresets", json=b), bodies))
        assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], answers
        winner = next(c for c, a in zip(own, answers, strict=True) if a.status_code == 201)
        kept = fs.get(f"/featuresets/{name}/checks").json()["checks"]
        assert [c["name"] for c in kept] == [winner[0]["name"]]


def test_checks_that_can_never_pass_are_refused_where_declared(
    fs: httpx.Client, fs_settings: Settings
) -> None:
    """A range with min > max, a negative or inverted row count, a column check without its
    column: a 422 naming the check's index and name and what to fix, on PUT .../checks and in
    a write; valid declarations (one bound, a row count from 0) stay accepted. A check stored
    before this rule is still read back and evaluated (it fails and says why)."""
    never = [
        ({"type": "range", "column": "spend", "min": 5, "max": 1}, "min 5 is greater than max 1"),
        ({"type": "row_count", "min": -1}, "a row count is never negative"),
        ({"type": "row_count", "min": 10, "max": 2, "name": "size"}, "'size' can never pass"),
        ({"type": "not_null"}, "a not_null check needs a column"),
        ({"type": "allowed_values", "column": "plan"}, "needs values"),
    ]
    kept = [{"type": "row_count", "min": 0}, {"type": "range", "column": "spend", "min": 0}]
    for check, fix in never:
        refused = fs.put("/featuresets/guarded/checks", json={"checks": [*kept, check]})
        assert refused.status_code == 422, refused.text
        error = refused.json()["errors"][0]
        assert error["field"] == "checks.2", refused.text
        assert fix in error["message"] and "can never pass" in error["message"], refused.text
        assert fix in refused.json()["detail"]
    assert fs.get("/featuresets/guarded/checks").json()["checks"] == []  # nothing was kept
    written = fs.post(
        "/featuresets", json=values("guarded", ("spend", "float", 2.0), checks=[never[0][0]])
    )
    assert written.status_code == 422 and "checks.0" in written.text, written.text
    accepted = fs.put("/featuresets/guarded/checks", json={"checks": kept})
    assert accepted.status_code == 200, accepted.text

    async def store_as_before() -> None:
        metrics = create_metric_store(fs_settings)
        await metrics.open()
        try:
            old = {"type": "range", "column": "spend", "min": 5, "max": 1}
            await metrics.put_checks(subject_of("old"), [old])
        finally:
            await metrics.close()

    asyncio.run(store_as_before())
    stored = upload(fs, "old", parquet_bytes(table(1, rows=100)))
    assert stored.status_code == 201, stored.text
    checks = profiled(fs, "old", 1)["checks"]
    assert [(c["name"], c["passed"]) for c in checks] == [("range(spend)", False)]


def test_a_profile_that_cannot_succeed_fails_once_with_its_reason(fs_settings: Settings) -> None:
    """A version whose file went corrupt on disk (written while profiling was off): after the
    restart that queues it, it is failed with Arrow's reason on the first attempt, shown by the
    API and the UI, and never tried again; the version before it is profiled as usual."""
    from ui.app import create_app as ui_app

    quiet = fs_settings.model_copy(update={"metrics_profiling": False})
    with (
        ThreadServer(create_app(quiet)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client,
    ):
        assert upload(client, "rotten", parquet_bytes(table(1))).status_code == 201
        second = upload(client, "rotten", parquet_bytes(table(2)))
        assert second.status_code == 201, second.text
        off = client.get("/featuresets/rotten/versions/2/profile")
        assert off.status_code == 404 and "CAIRN_METRICS_PROFILING" in off.text
    sha = second.json()["table"]["sha256"]
    blob = fs_settings.featurestore_blobs / sha[:2] / f"{sha}.parquet"
    blob.write_bytes(b"not a parquet file at all" * 100)

    with (
        ThreadServer(create_app(fs_settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client,
    ):
        assert profiled(client, "rotten", 1)["rows"] == 20_000
        deadline = time.monotonic() + WAIT
        while (answer := client.get("/featuresets/rotten/versions/2/profile")).status_code == 202:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.1)
        failed = answer.json()
        assert answer.status_code == 200 and failed["status"] == "failed", failed
        assert failed["attempts"] == 1 and "Parquet" in failed["error"], failed
        history = client.get("/featuresets/rotten/metrics").json()["items"]
        assert [(h["version"], h["status"]) for h in history] == [(2, "failed"), (1, "done")]
        assert history[0]["error"] == failed["error"]
        settings = Settings(
            data_dir=fs_settings.data_dir / "ui",
            featurestore_url=server.url,
            catalogue_url=f"http://127.0.0.1:{refused_port()}",
        )
        with ThreadServer(ui_app(settings)) as ui:
            page = httpx.get(f"{ui.url}/featuresets/rotten/metrics", params={"v": 2}).text
        assert "Version 2 could not be profiled" in page and "Parquet" in page
        assert "(failed)" in page
    # A restart does not try it again: failed is an answer, not a queue entry.
    with (
        ThreadServer(create_app(fs_settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client,
    ):
        assert profiled(client, "rotten", 1)["rows"] == 20_000
        again = client.get("/featuresets/rotten/versions/2/profile").json()
        assert again["status"] == "failed" and again["attempts"] == 1

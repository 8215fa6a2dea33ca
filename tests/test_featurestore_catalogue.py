"""Feature sets register in the catalogue, and nothing is lost while the catalogue is down."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cairn.settings import Settings
from featurestore_service.app import create_app
from tests.conftest import ProcessServer, ThreadServer, cairn_env
from tests.test_featurestore_api import parquet_bytes
from tests.test_metrics_api import table

WAIT = 60.0


def wait_for(what: str, check: Callable[[], Any]) -> Any:
    """Polls ``check`` until it returns something truthy; fails after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            found = check()
        except httpx.TransportError:
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what} after {WAIT:.0f}s")


def asset(catalogue: ProcessServer, asset_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{catalogue.url}/api/v1/assets/{asset_id}", timeout=5)
    return response.json() if response.status_code == 200 else None


def write(fs_url: str, name: str, value: int, depends_on: list[str]) -> int:
    body = {
        "name": name,
        "depends_on": depends_on,
        "labels": {"team": "ml"},
        "features": [{"name": "n", "dtype": "int", "value": value}],
    }
    response = httpx.post(f"{fs_url}/api/v1/featuresets", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["version"]


def test_feature_sets_written_while_the_catalogue_is_down_arrive_later(tmp_path: Path) -> None:
    catalogue = ProcessServer("catalogue", cairn_env(tmp_path / "cat"), tmp_path / "cat.log")
    catalogue.start()
    settings = Settings(data_dir=tmp_path / "fs", catalogue_url=catalogue.url)
    try:
        for name in ("sales_daily", "stores"):
            upstream = {"name": name, "type": "dataset"}
            assert (
                httpx.put(f"{catalogue.url}/api/v1/assets/{name}", json=upstream).status_code == 201
            )

        with ThreadServer(create_app(settings)) as fs:
            write(fs.url, "online", 1, ["sales_daily"])
            registered = wait_for(
                "featureset:online", lambda: asset(catalogue, "featureset:online")
            )
            assert registered["type"] == "featureset" and registered["labels"]["version"] == 1
            assert registered["labels"]["kind"] == "values"  # README: labels `version`, `kind`
            assert registered["depends_on"] == ["sales_daily"]
            assert registered["location"].endswith("/api/v1/featuresets/online")

            catalogue.stop()
            # Writes succeed with the catalogue gone; their registrations wait in the outbox.
            assert write(fs.url, "offline", 1, ["sales_daily", "stores"]) == 1
            assert write(fs.url, "online", 2, ["sales_daily", "stores"]) == 2
            table = pa.table({"store_id": [1, 2], "units": [3.0, 4.0]})
            sink = io.BytesIO()
            pq.write_table(table, sink)
            uploaded = httpx.post(
                f"{fs.url}/api/v1/featuresets/demand/versions",
                content=sink.getvalue(),
                params={"depends_on": "stores"},
                headers={"content-type": "application/vnd.apache.parquet"},
            )
            assert uploaded.status_code == 201, uploaded.text
            wait_for(
                "the outbox to report three pending sets",
                lambda: (
                    "cairn_featurestore_outbox_pending 3.0" in httpx.get(f"{fs.url}/metrics").text
                ),
            )

        # The feature store restarts too: the outbox is in its database, not in memory.
        with ThreadServer(create_app(settings)) as fs:
            catalogue.start()
            offline = wait_for("featureset:offline", lambda: asset(catalogue, "featureset:offline"))
            assert offline["depends_on"] == ["sales_daily", "stores"]
            online = wait_for(
                "featureset:online at version 2",
                lambda: (
                    (a := asset(catalogue, "featureset:online")) and a["labels"]["version"] == 2
                ),
            )
            assert online
            demand = wait_for("featureset:demand", lambda: asset(catalogue, "featureset:demand"))
            assert demand["format"] == "parquet" and demand["labels"]["kind"] == "table"
            assert [c["name"] for c in demand["schema"]] == ["store_id", "units"]

            search = httpx.get(
                f"{catalogue.url}/api/v1/assets", params={"type": "featureset", "limit": 50}
            ).json()
            assert {"featureset:online", "featureset:offline", "featureset:demand"} <= {
                i["name"] for i in search["items"]
            }
            lineage = httpx.get(
                f"{catalogue.url}/api/v1/assets/featureset:offline/lineage",
                params={"direction": "up"},
            ).json()
            assert {"sales_daily", "stores"} <= {n["name"] for n in lineage["nodes"]}

            # Deleting the only version marks the catalogue asset deleted.
            assert (
                httpx.delete(f"{fs.url}/api/v1/featuresets/offline/versions/1").status_code == 200
            )
            wait_for(
                "featureset:offline to be marked deleted",
                lambda: (a := asset(catalogue, "featureset:offline")) and a["deleted"],
            )
            assert "cairn_featurestore_outbox_pending 0.0" in wait_for(
                "an empty outbox",
                lambda: (
                    (t := httpx.get(f"{fs.url}/metrics").text)
                    and "cairn_featurestore_outbox_pending 0.0" in t
                    and t
                ),
            )
    finally:
        catalogue.stop()


def test_registrations_carry_cairn_api_key_to_a_keyed_catalogue(tmp_path: Path) -> None:
    # README (configuration, docker compose): CAIRN_API_KEY is the key the feature store sends
    # to a catalogue whose writes need one; without it every registration would be refused.
    from catalogue_service.app import create_app as catalogue_app

    keyed = Settings(data_dir=tmp_path / "cat", api_keys=["fs-key-1"])
    with ThreadServer(catalogue_app(keyed)) as catalogue:
        settings = Settings(
            data_dir=tmp_path / "fs", catalogue_url=catalogue.url, api_key="fs-key-1"
        )
        with ThreadServer(create_app(settings)) as fs:
            write(fs.url, "keyed", 1, [])

            def registered() -> dict[str, Any] | None:
                response = httpx.get(f"{catalogue.url}/api/v1/assets/featureset:keyed", timeout=5)
                return response.json() if response.status_code == 200 else None

            found = wait_for("featureset:keyed in the keyed catalogue", registered)
            assert found["type"] == "featureset" and found["labels"]["version"] == 1


def test_drift_tags_reach_a_catalogue_that_was_down_when_the_profile_finished(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    """README (Metric store): a drifted set gets the catalogue tag ``drifted``. Here each
    profile finishes after the write's registration reached the catalogue, while the catalogue
    is down: the tag arrives once it is back, with no further write of the set, and also when
    the feature store was killed (kill -9) and restarted in between."""
    mongo = request.getfixturevalue("production_servers").env() if backend == "mongo" else {}
    catalogue = ProcessServer("catalogue", cairn_env(tmp_path / "cat"), tmp_path / "cat.log")
    fs_env = cairn_env(tmp_path / "fs", CAIRN_CATALOGUE_URL=catalogue.url, **mongo)
    fs = ProcessServer("featurestore", fs_env, tmp_path / "fs.log")

    def start_fs(*, profiling: bool) -> None:
        fs.env["CAIRN_METRICS_PROFILING"] = str(profiling).lower()
        fs.start()

    def written_and_registered(name: str) -> None:
        """Versions 1 and 2 (drifted) written while profiling is off, both registered."""
        start_fs(profiling=False)
        for seed, shift in ((1, 0.0), (2, 1.0)):
            response = httpx.post(
                f"{fs.url}/api/v1/featuresets/{name}/versions",
                content=parquet_bytes(table(seed, shift)),
                headers={"content-type": "application/vnd.apache.parquet"},
                timeout=60,
            )
            assert response.status_code == 201, response.text
        wait_for(
            f"featureset:{name} at version 2",
            lambda: (a := asset(catalogue, f"featureset:{name}")) and a["labels"]["version"] == 2,
        )
        fs.stop()

    def drifted_profile(name: str) -> bool:
        answer = httpx.get(f"{fs.url}/api/v1/featuresets/{name}/versions/2/profile", timeout=10)
        return answer.status_code == 200 and answer.json()["drift"]["drifted"] is True

    def tagged(name: str) -> dict[str, Any]:
        found = wait_for(
            f"featureset:{name} tagged drifted",
            lambda: (a := asset(catalogue, f"featureset:{name}")) and "drifted" in a["tags"] and a,
        )
        assert found["labels"]["version"] == 2  # the tag came without a write
        return found

    catalogue.start()
    try:
        written_and_registered("demand")
        assert "drifted" not in (asset(catalogue, "featureset:demand") or {})["tags"]
        catalogue.stop()
        start_fs(profiling=True)
        wait_for("the drifted profile of demand version 2", lambda: drifted_profile("demand"))
        catalogue.start()
        tagged("demand")

        fs.stop()
        written_and_registered("supply")
        catalogue.stop()
        start_fs(profiling=True)
        wait_for("the drifted profile of supply version 2", lambda: drifted_profile("supply"))
        fs.kill()
        start_fs(profiling=True)
        catalogue.start()
        tagged("supply")
    finally:
        fs.stop()
        catalogue.stop()

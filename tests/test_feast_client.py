"""Feast's own SDK reads Cairn's online store (the README's "a Feast client works unchanged").

Feast 0.67's Python SDK, in a venv of its own (``tests/servers/feast_sdk.py``), with the remote
online store (``online_store: {type: remote, path: <cairn>}``): ``FeatureStore.
get_online_features`` POSTs Feast's request to ``<cairn>/get-online-features`` and builds its
``OnlineResponse`` from Cairn's answer. The repo (``tests/data/feast_repo``) is registered by
Feast's own ``feast apply``; the rows go into Cairn through Cairn's client, and what Feast hands
back is compared with them. On both backends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cairn.client import FeatureStoreClient
from featurestore_service.app import create_app
from tests.conftest import ThreadServer, backend_settings
from tests.servers.feast_sdk import ensure_feast
from tests.servers.processes import patient, refused_port
from tests.test_online import wait_online

REPO = Path(__file__).parent / "data" / "feast_repo"
NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def feast_bin() -> Path:
    return ensure_feast()


def _stamps(values: list[datetime]) -> pa.Array:
    return pa.array(values, pa.timestamp("us", "UTC"))


# name -> (rows, key columns, ttl); Feast's views of the same names are in definitions.py.
TABLES: dict[str, tuple[pa.Table, str | list[str], str | None]] = {
    "driver_stats": (
        pa.table(
            {
                "driver_id": pa.array([1001, 1001, 1002, 1005], pa.int64()),
                "event_timestamp": _stamps([NOW - 3 * DAY, NOW - DAY, NOW - 2 * DAY, NOW]),
                "conv_rate": [0.1, 0.5, 0.25, float("nan")],
                "trips": pa.array([1, 7, None, 2], pa.int32()),
                "city": ["Oslo", "Lima", "Pune", "Rome"],
                "active": [False, True, True, False],
            }
        ),
        "driver_id",
        None,
    ),
    "driver_rating": (
        pa.table(
            {
                "driver_id": pa.array([1001, 1003, 1004], pa.int64()),
                "event_timestamp": _stamps([NOW - DAY, NOW - DAY, NOW - 30 * DAY]),
                "rating": [4.5, 3.75, 4.0],
                "trips": pa.array([120, 40, 9], pa.int64()),
            }
        ),
        "driver_id",
        "7d",
    ),
    "customer_profile": (
        pa.table(
            {
                "customer_id": ["C1", "C2"],
                "event_timestamp": _stamps([NOW - DAY, NOW - DAY]),
                "segment": ["gold", "silver"],
                "lifetime_value": [1234.5, 99.0],
            }
        ),
        "customer_id",
        None,
    ),
    "driver_customer": (
        pa.table(
            {
                "driver_id": pa.array([1001, 1001, 1002], pa.int64()),
                "customer_id": ["C1", "C2", "C1"],
                "event_timestamp": _stamps([NOW - DAY] * 3),
                "rides_together": pa.array([3, 5, 8], pa.int64()),
            }
        ),
        ["driver_id", "customer_id"],
        None,
    ),
}


class FeastRepo:
    """A copy of the Feast repo whose remote online store is the Cairn at ``url``."""

    def __init__(self, root: Path, feast_bin: Path, url: str):
        self.dir = root / "feast_repo"
        shutil.copytree(REPO, self.dir)
        self.bin = feast_bin
        (self.dir / "feature_store.yaml").write_text(
            "project: cairn_compat\nregistry: registry.db\nprovider: local\n"
            "offline_store:\n  type: file\n"
            f"online_store:\n  type: remote\n  path: {url}\n"
            "entity_key_serialization_version: 3\n"
        )
        for name, (table, _key, _ttl) in TABLES.items():
            pq.write_table(table, self.dir / f"{name}.parquet")

    def run(self, argv: list[str], stdin: str | None = None) -> str:
        done = subprocess.run(
            argv,
            input=stdin,
            cwd=self.dir,
            env={**os.environ, "FEAST_USAGE": "False"},
            capture_output=True,
            text=True,
            timeout=patient(300),
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
        return done.stdout

    def apply(self) -> None:
        self.run([str(self.bin / "feast"), "apply"])

    def lookups(self, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = self.run([str(self.bin / "python"), "lookups.py"], json.dumps(cases))
        answers: list[dict[str, Any]] = json.loads(out)
        return answers


@pytest.fixture
def cairn(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[str]:
    settings = backend_settings(
        request,
        backend,
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
    )
    with ThreadServer(create_app(settings)) as server:
        with FeatureStoreClient(server.url) as client:
            for name, (table, key, ttl) in TABLES.items():
                client.put_table(name, table, entities=key, timestamp="event_timestamp", ttl=ttl)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for name in TABLES:
                wait_online(http, name, 1)
        yield server.url


def test_feast_sdk_reads_cairn_through_its_remote_online_store(
    cairn: str, feast_bin: Path, tmp_path: Path
) -> None:
    repo = FeastRepo(tmp_path, feast_bin, cairn)
    repo.apply()
    cases: list[dict[str, Any]] = [
        # one key: the latest row of 1001 (not its older one), every value type
        {
            "features": [
                "driver_stats:conv_rate",
                "driver_stats:trips",
                "driver_stats:city",
                "driver_stats:active",
            ],
            "entity_rows": [{"driver_id": 1001}],
        },
        # several keys, columnar: a null value in a present row, a key Cairn does not have, NaN
        {
            "features": ["driver_stats:conv_rate", "driver_stats:trips"],
            "entity_rows": {"driver_id": [1002, 9999, 1001, 1005]},
        },
        # two views of one entity; 1004's rating is older than driver_rating's ttl (7d)
        {
            "features": ["driver_stats:conv_rate", "driver_rating:rating"],
            "entity_rows": [{"driver_id": 1001}, {"driver_id": 1003}, {"driver_id": 1004}],
        },
        # two entities, each view keyed by its own
        {
            "features": [
                "driver_stats:city",
                "customer_profile:segment",
                "customer_profile:lifetime_value",
            ],
            "entity_rows": [
                {"driver_id": 1001, "customer_id": "C2"},
                {"driver_id": 1002, "customer_id": "C9"},
            ],
        },
        # a view keyed by both entities (a composite key in Cairn) beside one keyed by one
        {
            "features": ["driver_customer:rides_together", "customer_profile:segment"],
            "entity_rows": {"customer_id": ["C1", "C2", "C2"], "driver_id": [1002, 1001, 1002]},
        },
        # "trips" is a feature of two views: full names tell them apart ...
        {
            "features": ["driver_stats:trips", "driver_rating:trips"],
            "entity_rows": [{"driver_id": 1001}],
            "full_feature_names": True,
        },
        # ... and without them the request is refused, as by Feast's server
        {
            "features": ["driver_stats:trips", "driver_rating:trips"],
            "entity_rows": [{"driver_id": 1001}],
        },
        # Feast's @latest pin, and an entity-row column that is no join key (not answered)
        {
            "features": ["driver_stats@latest:conv_rate"],
            "entity_rows": [{"driver_id": 1001, "label": 1}],
        },
    ]
    got = repo.lookups(cases)
    for index, (case, answer) in enumerate(zip(cases, got, strict=True)):
        if index != 6:  # the refused one
            assert "error" not in answer, (case, answer)
    present = "PRESENT"

    assert got[0]["values"] == {
        "driver_id": [1001],
        "conv_rate": [0.5],
        "trips": [7],
        "city": ["Lima"],
        "active": [True],
    }
    assert set(got[0]["statuses"]["conv_rate"]) == {present}

    # NaN comes back as Feast's client reads Feast's own server's answer: the string "NaN".
    assert got[1]["values"] == {
        "driver_id": [1002, 9999, 1001, 1005],
        "conv_rate": [0.25, None, 0.5, "NaN"],
        "trips": [None, None, 7, 2],
    }
    # Feast's own server also answers PRESENT for a null value of a stored row.
    assert got[1]["statuses"]["trips"] == [present, "NOT_FOUND", present, present]

    assert got[2]["values"] == {
        "driver_id": [1001, 1003, 1004],
        "conv_rate": [0.5, None, None],
        "rating": [4.5, 3.75, None],
    }
    assert got[2]["statuses"]["rating"] == [present, present, "OUTSIDE_MAX_AGE"]
    assert got[2]["statuses"]["conv_rate"] == [present, "NOT_FOUND", "NOT_FOUND"]

    assert got[3]["values"] == {
        "driver_id": [1001, 1002],
        "customer_id": ["C2", "C9"],
        "city": ["Lima", "Pune"],
        "segment": ["silver", None],
        "lifetime_value": [99.0, None],
    }

    assert got[4]["values"] == {
        "customer_id": ["C1", "C2", "C2"],
        "driver_id": [1002, 1001, 1002],
        "rides_together": [8, 5, None],
        "segment": ["gold", "silver", "silver"],
    }
    assert got[4]["statuses"]["rides_together"] == [present, present, "NOT_FOUND"]

    assert got[5]["values"] == {
        "driver_id": [1001],
        "driver_stats__trips": [7],
        "driver_rating__trips": [120],
    }
    error = got[6]["error"]
    assert error.startswith("RuntimeError") and "422" in error, error
    assert "full_feature_names" in error and "'trips'" in error, error

    assert got[7]["values"] == {"driver_id": [1001], "conv_rate": [0.5]}

"""Online store and Feast-compatible online lookups (DESIGN 9), on both backends.

Real servers: the feature store in a thread (uvicorn) for most tests, a child process for the
SIGKILL test; MongoDB is the FerretDB the suite runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pytest

from cairn.client import AsyncFeatureStoreClient, FeatureStoreClient
from cairn.settings import Settings
from featurestore_service.app import create_app
from featurestore_service.online.serving import rfc3339
from tests.conftest import (
    ProcessServer,
    ThreadServer,
    backend_settings,
    cairn_env,
    refused_port,
    run_cairn,
)
from tests.test_featurestore_api import parquet_bytes, upload
from tests.test_metrics_api import profiled

NOW = datetime.now(UTC).replace(microsecond=0)
MICRO = timedelta(microseconds=1)
ARROW_MEDIA = "application/vnd.apache.arrow.stream"


@pytest.fixture
def on_settings(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Settings:
    return backend_settings(
        request,
        backend,
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        online_max_entities=1000,
    )


@pytest.fixture
def server(on_settings: Settings) -> Iterator[ThreadServer]:
    with ThreadServer(create_app(on_settings)) as running:
        yield running


@pytest.fixture
def http(server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def wait_online(http: httpx.Client, name: str, version: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        response = http.get(f"/api/v1/featuresets/{name}/online")
        if response.status_code == 200:
            state = response.json()
            if state["live_version"] == version and state["pending_version"] is None:
                return state
        time.sleep(0.05)
    raise AssertionError(f"{name} version {version} not online after {timeout}s: {state}")


def lookup(http: httpx.Client, body: dict, path: str = "/get-online-features") -> dict:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def columns(answer: dict) -> dict[str, dict]:
    return dict(zip(answer["metadata"]["feature_names"], answer["results"], strict=True))


def put_table(http: httpx.Client, name: str, table: pa.Table, **params: object) -> int:
    response = http.post(
        f"/api/v1/featuresets/{name}/versions",
        content=parquet_bytes(table, row_group_size=7),
        params=params,
        headers={"content-type": "application/vnd.apache.parquet"},
    )
    assert response.status_code == 201, response.text
    return response.json()["version"]


def customers(rows: list[tuple[str, datetime, float, int]]) -> pa.Table:
    return pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.string()),
            "feature_date": pa.array([r[1] for r in rows], pa.timestamp("us", "UTC")),
            "spend": pa.array([r[2] for r in rows], pa.float64()),
            "visits": pa.array([r[3] for r in rows], pa.int32()),
        }
    )


def put_customers(
    http: httpx.Client, name: str, rows: list[tuple[str, datetime, float, int]], **params: object
) -> int:
    """``put_table`` of ``customers(rows)``, keyed by customer_id at feature_date."""
    return put_table(
        http, name, customers(rows), entities="customer_id", timestamp="feature_date", **params
    )


def test_latest_row_per_key_with_feast_shapes(http: httpx.Client) -> None:
    day = timedelta(days=1)
    rows = [
        ("C1", NOW - 3 * day, 1.0, 1),
        ("C2", NOW - 2 * day, 20.0, 2),
        ("C1", NOW - day, 3.0, 3),  # C1's latest
        ("C1", NOW - 2 * day, 2.0, 2),
        ("C2", NOW - 5 * day, 10.0, 1),
    ] + [(f"X{i}", NOW - day, float(i), i) for i in range(30)]  # several row groups
    version = put_table(
        http, "customers", customers(rows), entities="customer_id", timestamp="feature_date"
    )
    state = wait_online(http, "customers", version)
    assert state["key_count"] == 32
    assert state["entities"] == ["customer_id"] and state["features"] == ["spend", "visits"]
    answer = lookup(
        http,
        {
            "features": ["customers:spend", "customers:visits"],
            "entities": {"customer_id": ["C1", "C2", "nobody"]},
        },
    )
    assert answer["metadata"]["feature_names"] == ["customer_id", "spend", "visits"]
    got = columns(answer)
    assert got["customer_id"]["values"] == ["C1", "C2", "nobody"]
    assert got["customer_id"]["statuses"] == ["PRESENT"] * 3
    assert got["customer_id"]["event_timestamps"] == ["1970-01-01T00:00:00Z"] * 3
    assert got["spend"]["values"] == [3.0, 20.0, None]
    assert got["visits"]["values"] == [3, 2, None]
    assert got["spend"]["statuses"] == ["PRESENT", "PRESENT", "NOT_FOUND"]
    stamp = (NOW - day).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert got["spend"]["event_timestamps"][0] == stamp
    # set:*, full feature names, and Cairn's own path answer alike.
    full = lookup(
        http,
        {
            "features": ["customers:*"],
            "entities": {"customer_id": ["C2"]},
            "full_feature_names": True,
        },
        path="/api/v1/online-features",
    )
    assert full["metadata"]["feature_names"] == [
        "customer_id",
        "customers__spend",
        "customers__visits",
    ]
    assert [r["values"] for r in full["results"]] == [["C2"], [20.0], [2]]
    pinned = lookup(
        http, {"features": [f"customers@{version}:spend"], "entities": {"customer_id": ["C1"]}}
    )
    assert pinned["results"][1]["values"] == [3.0]


def test_dictionary_encoded_keys_are_read_as_their_values(http: httpx.Client) -> None:
    """A key column written dictionary-encoded (pandas' ``category``) is a string (or integer)
    key: accepted at upload, served online and joined point-in-time like a plain one."""
    day = timedelta(days=1)
    rows = [("C1", NOW - 3 * day, 1.0, 1), ("C2", NOW - 2 * day, 20.0, 2)]
    rows += [("C1", NOW - day, 3.0, 3)] + [(f"X{i}", NOW - day, float(i), i) for i in range(20)]
    plain = customers(rows)
    names = plain.column("customer_id").to_pylist()
    categories = sorted(set(names))
    keys = pa.DictionaryArray.from_arrays(
        pa.array([categories.index(n) for n in names], pa.int32()), pa.array(categories)
    )
    encoded = plain.set_column(0, "customer_id", keys)
    version = put_table(
        http, "categorized", encoded, entities="customer_id", timestamp="feature_date"
    )
    stored = http.get("/api/v1/featuresets/categorized").json()["table"]["columns"][0]
    assert stored["type"].startswith("dictionary<values=string")  # kept as uploaded
    wait_online(http, "categorized", version)
    got = columns(
        lookup(
            http,
            {
                "features": ["categorized:spend"],
                "entities": {"customer_id": ["C1", "C2", "X7", "nobody"]},
            },
        )
    )
    assert got["spend"]["values"] == [3.0, 20.0, 7.0, None]

    by_number = pa.table(
        {
            "store": pa.array([7, 9, 7]).dictionary_encode(),
            "feature_date": pa.array([NOW - 2 * day, NOW - day, NOW - day], pa.timestamp("us")),
            "sales": pa.array([1.5, 2.5, 3.5]),
        }
    )
    numbered = put_table(http, "stores", by_number, entities="store", timestamp="feature_date")
    wait_online(http, "stores", numbered)
    got = columns(lookup(http, {"features": ["stores:sales"], "entities": {"store": [7, 9, 8]}}))
    assert got["sales"]["values"] == [3.5, 2.5, None]

    frame = pa.table(
        {
            "customer_id": pa.array(["C1", "C1", "C2", "nobody"]).dictionary_encode(),
            "event_timestamp": pa.array([NOW - 2 * day, NOW, NOW, NOW], pa.timestamp("us", "UTC")),
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, frame.schema) as writer:
        writer.write_table(frame)
    arrow = "application/vnd.apache.arrow.stream"
    response = http.post(
        "/api/v1/historical-features",
        params={"features": "categorized:spend"},
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": arrow, "accept": arrow},
    )
    assert response.status_code == 200, response.text
    joined = pa.ipc.open_stream(response.content).read_all()
    assert joined.column("spend").to_pylist() == [1.0, 3.0, 20.0, None]


def test_created_timestamp_breaks_ties_and_ttl_statuses(http: httpx.Client) -> None:
    old = NOW - timedelta(days=10)
    recent = NOW - timedelta(hours=1)
    table = pa.table(
        {
            "driver_id": pa.array([1, 1, 2, 3], pa.int64()),
            # naive timestamps: read as UTC
            "ts": pa.array([recent.replace(tzinfo=None)] * 2 + [old.replace(tzinfo=None)] * 2),
            "created": pa.array([NOW, NOW - timedelta(minutes=5), NOW, NOW]),
            "rate": pa.array([0.5, 0.9, 0.7, 0.1], pa.float32()),
        }
    )
    version = put_table(
        http,
        "drivers",
        table,
        entities="driver_id",
        timestamp="ts",
        created_timestamp="created",
        ttl="1d",
    )
    wait_online(http, "drivers", version)
    got = columns(
        lookup(http, {"features": ["drivers:rate"], "entities": {"driver_id": [1, 2, "3", 4]}})
    )
    assert got["rate"]["statuses"] == ["PRESENT", "OUTSIDE_MAX_AGE", "OUTSIDE_MAX_AGE", "NOT_FOUND"]
    assert got["rate"]["values"] == [0.5, None, None, None]  # the row created last wins the tie
    assert got["rate"]["event_timestamps"][0] == recent.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert got["rate"]["event_timestamps"][1] == old.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_nanosecond_times_order_online_as_in_training_sets(http: httpx.Client) -> None:
    """Rows of one key within one microsecond: the later nanosecond wins online too, as in a
    point-in-time join (truncated to microseconds they tied, and the row written last won)."""
    base = int(NOW.timestamp()) * 10**9 - 3600 * 10**9
    # Key 1's rows share a batch; key 2's are in row groups 0 and 1 (put_table: 7 rows each),
    # so the store's merge decides; key 3 ties with created times also in nanoseconds.
    keys = [1, 1, 2, 9, 9, 9, 9, 9, 2, 3, 3]
    stamps = [base + 100, base + 50, base + 90, *[base] * 5, base + 40, base, base]
    created = [base] * 9 + [base + 700, base + 300]
    table = pa.table(
        {
            "k": pa.array(keys, pa.int64()),
            "ts": pa.array(stamps, pa.timestamp("ns", "UTC")),
            "created": pa.array(created, pa.timestamp("ns")),
            "v": [f"row{i}" for i in range(len(keys))],
        }
    )
    version = put_table(
        http, "nanos", table, entities="k", timestamp="ts", created_timestamp="created", ttl="1d"
    )
    wait_online(http, "nanos", version)
    got = columns(lookup(http, {"features": ["nanos:v"], "entities": {"k": [1, 2, 3]}}))
    assert got["v"]["values"] == ["row0", "row2", "row9"]
    assert got["v"]["statuses"] == ["PRESENT"] * 3
    # Event times are still shown to the microsecond.
    micros = datetime.fromtimestamp(base // 1000 / 1e6, UTC)
    assert got["v"]["event_timestamps"][2] == micros.strftime("%Y-%m-%dT%H:%M:%SZ")
    sink = pa.BufferOutputStream()
    frame = pa.table({"k": [1, 2, 3], "event_timestamp": pa.array([NOW] * 3)})
    with pa.ipc.new_stream(sink, frame.schema) as writer:
        writer.write_table(frame)
    answer = http.post(
        "/api/v1/historical-features",
        params={"features": "nanos:v"},
        content=sink.getvalue().to_pybytes(),
        headers={"content-type": ARROW_MEDIA, "accept": ARROW_MEDIA},
    )
    assert answer.status_code == 200, answer.text
    assert (
        pa.ipc.open_stream(answer.content).read_all().column("v").to_pylist() == got["v"]["values"]
    )


def test_event_timestamps_are_rfc3339_in_every_year(http: httpx.Client) -> None:
    """The year has four digits (a row from year 500 was served as "500-01-01T00:00:00Z");
    a year no RFC 3339 text holds is written signed and six digits wide (ISO 8601's years,
    0 being 1 BC, as in Arrow)."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    ancient = datetime(500, 1, 1, tzinfo=UTC) - epoch
    first = datetime(1, 1, 1, 0, 0, 0, 5, tzinfo=UTC) - epoch
    stamps = [ancient // MICRO, first // MICRO, first // MICRO - 6, 10**18, -(10**18)]
    table = pa.table(
        {
            "k": pa.array(range(len(stamps)), pa.int64()),
            "ts": pa.array(stamps, pa.timestamp("us", "UTC")),
            "v": range(len(stamps)),
        }
    )
    wait_online(http, "ages", put_table(http, "ages", table, entities="k", timestamp="ts"))
    body = {"features": ["ages:v"], "entities": {"k": list(range(len(stamps)))}}
    for path in ("/get-online-features", "/api/v1/online-features"):
        got = columns(lookup(http, body, path))["v"]
        assert got["values"] == list(range(len(stamps)))
        assert got["event_timestamps"] == [
            "0500-01-01T00:00:00Z",
            "0001-01-01T00:00:00.000005Z",
            "0000-12-31T23:59:59.999999Z",
            "+033658-09-27T01:46:40Z",
            "-029719-04-05T22:13:20Z",
        ]
    # Within Python's datetimes, the text is the time isoformat gives.
    low, high = (datetime(y, 1, 1, tzinfo=UTC) - epoch for y in (1, 9999))
    for micros in np.random.default_rng(5).integers(low // MICRO, high // MICRO, 2000):
        moment = epoch + int(micros) * MICRO
        text = rfc3339(int(micros))
        assert datetime.fromisoformat(text) == moment, text
        assert text[:19] == moment.isoformat()[:19], text


def test_tables_sharing_an_entity_are_joined_and_composite_keys_work(http: httpx.Client) -> None:
    spend = put_customers(http, "spend", [("C1", NOW, 5.0, 1), ("C2", NOW, 6.0, 2)])
    profile = pa.table(
        {
            "customer_id": ["C2", "C3"],
            "ts": pa.array([NOW, NOW], pa.timestamp("s")),
            "segment": ["gold", "silver"],
        }
    )
    prof = put_table(http, "profile", profile, entities="customer_id", timestamp="ts")
    by_city = pa.table(
        {
            "customer_id": ["C1", "C1", "C2"],
            "city": ["Oslo", "Rome", "Oslo"],
            "ts": pa.array([NOW] * 3, pa.timestamp("ms", "UTC")),
            "trips": pa.array([1, 2, 3], pa.int16()),
        }
    )
    city = put_table(http, "by_city", by_city, entities=["customer_id", "city"], timestamp="ts")
    for name, version in (("spend", spend), ("profile", prof), ("by_city", city)):
        wait_online(http, name, version)
    answer = lookup(
        http,
        {
            "features": ["spend:spend", "profile:segment", "by_city:trips"],
            "entities": {"customer_id": ["C1", "C2", "C1"], "city": ["Oslo", "Oslo", "Rome"]},
        },
    )
    got = columns(answer)
    assert answer["metadata"]["feature_names"] == [
        "customer_id",
        "city",
        "spend",
        "segment",
        "trips",
    ]
    assert got["spend"]["values"] == [5.0, 6.0, 5.0]
    assert got["segment"]["values"] == [None, "gold", None]
    assert got["segment"]["statuses"] == ["NOT_FOUND", "PRESENT", "NOT_FOUND"]
    assert got["trips"]["values"] == [1, 3, 2]


def test_columns_of_one_name_are_refused_unless_full_names(http: httpx.Client) -> None:
    # Two sets with a "spend" column, and one whose feature is named like another's key.
    first = put_customers(http, "spend_a", [("C1", NOW, 5.0, 1)])
    second = put_customers(http, "spend_b", [("C1", NOW, 7.0, 2)])
    homes = pa.table(
        {"customer_id": ["C1"], "ts": pa.array([NOW], pa.timestamp("s")), "city": ["Oslo"]}
    )
    home = put_table(http, "home", homes, entities="customer_id", timestamp="ts")
    trips = pa.table(
        {
            "customer_id": ["C1"],
            "city": ["Oslo"],
            "ts": pa.array([NOW], pa.timestamp("s")),
            "trips": [3],
        }
    )
    city = put_table(http, "trips", trips, entities=["customer_id", "city"], timestamp="ts")
    for name, version in (("spend_a", first), ("spend_b", second), ("home", home), ("trips", city)):
        wait_online(http, name, version)
    cases = [
        (["spend_a:spend", "spend_b:spend"], {"customer_id": ["C1"]}, "'spend'"),
        (["spend_a:*", "spend_b:visits"], {"customer_id": ["C1"]}, "'visits'"),
        (["home:city", "trips:trips"], {"customer_id": ["C1"], "city": ["Oslo"]}, "'city'"),
    ]
    for features, entities, words in cases:
        body = {"features": features, "entities": entities}
        for path in ("/get-online-features", "/api/v1/online-features"):
            response = http.post(path, json=body)
            # Feast refuses such a request too: a client keying the answer by name would
            # silently keep one of the two columns.
            assert response.status_code == 422, response.text
            assert words in response.text and "full_feature_names" in response.text
    answer = lookup(
        http,
        {
            "features": ["spend_a:spend", "spend_b:spend"],
            "entities": {"customer_id": ["C1"]},
            "full_feature_names": True,
        },
    )
    got = columns(answer)
    assert got["spend_a__spend"]["values"] == [5.0]
    assert got["spend_b__spend"]["values"] == [7.0]


def test_bad_requests_name_what_to_fix(http: httpx.Client) -> None:
    version = put_customers(http, "cust", [("C1", NOW, 1.0, 1)])
    wait_online(http, "cust", version)
    many = [f"C{i}" for i in range(1001)]
    cases = [
        ({"features": ["nope:spend"], "entities": {"customer_id": ["C1"]}}, "'nope'"),
        ({"features": ["cust:nope"], "entities": {"customer_id": ["C1"]}}, "'nope'"),
        ({"features": ["cust:spend"], "entities": {"user_id": ["C1"]}}, "'customer_id'"),
        ({"features": ["cust:spend"], "entities": {"customer_id": many}}, "limit is 1000"),
        ({"features": ["spend"], "entities": {"customer_id": ["C1"]}}, "'spend'"),
        # no version 9 at all: a 404 that says which versions there are
        ({"features": ["cust@9:spend"], "entities": {"customer_id": ["C1"]}}, "1 to 1"),
        # "²".isdigit() holds but int() refuses it: was a 500
        ({"features": ["cust@²:spend"], "entities": {"customer_id": ["C1"]}}, "or latest"),
        ({"features": ["cust@\u0661:spend"], "entities": {"customer_id": ["C1"]}}, "or latest"),
        (
            {"features": [f"cust@{2**63}:spend"], "entities": {"customer_id": ["C1"]}},
            f"1 to {2**63 - 1}",
        ),
        ({"features": [], "entities": {"customer_id": ["C1"]}}, "features"),
        # what Feast's SDK sends for get_online_features(features=<a FeatureService>)
        ({"feature_service": "svc", "entities": {"customer_id": ["C1"]}}, "feature services"),
    ]
    for body, words in cases:
        for path in ("/get-online-features", "/api/v1/online-features"):
            response = http.post(path, json=body)
            assert 400 <= response.status_code < 500, (body, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert words in response.text, (words, response.text)
    response = http.post("/get-online-features", content=b"{not json")
    assert response.status_code == 422 and "is not valid JSON" in response.text


def test_a_pinned_version_not_online_is_told_from_one_that_never_was(http: httpx.Client) -> None:
    first = put_customers(http, "pinned", [("C1", NOW, 1.0, 1)])
    second = put_customers(http, "pinned", [("C1", NOW, 2.0, 2)])
    wait_online(http, "pinned", second)
    body = {"entities": {"customer_id": ["C1"]}}
    older = http.post(
        "/api/v1/online-features", json={**body, "features": [f"pinned@{first}:spend"]}
    )
    assert older.status_code == 409, older.text
    assert f"Version {first} of 'pinned' is not the one online (version {second} is)" in older.text
    never = http.post("/api/v1/online-features", json={**body, "features": ["pinned@7:spend"]})
    assert never.status_code == 404, never.text
    assert f"'pinned' has no version 7; its versions are 1 to {second}" in never.text
    live = lookup(http, {**body, "features": [f"pinned@{second}:spend"]})
    assert columns(live)["spend"]["values"] == [2.0]


def test_feast_request_extras_entity_columns_no_set_is_keyed_by_and_latest(
    http: httpx.Client,
) -> None:
    """Feast's server skips an entity column that is no join key (a label, request data) and
    does not echo it, and reads ``view@latest:feature`` as the live version; its SDK sends
    both as they are (tests/test_feast_client.py runs it)."""
    version = put_customers(http, "cust", [("C1", NOW, 1.0, 1), ("C2", NOW, 2.0, 2)])
    wait_online(http, "cust", version)
    # A feature named like the skipped column is no collision: that column is not answered.
    wait_online(
        http,
        "labels",
        put_table(
            http,
            "labels",
            pa.table({"customer_id": ["C1"], "ts": [NOW], "label": [1]}),
            entities="customer_id",
            timestamp="ts",
        ),
    )
    body = {
        "features": ["cust@latest:spend", "cust:visits", "labels@LATEST:label"],
        "entities": {"label": [0, 1], "customer_id": ["C2", "C1"]},
    }
    for path in ("/get-online-features", "/api/v1/online-features"):
        answer = lookup(http, body, path)
        assert answer["metadata"]["feature_names"] == ["customer_id", "spend", "visits", "label"]
        got = columns(answer)
        assert got["customer_id"]["values"] == ["C2", "C1"]
        assert got["spend"]["values"] == [2.0, 1.0]
        assert got["visits"]["values"] == [2, 1]
        assert got["label"]["values"] == [None, 1]
        assert got["label"]["statuses"] == ["NOT_FOUND", "PRESENT"]
    pinned = lookup(http, {**body, "features": [f"cust@{version}:spend"]})
    assert pinned["metadata"]["feature_names"] == ["customer_id", "spend"]
    # Feast's numbered pins (view@v2) count its registry's definitions, not Cairn's versions.
    refused = http.post("/get-online-features", json={**body, "features": ["cust@v1:spend"]})
    assert refused.status_code == 422 and "or latest" in refused.text, refused.text


def test_non_finite_floats_are_served_by_name_not_as_missing(http: httpx.Client) -> None:
    """NaN and infinities are values, answered as Feast's server and Cairn's table rows spell
    them ("NaN", "Infinity", "-Infinity"); null stays what it means, a missing value."""
    table = pa.table(
        {
            "k": ["a", "b", "c", "d", "e"],
            "ts": pa.array([NOW] * 5, pa.timestamp("s", "UTC")),
            "x": [float("nan"), float("inf"), float("-inf"), None, 1.5],
            "xs": pa.array([[1.0, float("nan")], None, [], [None], [2.0]], pa.list_(pa.float32())),
        }
    )
    wait_online(http, "odd", put_table(http, "odd", table, entities="k", timestamp="ts"))
    got = columns(lookup(http, {"features": ["odd:*"], "entities": {"k": list("abcde")}}))
    assert got["x"]["values"] == ["NaN", "Infinity", "-Infinity", None, 1.5]
    assert got["x"]["statuses"] == ["PRESENT"] * 5
    assert got["xs"]["values"] == [[1.0, "NaN"], None, [], [None], [2.0]]
    # Cairn's client turns the names back into floats for Arrow and pandas.
    with FeatureStoreClient(str(http.base_url)) as client:
        frame = client.get_online_features(["odd:x"], {"k": list("abcde")}).to_df()
    assert np.isnan(frame["x"][0]) and frame["x"][1] == np.inf and frame["x"][2] == -np.inf
    assert frame["x"].isna().tolist() == [True, False, False, True, False]
    assert frame["x"].dtype == np.float64


def test_integer_keys_stay_exact_and_out_of_range_keys_are_refused(http: httpx.Client) -> None:
    big = 2**62 + 1  # a double would read it as 2**62
    accounts = pa.table(
        {
            "account": pa.array([big, 2**62, 7], pa.int64()),
            "ts": pa.array([NOW] * 3, pa.timestamp("s", "UTC")),
            "balance": [1.0, 2.0, 3.0],
        }
    )
    wait_online(
        http, "accounts", put_table(http, "accounts", accounts, entities="account", timestamp="ts")
    )
    names = pa.table({"name": ["x"], "ts": pa.array([NOW], pa.timestamp("s", "UTC")), "n": [1]})
    wait_online(http, "names", put_table(http, "names", names, entities="name", timestamp="ts"))

    answer = columns(
        lookup(http, {"features": ["accounts:balance"], "entities": {"account": [big, "7"]}})
    )
    assert answer["balance"]["values"] == [1.0, 3.0]
    assert answer["account"]["values"] == [big, "7"]

    huge = 123456789012345678901234
    for key, words in (
        (2**63, f"{2**63} is outside the range of the column's type int64"),
        (huge, f"{huge} is outside the range"),  # past 64 bits: parsed exactly, not as a float
        (str(huge), f"{huge} is outside the range"),
        ("9" * 5000, "the key is outside the range"),
        ("\u00b2", "is not an integer key"),  # a digit to str.isdigit, not to int()
        (1.5, "1.5 is not an integer key"),
    ):
        # Written by hand: an encoder would refuse (or round) the integers past 64 bits.
        keys = b"[%d]" % key if isinstance(key, int) else orjson.dumps([key])
        body = b'{"features": ["accounts:balance"], "entities": {"account": %s}}' % keys
        response = http.post("/get-online-features", content=body)
        assert response.status_code == 422, (key, response.text)
        assert "entities.account" in response.text and words in response.text, response.text

    # A string-keyed set given a JSON integer past 64 bits: the echo could not be encoded.
    body = b'{"features": ["names:n"], "entities": {"name": [%d]}}' % huge
    response = http.post("/get-online-features", content=body)
    assert response.status_code == 422, response.text
    assert "send the key as a string" in response.text
    answer = columns(lookup(http, {"features": ["names:n"], "entities": {"name": [12, "x"]}}))
    assert answer["n"]["statuses"] == ["NOT_FOUND", "PRESENT"]


def test_deleted_latest_falls_back_online(http: httpx.Client) -> None:
    first = put_customers(http, "fb", [("C1", NOW, 1.0, 1)])
    wait_online(http, "fb", first)
    second = put_table(http, "fb", customers([("C1", NOW, 2.0, 2)]))  # inherits the declaration
    wait_online(http, "fb", second)
    body = {"features": ["fb:spend"], "entities": {"customer_id": ["C1"]}}
    assert lookup(http, body)["results"][1]["values"] == [2.0]
    assert http.delete(f"/api/v1/featuresets/fb/versions/{second}").status_code == 200
    wait_online(http, "fb", first)
    assert lookup(http, body)["results"][1]["values"] == [1.0]
    assert http.delete(f"/api/v1/featuresets/fb/versions/{first}").status_code == 200
    deadline = time.monotonic() + 30
    while http.get("/api/v1/featuresets/fb/online").status_code != 404:
        assert time.monotonic() < deadline, "fb still online after every version was deleted"
        time.sleep(0.05)
    assert http.post("/get-online-features", json=body).status_code == 404


def test_materialize_on_demand_at_a_version(http: httpx.Client) -> None:
    first = put_customers(http, "od", [("C1", NOW, 1.0, 1)])
    second = put_table(http, "od", customers([("C1", NOW, 2.0, 2)]))
    wait_online(http, "od", second)
    response = http.post("/api/v1/featuresets/od/materialize", params={"version": first})
    assert response.status_code == 200, response.text
    assert response.json()["live_version"] == first and response.json()["pinned"] is True
    body = {"features": ["od:spend"], "entities": {"customer_id": ["C1"]}}
    assert lookup(http, body)["results"][1]["values"] == [1.0]
    values_only = http.post(
        "/api/v1/featuresets",
        json={"name": "vals", "features": [{"name": "a", "dtype": "int", "value": 1}]},
    )
    assert values_only.status_code == 201
    assert http.post("/api/v1/featuresets/vals/materialize").status_code == 409
    too_big = http.post("/api/v1/featuresets/od/materialize", params={"version": 2**63})
    assert too_big.status_code == 422 and "version: must be between 1" in too_big.text


def test_switch_is_atomic_under_concurrent_reads(http: httpx.Client) -> None:
    keys = [f"K{i:04d}" for i in range(300)]

    def version_of(value: float) -> pa.Table:
        return customers([(k, NOW, value, int(value)) for k in keys])

    first = put_table(
        http, "atomic", version_of(1.0), entities="customer_id", timestamp="feature_date"
    )
    wait_online(http, "atomic", first)
    seen: list[set[float]] = []
    failures: list[str] = []
    stop = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as client:
            while not stop.is_set():
                response = client.post(
                    "/get-online-features",
                    json={"features": ["atomic:spend"], "entities": {"customer_id": keys}},
                )
                if response.status_code != 200:
                    failures.append(response.text)
                    return
                values = response.json()["results"][1]["values"]
                seen.append(set(values))

    readers = [threading.Thread(target=read) for _ in range(2)]
    # Readers hammer the store while it writes; on FerretDB each read of 300 keys is slow
    # enough that two of them already interleave with every merge.
    for reader in readers:
        reader.start()
    try:
        # 300 keys in row groups of 7 rows: 43 merges, each its own write.
        second = put_table(http, "atomic", version_of(2.0))
        wait_online(http, "atomic", second, timeout=240)
        # Writing the live version again (on demand) must not take its rows away meanwhile.
        again = http.post("/api/v1/featuresets/atomic/materialize", timeout=240)
        assert again.status_code == 200, again.text
        count = len(seen)
        deadline = time.monotonic() + 30
        while len(seen) < count + 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        for reader in readers:
            reader.join(timeout=60)
    assert not failures, failures[:1]
    mixed = [v for v in seen if len(v) != 1 or None in v]
    assert not mixed, mixed[:3]
    assert {1.0} in seen and seen[-1] == {2.0}


def test_materialization_resumes_after_sigkill(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    extra = request.getfixturevalue("production_servers").env() if backend == "mongo" else {}
    env = cairn_env(
        tmp_path / "data", CAIRN_CATALOGUE_URL=f"http://127.0.0.1:{refused_port()}", **extra
    )
    log = tmp_path / "fs.log"
    server = ProcessServer("featurestore", env, log).start()
    # FerretDB writes far slower than SQLite: a smaller table still takes dozens of merges.
    keys, group = (20_000, 500) if backend == "sqlite" else (1_500, 100)
    rows = 3 * keys
    table = pa.table(
        {
            "driver_id": pa.array([i % keys for i in range(rows)], pa.int64()),
            "ts": pa.array(
                [NOW - timedelta(minutes=i // keys) for i in range(rows)], pa.timestamp("us")
            ),
            "value": pa.array([float(i) for i in range(rows)], pa.float64()),
        }
    )
    try:
        with httpx.Client(base_url=server.url + "/api/v1", timeout=60) as api:
            response = upload(
                api,
                "big",
                parquet_bytes(table, row_group_size=group),
                entities="driver_id",
                timestamp="ts",
            )
            assert response.status_code == 201, response.text
            deadline = time.monotonic() + 120
            while True:
                state = api.get("/featuresets/big/online")
                if state.status_code == 200 and (state.json().get("progress") or 0) >= 3:
                    break
                assert time.monotonic() < deadline, state.text
                time.sleep(0.005)
        assert state.json()["live_version"] is None, "finished before the kill; make it bigger"
        server.kill()
        server.start()
        with httpx.Client(base_url=server.url, timeout=60) as http:
            try:
                wait_online(http, "big", 1, timeout=180)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{server.logs()[-3000:]}") from None
            sample = list(range(0, keys, 97))
            got = columns(
                lookup(http, {"features": ["big:value"], "entities": {"driver_id": sample}})
            )
        # The newest row of key k is the one from minute 0: row k.
        assert got["value"]["values"] == [float(k) for k in sample]
        assert "resuming big version 1 at row group" in server.logs()
    finally:
        server.stop()


def test_client_sync_async_and_cli(
    http: httpx.Client, server: ThreadServer, tmp_path: Path
) -> None:
    version = put_customers(http, "cl", [("C1", NOW, 1.5, 4), ("C2", NOW, 2.5, 5)])
    wait_online(http, "cl", version)
    with FeatureStoreClient(server.url) as client:
        answer = client.get_online_features(["cl:*"], {"customer_id": ["C2", "C9"]})
        assert client.materialize("cl")["live_version"] == version
    assert answer.to_dict() == {
        "customer_id": ["C2", "C9"],
        "spend": [2.5, None],
        "visits": [5, None],
    }
    assert answer.statuses()["spend"] == ["PRESENT", "NOT_FOUND"]
    assert answer.to_arrow().column("visits").to_pylist() == [5, None]
    assert list(answer.to_df().columns) == ["customer_id", "spend", "visits"]

    async def fetch() -> dict:
        async with AsyncFeatureStoreClient(server.url) as client:
            got = await client.get_online_features(["cl:spend"], {"customer_id": ["C1"]}, True)
            return got.to_dict()

    assert asyncio.run(fetch()) == {"customer_id": ["C1"], "cl__spend": [1.5]}
    env = cairn_env(tmp_path / "cli")
    done = run_cairn(
        "features",
        "online",
        "-f",
        "cl:visits",
        "-e",
        "customer_id=C1",
        "--url",
        server.url,
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["results"][1]["values"] == [4]
    done = run_cairn("featureset", "materialize", "cl", "--url", server.url, env=env)
    assert done.returncode == 0, done.stderr
    assert f"cl version {version} is online: 2 keys" in done.stdout


def test_cli_answer_wider_than_the_terminal_is_a_line_per_feature(
    http: httpx.Client, server: ThreadServer, tmp_path: Path
) -> None:
    """Rich cut each column of a table wider than the terminal to a few letters: keys C00001
    and C00002 both read "C000…". Such an answer is now one line per feature, each entity row
    a section; one that fits stays a table. Values read as in the JSON answer (null, true)."""
    version = put_customers(http, "wide_cli", [("C00001", NOW, 1.5, 4), ("C00002", NOW, None, 5)])
    wait_online(http, "wide_cli", version)
    args = ("features", "online", "-f", "wide_cli:*", "-e", "customer_id=C00001")
    args += ("-e", "customer_id=C00002", "-e", "customer_id=C00003", "--url", server.url)
    env = cairn_env(tmp_path / "cli")
    wide = run_cairn(*args, env={**env, "COLUMNS": "200"})
    assert wide.returncode == 0, wide.stderr
    header = next(line for line in wide.stdout.splitlines() if "customer_id" in line)
    assert header.split() == ["┃", "customer_id", "┃", "spend", "┃", "visits", "┃"], wide.stdout
    assert ["│", "C00002", "│", "null", "│", "5", "│"] in [
        x.split() for x in wide.stdout.splitlines()
    ]

    narrow = run_cairn(*args, env={**env, "COLUMNS": "30"})
    assert narrow.returncode == 0, narrow.stderr
    assert "…" not in narrow.stdout and max(map(len, narrow.stdout.splitlines())) <= 30
    lines = [line.strip("│┃ ").split() for line in narrow.stdout.splitlines()]
    assert ["1", "│", "customer_id", "│", "C00001"] in lines, narrow.stdout
    assert ["spend", "│", "null"] in lines and ["visits", "│", "5"] in lines
    assert ["3", "│", "customer_id", "│", "C00003"] in lines
    assert ["spend"] in lines and ["visits"] in lines  # not found: its values left empty


def test_clients_take_keys_as_numpy_or_arrow_arrays(
    http: httpx.Client, server: ThreadServer
) -> None:
    # Keys often come from a DataFrame's column: numpy's int64 is no JSON number to the
    # standard encoder, which failed with a TypeError before anything was sent.
    data = pa.table(
        {"driver": pa.array([7, 8], pa.int64()), "ts": pa.array([NOW] * 2), "trips": [1, 2]}
    )
    version = put_table(http, "np_keys", data, entities="driver", timestamp="ts")
    wait_online(http, "np_keys", version)
    sent = [np.array([8, 7, 9]), pa.array([8, 7, 9]), [np.int64(8), 7, np.int32(9)]]
    with FeatureStoreClient(server.url) as client:
        for keys in sent:
            answer = client.get_online_features(["np_keys:trips"], {"driver": keys})
            assert answer.to_dict() == {"driver": [8, 7, 9], "trips": [2, 1, None]}

    async def fetch() -> dict:
        async with AsyncFeatureStoreClient(server.url) as client:
            got = await client.get_online_features(["np_keys:trips"], {"driver": sent[0]})
            return got.to_dict()

    assert asyncio.run(fetch()) == {"driver": [8, 7, 9], "trips": [2, 1, None]}


def test_ui_page_shows_online_state_and_looks_up_a_key(
    http: httpx.Client, server: ThreadServer, tmp_path: Path
) -> None:
    from ui.app import create_app as ui_app

    version = put_customers(http, "ui_cust", [("C1", NOW, 7.25, 3)], ttl="7d")
    wait_online(http, "ui_cust", version)
    settings = Settings(
        data_dir=tmp_path / "ui",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        featurestore_url=server.url,
    )
    with ThreadServer(ui_app(settings)) as ui, httpx.Client(base_url=ui.url, timeout=30) as page:
        text = page.get("/featuresets/ui_cust").text
        assert "Feature table, online" in text and "604,800 s" in text
        assert f"version {version} · 1 keys" in text
        found = page.get("/featuresets/ui_cust", params={"key.customer_id": "C1"}).text
        assert "7.25" in found and "PRESENT" in found
        missing = page.get("/featuresets/ui_cust", params={"key.customer_id": "nobody"}).text
        assert "NOT_FOUND" in missing


def test_seeded_examples_are_online(http: httpx.Client, server: ThreadServer) -> None:
    from featurestore_service.seed import seed_featuresets

    seed_featuresets(server.url)
    customers_state = wait_online(http, "customer_features", 2)
    assert customers_state["entities"] == ["customer_id"] and customers_state["key_count"] == 40
    wait_online(http, "store_demand_features", 1)
    answer = lookup(
        http,
        {
            "features": ["customer_features:tenure_days", "store_demand_features:units_lag_7d"],
            "entities": {"customer_id": ["C00001"], "store_id": [1]},
        },
    )
    got = columns(answer)
    assert got["tenure_days"]["values"] == [2061]
    assert got["tenure_days"]["event_timestamps"] == ["2025-06-15T00:00:00Z"]
    assert got["units_lag_7d"]["statuses"] == ["PRESENT"]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def test_materialization_memory_does_not_grow_with_the_row_group(tmp_path: Path) -> None:
    """3M rows x 12 float32 in ONE row group (~180 MB of Parquet, as a writer with a large
    row-group size makes it): uploading and materializing it stay within bounds well below the
    file's size. Reading whole column chunks (pyarrow's pre_buffer) held the row group: the
    upload (with the metric store's profile) grew the peak by 291 MiB, 157 MiB buffered; an
    on-demand materialization by 203 MiB, 72 MiB buffered (per-column buffers and pages)."""
    rows, keys, features = 3_000_000, 1_000, 12
    rng = np.random.default_rng(7)
    index = np.arange(rows, dtype=np.int64)
    stamp = int(NOW.timestamp()) * 1_000_000
    table = pa.table(
        {
            "driver_id": pa.array(index % keys),
            "ts": pa.array(stamp - (index // keys) * 60_000_000, pa.timestamp("us", "UTC")),
            **{f"f{i}": pa.array(rng.random(rows, dtype=np.float32)) for i in range(features)},
        }
    )
    data = parquet_bytes(table, row_group_size=rows)
    del index
    env = cairn_env(tmp_path / "data", CAIRN_CATALOGUE_URL=f"http://127.0.0.1:{refused_port()}")
    server = ProcessServer("featurestore", env, tmp_path / "fs.log").start()
    try:
        with (
            httpx.Client(base_url=server.url, timeout=120) as http,
            httpx.Client(base_url=server.url + "/api/v1", timeout=120) as api,
        ):
            small = parquet_bytes(table.slice(0, 10 * keys))
            del table
            assert server.proc is not None
            for name, body in (("small", small), ("wide", data)):
                Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")
                before = peak_rss_mib(server.proc.pid)
                response = upload(api, name, body, entities="driver_id", timestamp="ts")
                assert response.status_code == 201, response.text
                wait_online(http, name, 1, timeout=120)
            profiled(api, "wide", 1)
            # The upload's checks, the background materialization and the metric store's
            # profile of the new version: 289 MiB when the profile pre-buffered the row group.
            uploaded = peak_rss_mib(server.proc.pid) - before
            del data
            # A fresh process (what the upload and the first run left in the allocators' free
            # lists would hide a second run's growth), warmed up by a small table (libraries
            # loaded, caches filled), its peak reset to its RSS (Linux clear_refs 5).
            server.stop()
            server.start()
            assert server.proc is not None
            assert http.post("/api/v1/featuresets/small/materialize").status_code == 200
            Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")
            before = peak_rss_mib(server.proc.pid)
            again = http.post("/api/v1/featuresets/wide/materialize")
            assert again.status_code == 200, again.text
            grown = peak_rss_mib(server.proc.pid) - before
        assert uploaded < 210, f"the upload grew the peak RSS by {uploaded:.0f} MiB"
        assert grown < 130, f"materializing grew the peak RSS by {grown:.0f} MiB"
    finally:
        server.stop()


def test_skew_of_answers_spanning_several_sets(on_settings: Settings) -> None:
    """Both sets name their feature "value": asked together (full names) or one at a time,
    each set's served values go to its own sample, so neither looks skewed against its own
    profile."""
    settings = on_settings.model_copy(update={"metrics_skew_sample_rate": 1.0})
    rng = np.random.default_rng(5)
    keys = [f"C{i}" for i in range(400)]
    stamp = pa.array([1_750_000_000_000_000] * 400, pa.timestamp("us", "UTC"))
    sets = {
        "high": rng.normal(100, 5, 400),
        "low": rng.normal(-100, 5, 400),
    }
    # Served as "NaN" (JSON has no NaN), yet still a float of the sample, not a string.
    sets["high"][7] = np.nan
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        for name, values in sets.items():
            data = pa.table({"customer_id": keys, "ts": stamp, "value": values})
            written = http.post(
                f"/api/v1/featuresets/{name}/versions",
                content=parquet_bytes(data),
                params={"entities": "customer_id", "timestamp": "ts"},
                headers={"content-type": "application/vnd.apache.parquet"},
            )
            assert written.status_code == 201, written.text
            wait_online(http, name, 1, timeout=120)  # materialized on write
        api = httpx.Client(base_url=server.url + "/api/v1", timeout=60)
        for name in sets:
            profiled(api, name, 1)
        # Without full names the two "value" columns would collide (a 422): one set at a time.
        asked = [
            (["high:value", "low:value"], True),
            (["high:value"], False),
            (["low:value"], False),
        ]
        for start in range(0, 400, 100):
            for features, full in asked:
                # "label" is no set's key: not answered, so the sampler must not count it.
                body = {
                    "features": features,
                    "entities": {"label": [0] * 100, "customer_id": keys[start : start + 100]},
                    "full_feature_names": full,
                }
                assert http.post("/api/v1/online-features", json=body).status_code == 200
        for name in sets:
            answer = api.get(f"/featuresets/{name}/skew")
            assert answer.status_code == 200, answer.text
            found = answer.json()
            assert found["rows_seen"] == 800, found
            assert found["skew"]["drifted"] is False, found
            value = next(c for c in found["skew"]["columns"] if c["name"] == "value")
            assert value["test"] == "ks" and value["change"] is None, value
        api.close()

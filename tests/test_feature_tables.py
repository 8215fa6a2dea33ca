"""Feature-table declarations (DESIGN 9): stored with a version, inherited, checked at upload."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pyarrow as pa
import pytest

from cairn.models import FeatureTableSpec, parse_duration
from tests.test_featurestore_api import (  # noqa: F401  (fixtures)
    fs,
    fs_server,
    fs_settings,
    parquet_bytes,
    upload,
)


def driver_table(rows: int = 6, *, null_keys: int = 0) -> pa.Table:
    keys = [f"D{i % 3}" for i in range(rows)]
    for i in range(null_keys):
        keys[i] = None
    return pa.table(
        {
            "driver_id": pa.array(keys, pa.string()),
            "event_ts": pa.array(
                [datetime(2025, 1, 1 + i, tzinfo=UTC) for i in range(rows)],
                pa.timestamp("us", "UTC"),
            ),
            "created": pa.array([datetime(2025, 2, 1, tzinfo=UTC)] * rows, pa.timestamp("us")),
            "trips": pa.array(range(rows), pa.int64()),
            "rating": pa.array([4.5] * rows, pa.float32()),
        }
    )


DECLARED = {"entities": "driver_id", "timestamp": "event_ts", "created_timestamp": "created"}


def far_times(column: str, values: pa.Array) -> pa.Table:
    """``driver_table()`` with ``column`` holding ``values`` (two rows), valid Parquet times
    past what a microsecond timestamp holds (about 292,000 years either side of 1970)."""
    table = driver_table(rows=2)
    return table.set_column(table.schema.get_field_index(column), column, values)


def test_spec_parses_durations() -> None:
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("1d12h") == 36 * 3600
    assert parse_duration("P1DT1H") == 25 * 3600
    assert parse_duration(90) == 90
    spec = FeatureTableSpec(entities=["a"], timestamp="t", ttl="30m")
    assert spec.ttl == 1800
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    # Digits int() refuses ("²" passes str.isdigit) or other scripts' digits: not durations.
    for text in ("²", "1²d", "\u0663", "P\u0663D"):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(text)


def test_declared_stored_and_inherited(fs: httpx.Client) -> None:  # noqa: F811
    first = upload(fs, "drivers", parquet_bytes(driver_table()), ttl="2d", **DECLARED)
    assert first.status_code == 201, first.text
    assert first.json()["feature_table"] == {
        "entities": ["driver_id"],
        "timestamp": "event_ts",
        "created_timestamp": "created",
        "ttl": 172800,
    }
    # Nothing declared: every field inherited. One field given: it overrides, the rest stay.
    second = upload(fs, "drivers", parquet_bytes(driver_table()))
    assert second.json()["feature_table"] == first.json()["feature_table"]
    third = upload(fs, "drivers", parquet_bytes(driver_table()), ttl="1h")
    assert third.json()["feature_table"]["ttl"] == 3600
    assert third.json()["feature_table"]["entities"] == ["driver_id"]
    got = fs.get("/featuresets/drivers/versions/2").json()
    assert got["feature_table"]["timestamp"] == "event_ts"


@pytest.mark.parametrize(
    ("table", "params", "column", "words"),
    [
        (driver_table(), {"entities": "car_id", "timestamp": "event_ts"}, "car_id", "not in"),
        (driver_table(), {"entities": "driver_id", "timestamp": "when"}, "when", "not in"),
        (driver_table(), {"entities": "driver_id", "timestamp": "trips"}, "trips", "not a time"),
        (
            driver_table(),
            {"entities": "driver_id", "timestamp": "event_ts", "created_timestamp": "rating"},
            "rating",
            "not a time",
        ),
        (driver_table(), {"entities": "rating", "timestamp": "event_ts"}, "rating", "join key"),
        (
            driver_table(null_keys=2),
            {"entities": "driver_id", "timestamp": "event_ts"},
            "driver_id",
            "2 null",
        ),
        # Accepted, these never went online: materializing retried every 5 s for good.
        (
            far_times("event_ts", pa.array([0, -(2**31) + 1], pa.date32())),
            {"entities": "driver_id", "timestamp": "event_ts"},
            "event_ts",
            "outside",
        ),
        (
            far_times("event_ts", pa.array([0, 2**62], pa.timestamp("ms"))),
            {"entities": "driver_id", "timestamp": "event_ts"},
            "event_ts",
            "outside",
        ),
        (
            far_times("created", pa.array([2**61, 0], pa.timestamp("ms", "UTC"))),
            DECLARED,
            "created",
            "outside",
        ),
    ],
)
def test_declaration_that_does_not_fit_is_refused_and_nothing_stored(
    fs: httpx.Client,  # noqa: F811
    table: pa.Table,
    params: dict[str, str],
    column: str,
    words: str,
) -> None:
    response = upload(fs, "bad_drivers", parquet_bytes(table), **params)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert repr(column) in detail and words in detail, detail
    assert fs.get("/featuresets/bad_drivers").status_code == 404


def test_invalid_declarations_are_422(fs: httpx.Client) -> None:  # noqa: F811
    data = parquet_bytes(driver_table())
    for params in (
        {"timestamp": "event_ts"},  # no entities
        {"entities": "driver_id"},  # no timestamp
        {"entities": "driver_id", "timestamp": "driver_id"},
        {"entities": "driver_id", "timestamp": "event_ts", "ttl": "soon"},
        # Past the stores' 64-bit integers (a 500 from the store before).
        {"entities": "driver_id", "timestamp": "event_ts", "ttl": str(2**63)},
        {"entities": "driver_id", "timestamp": "event_ts", "ttl": "P99999999999999999999D"},
    ):
        response = upload(fs, "odd", data, **params)
        assert response.status_code == 422, (params, response.text)
        if "ttl" in params and params["ttl"] != "soon":
            assert "ttl" in response.text and str(2**63 - 1) in response.text, response.text
    assert fs.get("/featuresets/odd").status_code == 404
    longest = upload(fs, "odd", data, entities="driver_id", timestamp="event_ts", ttl=2**63 - 1)
    assert longest.status_code == 201, longest.text
    assert longest.json()["feature_table"]["ttl"] == 2**63 - 1


def test_inherited_declaration_checked_against_new_file(fs: httpx.Client) -> None:  # noqa: F811
    assert upload(fs, "drv", parquet_bytes(driver_table()), **DECLARED).status_code == 201
    renamed = driver_table().rename_columns(["driver", "event_ts", "created", "trips", "rating"])
    response = upload(fs, "drv", parquet_bytes(renamed))
    assert response.status_code == 422
    assert "'driver_id'" in response.json()["detail"]
    assert "inherited from version 1" in response.json()["detail"]
    assert fs.get("/featuresets/drv/versions").json()["total"] == 1

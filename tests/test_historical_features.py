"""Point-in-time training sets (DESIGN 9): the engine against an obviously correct reference,
and ``POST /api/v1/historical-features`` on both backends."""

from __future__ import annotations

import asyncio
import http.client
import io
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from cairn.settings import Settings
from featurestore_service.app import create_app
from featurestore_service.pit import EntityFrame, FeatureTable, SortedSearchStore
from tests.conftest import (
    ROOT,
    ProcessServer,
    ThreadServer,
    backend_settings,
    cairn_env,
    refused_port,
    run_cairn,
)
from tests.test_featurestore_api import (  # noqa: F401  (fixtures)
    ARROW,
    PARQUET,
    fs,
    fs_server,
    fs_settings,
    parquet_bytes,
    upload,
)

BASE = datetime(2025, 1, 1, tzinfo=UTC)
UNITS = ("s", "ms", "us", "ns")


# --- the reference: the rule of DESIGN 9, written plainly -------------------------------------


def reference(
    rows: list[dict[str, Any]], frame: list[dict[str, Any]], keys: list[str], ttl: int | None
) -> list[dict[str, Any] | None]:
    """For each entity row, the table row it must get (None: every feature null)."""
    answers = []
    for entity in frame:
        best = None
        for position, row in enumerate(rows):
            if any(entity[k] is None or row[k] != entity[k] for k in keys):
                continue
            if row["ts"] > entity["event_timestamp"]:
                continue  # from the future
            if ttl is not None and row["ts"] < entity["event_timestamp"] - timedelta(seconds=ttl):
                continue  # too old: more than the ttl before
            rank = (row["ts"], row["created"] or datetime.min.replace(tzinfo=UTC), position)
            if best is None or rank > best[0]:
                best = (rank, row)
        answers.append(None if best is None else best[1])
    return answers


# --- random feature tables and entity frames ---------------------------------------------------


@dataclass
class Case:
    rows: list[dict[str, Any]]
    frame: list[dict[str, Any]]
    keys: list[str]
    ttl: int | None
    table_unit: str
    frame_type: pa.DataType

    def table(self) -> pa.Table:
        ts_type = pa.timestamp(self.table_unit, tz="UTC")
        columns: dict[str, pa.Array] = {
            "k": pa.array([r["k"] for r in self.rows], pa.int64()),
            "k2": pa.array([r["k2"] for r in self.rows], pa.string()),
            "ts": pa.array([r["ts"] for r in self.rows], ts_type),
            "created": pa.array([r["created"] for r in self.rows], pa.timestamp("us")),
            "value": pa.array([r["value"] for r in self.rows], pa.float64()),
            "label": pa.array([r["label"] for r in self.rows], pa.string()),
            "row_ts": pa.array([r["ts"] for r in self.rows], ts_type),
        }
        return pa.table(columns)

    def entity_table(self) -> pa.Table:
        times = [e["event_timestamp"] for e in self.frame]
        if self.frame_type.tz is None:
            times = [t.replace(tzinfo=None) for t in times]  # naive means UTC
        return pa.table(
            {
                "k": pa.array([e["k"] for e in self.frame], pa.int32()),
                "k2": pa.array([e["k2"] for e in self.frame], pa.string()),
                "event_timestamp": pa.array(times, self.frame_type),
                "row_id": pa.array(range(len(self.frame)), pa.int64()),
            }
        )


@st.composite
def cases(draw: st.DrawFn, min_rows: int = 0) -> Case:
    table_unit = draw(st.sampled_from(UNITS))
    step = {"s": 1000, "ms": 1, "us": 1, "ns": 1}[table_unit]  # table times in whole units
    composite = draw(st.booleans())
    row = st.fixed_dictionaries(
        {
            "k": st.integers(0, 3),
            "k2": st.sampled_from(["a", "b"]) if composite else st.just("a"),
            # few distinct times: duplicates and ties are common
            "ts": st.integers(0, 8).map(lambda s: BASE + timedelta(milliseconds=s * 500 * step)),
            "created": st.none() | st.integers(0, 2).map(lambda s: BASE + timedelta(seconds=s)),
            "value": st.none() | st.floats(-1e6, 1e6, allow_nan=False),
            "label": st.none() | st.text("xyz", max_size=3),
        }
    )
    rows = draw(st.lists(row, min_size=min_rows, max_size=25))
    entity = st.fixed_dictionaries(
        {
            "k": st.none() | st.integers(0, 4),  # 4: a key with no rows
            "k2": st.sampled_from(["a", "b", "c"]) if composite else st.just("a"),
            # from before any row to after the last, between rows too
            "event_timestamp": st.integers(-4, 20).map(
                lambda q: BASE + timedelta(milliseconds=q * 250)
            ),
        }
    )
    frame = draw(st.lists(entity, min_size=1, max_size=20))
    frame_type = draw(
        st.sampled_from(
            [
                pa.timestamp("us", tz="UTC"),
                pa.timestamp("ns"),  # naive: UTC
                pa.timestamp("ms", tz="Asia/Tokyo"),  # the same instants, another zone
                pa.timestamp("s", tz="UTC"),
            ]
        )
    )
    if frame_type.unit == "s":  # whole seconds only, so the frame holds what the case says
        for e in frame:
            e["event_timestamp"] = e["event_timestamp"].replace(microsecond=0)
    return Case(
        rows=rows,
        frame=frame,
        keys=["k", "k2"] if composite else ["k"],
        ttl=draw(st.none() | st.integers(1, 4)),
        table_unit=table_unit,
        frame_type=frame_type,
    )


def check_answer(case: Case, answer: pa.Table, prefix: str = "") -> None:
    sent = case.entity_table()
    assert answer.num_rows == len(case.frame)
    assert answer.column_names[:4] == sent.column_names
    # every row, in order, unchanged (Parquet has no second unit: compare as instants)
    assert answer.select(sent.column_names).cast(sent.schema).equals(sent)
    expected = reference(case.rows, case.frame, case.keys, case.ttl)
    got = answer.select([prefix + "value", prefix + "label", prefix + "row_ts"]).to_pylist()
    for entity, want, have in zip(case.frame, expected, got, strict=True):
        if want is None:
            assert have == {prefix + "value": None, prefix + "label": None, prefix + "row_ts": None}
            continue
        assert have[prefix + "value"] == want["value"]
        assert have[prefix + "label"] == want["label"]
        assert have[prefix + "row_ts"] == want["ts"]
        assert have[prefix + "row_ts"] <= entity["event_timestamp"]  # never from the future


# --- the engine --------------------------------------------------------------------------------


@hypothesis_settings(max_examples=300, deadline=None)
@given(case=cases())
def test_engine_matches_reference(case: Case, tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("pit")
    table_path = folder / "table.parquet"
    frame_path = folder / "frame.parquet"
    pq.write_table(case.table(), table_path)
    pq.write_table(case.entity_table(), frame_path)
    table = FeatureTable(
        name="t",
        version=1,
        path=table_path,
        sha256=str(table_path),
        entities=tuple(case.keys),
        timestamp="ts",
        created_timestamp="created",
        ttl=case.ttl,
        features=("value", "label", "row_ts"),
        output_names=("value", "label", "row_ts"),
    )
    # Small batches, so answers that span batches are checked too.
    frame = EntityFrame(frame_path, "parquet", batch_rows=7)
    answer = SortedSearchStore().get_historical_features(frame, [table]).to_arrow()
    check_answer(case, answer)


@pytest.mark.parametrize("ttl", [None, 10**10, 2**63 - 1])
def test_entity_times_past_the_tables_unit_compare_as_later_or_earlier(
    ttl: int | None, tmp_path: Path
) -> None:
    """A nanosecond table (pandas' unit) holds 1677-2262; a frame's date or microsecond time
    beyond that is later (or earlier) than every row, and a ttl past 292 years in nanoseconds
    is simply long: neither wraps around nor fails while the answer streams."""
    table_path = tmp_path / "table.parquet"
    frame_path = tmp_path / "frame.parquet"
    stamps = [datetime(2025, 1, 1), datetime(2025, 6, 1)]
    pq.write_table(
        pa.table(
            {
                "k": pa.array([1, 1], pa.int64()),
                "ts": pa.array(stamps, pa.timestamp("ns")),
                "value": [1.0, 2.0],
            }
        ),
        table_path,
    )
    table = FeatureTable(
        name="t",
        version=1,
        path=table_path,
        sha256=f"{table_path}-{ttl}",
        entities=("k",),
        timestamp="ts",
        created_timestamp=None,
        ttl=ttl,
        features=("value",),
        output_names=("value",),
    )
    moments = [datetime(2300, 1, 1), datetime(9999, 12, 31), datetime(1000, 1, 1)]
    moments += [datetime(2025, 3, 1), datetime(1800, 1, 1)]
    # Long past 2262 a row stays within a ttl of 317 years only without a ttl or a huge one.
    late = [2.0, 2.0] if ttl != 10**10 else [2.0, None]
    expected = [*late, None, 1.0, None]
    frames = {
        "date32": pa.array([m.date() for m in moments], pa.date32()),
        "us": pa.array(moments, pa.timestamp("us")),
        "s, another zone": pa.array(moments, pa.timestamp("s")).cast(
            pa.timestamp("s", "Asia/Tokyo")
        ),
    }
    for kind, times in frames.items():
        pq.write_table(pa.table({"k": [1] * len(moments), "event_timestamp": times}), frame_path)
        frame = EntityFrame(frame_path, "parquet")
        answer = SortedSearchStore().get_historical_features(frame, [table]).to_arrow()
        assert answer.column("value").to_pylist() == expected, kind


@pytest.mark.parametrize("table_unit", ["s", "ms", "us"])
def test_a_ttl_counts_from_the_entity_time_finer_than_the_tables_unit(
    table_unit: str, tmp_path: Path
) -> None:
    """An entity time between two ticks of the table's unit was floored before the ttl was
    taken off: a row a tick's fraction older than the ttl was still served."""
    table_path = tmp_path / "table.parquet"
    frame_path = tmp_path / "frame.parquet"
    pq.write_table(
        pa.table({"k": [1], "ts": pa.array([BASE], pa.timestamp(table_unit)), "value": [1.0]}),
        table_path,
    )
    table = FeatureTable(
        name="t",
        version=1,
        path=table_path,
        sha256=f"{table_path}-{table_unit}",
        entities=("k",),
        timestamp="ts",
        created_timestamp=None,
        ttl=1,
        features=("value",),
        output_names=("value",),
    )
    ttl = 10**9  # one second, in nanoseconds
    ns = int(BASE.timestamp()) * 10**9
    for frame_unit, tick in (("ms", 10**6), ("us", 1000), ("ns", 1)):
        if UNITS.index(frame_unit) <= UNITS.index(table_unit):
            continue  # not finer than the table's unit
        # Just inside, exactly at, and one tick of the frame's unit past the ttl.
        offsets = [ttl - tick, ttl, ttl + tick, ttl + 500 * tick]
        times = pa.array([ns + o for o in offsets], pa.int64()).cast(pa.timestamp("ns"))
        times = times.cast(pa.timestamp(frame_unit))
        pq.write_table(pa.table({"k": [1] * len(offsets), "event_timestamp": times}), frame_path)
        frame = EntityFrame(frame_path, "parquet")
        answer = SortedSearchStore().get_historical_features(frame, [table]).to_arrow()
        assert answer.column("value").to_pylist() == [1.0, 1.0, None, None], frame_unit


# --- the API -----------------------------------------------------------------------------------


DECLARED = {"entities": ["k"], "timestamp": "ts", "created_timestamp": "created"}


def historical(
    fs: httpx.Client,  # noqa: F811
    frame: pa.Table | bytes,
    *features: str,
    media: str = ARROW,
    accept: str = ARROW,
    **params: str,
) -> httpx.Response:
    if isinstance(frame, pa.Table):
        if media == PARQUET:
            body = parquet_bytes(frame)
        else:
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, frame.schema) as writer:
                writer.write_table(frame)
            body = sink.getvalue()
    else:
        body = frame
    return fs.post(
        "/historical-features",
        params=[("features", f) for f in features] + list(params.items()),
        content=body,
        headers={"content-type": media, "accept": accept},
    )


def read_answer(response: httpx.Response) -> pa.Table:
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith(PARQUET):
        return pq.read_table(io.BytesIO(response.content))
    return pa.ipc.open_stream(response.content).read_all()


def declare(fs: httpx.Client, name: str, table: pa.Table, **extra: Any) -> dict:  # noqa: F811
    params = {**DECLARED, **extra}
    response = upload(fs, name, parquet_bytes(table), **params)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def fs_process(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Iterator[httpx.Client]:
    """The service in a child process: Hypothesis checks that nothing in the test process
    touches the global random state while it draws, and the service's retry jitter would."""
    extra = {"CAIRN_CATALOGUE_URL": f"http://127.0.0.1:{refused_port()}"}
    if backend == "mongo":
        extra.update(request.getfixturevalue("production_servers").env())
    server = ProcessServer(
        "featurestore", cairn_env(tmp_path / "fs", **extra), tmp_path / "fs.log"
    ).start()
    try:
        with httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client:
            yield client
    finally:
        server.stop()


def test_api_matches_reference(fs_process: httpx.Client) -> None:
    client = fs_process
    counter = iter(range(10_000))

    @hypothesis_settings(
        max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    @given(case=cases(min_rows=1), parquet=st.booleans())
    def check(case: Case, parquet: bool) -> None:
        name = f"t{next(counter)}"
        extra = {"ttl": str(case.ttl)} if case.ttl else {}
        declare(client, name, case.table(), entities=case.keys, **extra)
        media = PARQUET if parquet else ARROW
        response = historical(
            client,
            case.entity_table(),
            f"{name}:*",
            media=media,
            accept=media,
            full_feature_names="true",
        )
        check_answer(case, read_answer(response), prefix=f"{name}__")

    check()


def drivers(values: list[float], day0: int = 10) -> pa.Table:
    """Three drivers, one row each on days day0, day0+1, day0+2."""
    return pa.table(
        {
            "k": pa.array([1, 2, 3], pa.int64()),
            "ts": pa.array(
                [BASE + timedelta(days=day0 + i) for i in range(3)], pa.timestamp("us", "UTC")
            ),
            "created": pa.array([BASE] * 3, pa.timestamp("us", "UTC")),
            "trips": pa.array(values, pa.float32()),
            "rating": pa.array([4.0, 4.5, 5.0], pa.float64()),
        }
    )


def frame(keys: list[int | None], days: list[float], **extra: list[Any]) -> pa.Table:
    return pa.table(
        {
            "k": pa.array(keys, pa.int64()),
            "event_timestamp": pa.array(
                [BASE + timedelta(days=d) for d in days], pa.timestamp("us", "UTC")
            ),
            **extra,
        }
    )


def test_every_entity_row_is_kept_in_order(fs: httpx.Client) -> None:  # noqa: F811
    # Feast's file offline store drops rows that have no earlier feature row; a training set
    # must not lose rows silently.
    declare(fs, "drivers", drivers([10.0, 20.0, 30.0]))
    sent = frame(
        [3, 1, 9, 2, 1, None, 3],
        [30, 0, 30, 11.5, 10, 30, 12],  # before any row, no such key, null key...
        note=["a", "b", "c", "d", "e", "f", "g"],
    )
    answer = read_answer(historical(fs, sent, "drivers:trips"))
    assert answer.column_names == ["k", "event_timestamp", "note", "trips"]
    assert answer.select(["k", "event_timestamp", "note"]).equals(sent)
    assert answer.column("trips").to_pylist() == [30.0, None, None, 20.0, 10.0, None, 30.0]


def test_pinned_versions_header_and_metadata(fs: httpx.Client) -> None:  # noqa: F811
    declare(fs, "drivers", drivers([1.0, 2.0, 3.0]))
    declare(fs, "drivers", drivers([100.0, 200.0, 300.0]))  # inherits the declaration
    sent = frame([1, 2], [20, 20])
    live = historical(fs, sent, "drivers:trips", "drivers:rating")
    assert live.headers["cairn-feature-versions"] == "drivers=2"
    table = read_answer(live)
    assert table.column("trips").to_pylist() == [100.0, 200.0]
    assert table.schema.metadata[b"cairn.feature_versions"] == b"drivers=2"
    assert table.schema.metadata[b"cairn.features"] == b'["drivers@2:trips","drivers@2:rating"]'

    pinned = historical(fs, sent, "drivers@1:*", media=PARQUET, accept=PARQUET)
    assert pinned.headers["cairn-feature-versions"] == "drivers=1"
    table = read_answer(pinned)
    assert table.column_names == ["k", "event_timestamp", "trips", "rating"]
    assert table.column("trips").to_pylist() == [1.0, 2.0]
    assert table.schema.metadata[b"cairn.feature_versions"] == b"drivers=1"  # Parquet keeps it


def test_several_tables_full_names_and_collisions(fs: httpx.Client) -> None:  # noqa: F811
    declare(fs, "drivers", drivers([1.0, 2.0, 3.0]))
    declare(fs, "riders", drivers([7.0, 8.0, 9.0], day0=0), ttl="1d")
    sent = frame([1, 3], [10.5, 20])
    both = historical(fs, sent, "drivers:trips", "riders:trips", full_feature_names="true")
    assert both.headers["cairn-feature-versions"] == "drivers=1,riders=1"
    table = read_answer(both)
    assert table.column_names == ["k", "event_timestamp", "drivers__trips", "riders__trips"]
    # riders' rows are from days 0-2 with a one-day ttl: too old by day 10.5
    assert table.column("drivers__trips").to_pylist() == [1.0, 3.0]
    assert table.column("riders__trips").to_pylist() == [None, None]

    clash = historical(fs, sent, "drivers:trips", "riders:trips")
    assert clash.status_code == 422
    assert "'trips'" in clash.json()["detail"] and "riders@1" in clash.json()["detail"]
    clash = historical(fs, frame([1], [10], trips=[1.0]), "drivers:trips")
    assert clash.status_code == 422 and "entity frame" in clash.json()["detail"]


def test_a_row_exactly_the_ttl_old_is_within_it(fs: httpx.Client) -> None:  # noqa: F811
    # As online serving (age <= ttl is PRESENT) and Feast's offline stores count it.
    declare(fs, "aging", drivers([1.0, 2.0, 3.0], day0=0), ttl="1d")
    one_us = 1 / 86_400_000_000
    sent = frame([1, 1, 1], [0.5, 1.0, 1.0 + one_us])
    table = read_answer(historical(fs, sent, "aging:trips"))
    assert table.column("trips").to_pylist() == [1.0, 1.0, None]


def test_naive_times_are_utc(fs: httpx.Client) -> None:  # noqa: F811
    declare(fs, "drivers", drivers([1.0, 2.0, 3.0]))
    moments = [BASE + timedelta(days=11, seconds=-1), BASE + timedelta(days=11)]
    aware = pa.table({"k": [2, 2], "event_timestamp": pa.array(moments, pa.timestamp("us", "UTC"))})
    naive = pa.table(
        {
            "k": [2, 2],
            "event_timestamp": pa.array(
                [m.replace(tzinfo=None) for m in moments], pa.timestamp("ns")
            ),
        }
    )
    elsewhere = aware.set_column(
        1, "event_timestamp", aware.column(1).cast(pa.timestamp("ms", "America/New_York"))
    )
    for sent in (aware, naive, elsewhere):
        answer = read_answer(historical(fs, sent, "drivers:trips"))
        assert answer.column("trips").to_pylist() == [None, 2.0]
        assert answer.schema.field("event_timestamp").type == sent.schema.field(1).type


def test_far_times_against_nanoseconds_answer_whole(fs: httpx.Client) -> None:  # noqa: F811
    # The check used to raise while the answer streamed: the client got a cut-off body.
    nanos = drivers([1.0, 2.0, 3.0]).cast(
        pa.schema(
            [
                pa.field("k", pa.int64()),
                pa.field("ts", pa.timestamp("ns", "UTC")),
                pa.field("created", pa.timestamp("us", "UTC")),
                pa.field("trips", pa.float32()),
                pa.field("rating", pa.float64()),
            ]
        )
    )
    declare(fs, "nanos", nanos, ttl=str(10**10))
    late = datetime(2300, 1, 1, tzinfo=UTC)
    sent = pa.table({"k": [1, 2], "event_timestamp": pa.array([late, BASE], pa.timestamp("us"))})
    answer = read_answer(historical(fs, sent, "nanos:trips"))
    assert answer.column("trips").to_pylist() == [1.0, None]


async def asgi_post(app: Any, query: bytes) -> tuple[int, dict[str, Any]]:
    """POST straight to the ASGI app: a query string no HTTP client would send."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/historical-features",
        "raw_path": b"/api/v1/historical-features",
        "query_string": query,
        "root_path": "",
        "headers": [(b"content-type", PARQUET.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], orjson.loads(body)


def test_bad_input_is_a_clear_4xx_and_leaves_nothing(
    fs: httpx.Client,  # noqa: F811
    fs_server: ThreadServer,  # noqa: F811
    fs_settings: Settings,  # noqa: F811
) -> None:
    fs_app = fs_server.server.config.app
    declare(fs, "drivers", drivers([1.0, 2.0, 3.0]))
    fs.post(
        "/featuresets",
        json={"name": "plain", "features": [{"name": "x", "dtype": "int", "value": 1}]},
    ).raise_for_status()
    good = frame([1], [20])
    cases: list[tuple[Any, tuple[str, ...], dict[str, str], int, str]] = [
        (pa.table({"event_timestamp": good.column(1)}), ("drivers:trips",), {}, 422, "'k'"),
        (pa.table({"k": [1]}), ("drivers:trips",), {}, 422, "'event_timestamp'"),
        (
            pa.table({"k": ["1"], "event_timestamp": good.column(1)}),
            ("drivers:trips",),
            {},
            422,
            "string",
        ),
        (
            pa.table({"k": [1], "event_timestamp": ["2025-01-20"]}),
            ("drivers:trips",),
            {},
            422,
            "not a timestamp",
        ),
        (
            pa.table({"k": [1, 2], "event_timestamp": pa.array([None, BASE], pa.timestamp("us"))}),
            ("drivers:trips",),
            {},
            422,
            "null",
        ),
        (good.slice(0, 0), ("drivers:trips",), {}, 422, "no rows"),
        (good, ("nosuch:trips",), {}, 404, "'nosuch'"),
        (good, ("drivers:nosuch",), {}, 422, "'nosuch'"),
        (good, ("drivers@7:trips",), {}, 404, "no version 7"),
        (good, (f"drivers@{2**63}:trips",), {}, 422, f"1 to {2**63 - 1}"),
        (good, ("drivers@²:trips",), {}, 422, f"1 to {2**63 - 1}"),  # was a 500
        (good, ("plain:x",), {}, 422, "not a feature table"),
        (good, ("drivers",), {}, 422, "not a reference"),
        (good, (), {}, 422, "features"),
        (good, ("drivers:trips",), {"full_feature_names": "maybe"}, 422, "full_feature_names"),
        (b"PAR1 this is not parquet", ("drivers:trips",), {}, 400, "not a readable Parquet"),
        (b"", ("drivers:trips",), {}, 400, "empty"),
    ]
    for body, refs, params, status, words in cases:
        for media in (PARQUET, ARROW):
            if isinstance(body, bytes) and media == ARROW:
                continue
            response = historical(fs, body, *refs, media=media, **params)
            assert response.status_code == status, (refs, media, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert words in response.json()["detail"], response.json()["detail"]
    not_arrow = historical(fs, b"\x00\x01garbage", "drivers:trips", media=ARROW)
    assert not_arrow.status_code == 400 and "Arrow IPC stream" in not_arrow.json()["detail"]

    many = urlencode([("features", f"drivers:f{i}") for i in range(100_000)]).encode()
    status, body = asyncio.run(asgi_post(fs_app, many))  # past any HTTP server's URL limit
    assert status == 422 and "100000 references; the limit is" in body["detail"]
    connection = http.client.HTTPConnection("127.0.0.1", httpx.URL(str(fs.base_url)).port)
    connection.request("POST", "/api/v1/historical-features?" + many.decode(), body=b"")
    assert 400 <= connection.getresponse().status < 500  # uvicorn refuses the 2 MB URL itself
    connection.close()

    wrong_type = historical(fs, good, "drivers:trips", media="application/json")
    assert wrong_type.status_code == 415
    not_acceptable = historical(fs, good, "drivers:trips", accept="application/json")
    assert not_acceptable.status_code == 406

    # nothing half-written: no spooled frame stays behind, no version was added
    assert list((fs_settings.featurestore_blobs / "tmp").iterdir()) == []
    assert fs.get("/featuresets/drivers").json()["version"] == 1


def test_frame_past_the_cap_is_413_naming_the_limit(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    settings = backend_settings(
        request,
        backend,
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        max_entity_frame_bytes=64 * 1024,
    )
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client,
    ):
        declare(client, "drivers", drivers([1.0, 2.0, 3.0]))
        small = frame([1] * 10, [20] * 10)
        assert historical(client, small, "drivers:trips").status_code == 200
        rows = 20_000
        big = frame([1] * rows, [20] * rows, note=[f"row {i}" for i in range(rows)])
        response = historical(client, big, "drivers:trips")
        assert response.status_code == 413
        assert "65536 bytes" in response.json()["detail"]
        assert list((settings.featurestore_blobs / "tmp").iterdir()) == []


def test_a_frame_bomb_is_413_before_it_is_decoded(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        table_max_row_group_bytes=32 * 1024 * 1024,
    )
    rows = 65_536
    # One 1,600-character value, dictionary-encoded: about 150 KB of Parquet that decoded
    # into 105 MB, three times the row-group limit the frame's uploads already had.
    bomb = frame([1] * rows, [20] * rows, pad=pa.array(["p" * 1600] * rows).dictionary_encode())
    body = parquet_bytes(bomb)
    assert len(body) < 1024 * 1024
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client,
    ):
        declare(client, "drivers", drivers([1.0, 2.0, 3.0]))
        response = historical(client, body, "drivers:trips", media=PARQUET)
        assert response.status_code == 413, response.status_code
        assert "CAIRN_TABLE_MAX_ROW_GROUP_BYTES" in response.json()["detail"]
        # The same rows as one ZSTD-compressed Arrow IPC batch: 250 KB, 105 MB decoded.
        plain = bomb.set_column(2, "pad", bomb.column("pad").cast(pa.string()))
        for compression in ("zstd", "lz4"):
            sink = io.BytesIO()
            options = pa.ipc.IpcWriteOptions(compression=compression)
            with pa.ipc.new_stream(sink, plain.schema, options=options) as writer:
                writer.write_table(plain)
            assert len(sink.getvalue()) < 1024 * 1024
            response = historical(client, sink.getvalue(), "drivers:trips", media=ARROW)
            assert response.status_code == 413, (compression, response.status_code)
            assert "Arrow IPC stream" in response.json()["detail"]
        small = frame([1] * 10, [20] * 10, pad=["p"] * 10)
        assert historical(client, small, "drivers:trips", media=PARQUET).status_code == 200
        for compression in ("zstd", None):  # compressed frames within the limit still work
            sink = io.BytesIO()
            options = pa.ipc.IpcWriteOptions(compression=compression)
            with pa.ipc.new_stream(sink, small.schema, options=options) as writer:
                writer.write_table(small)
            answer = read_answer(historical(client, sink.getvalue(), "drivers:trips"))
            assert answer.num_rows == 10
        assert list((settings.featurestore_blobs / "tmp").iterdir()) == []


MEMORY_SCRIPT = """
import sys
from pathlib import Path
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from featurestore_service.historical import _chunks
from featurestore_service.pit import EntityFrame, FeatureTable, SortedSearchStore

folder = Path(sys.argv[1])
rows_per_batch, batches = 50_000, 40
rng = np.random.default_rng(1)
table = pa.table({
    "k": np.arange(1000, dtype=np.int64),
    "ts": pa.array(np.zeros(1000, dtype="datetime64[us]"), pa.timestamp("us")),
    "f": rng.random(1000),
})
pq.write_table(table, folder / "table.parquet")
schema = pa.schema(
    [("k", pa.int64()), ("event_timestamp", pa.timestamp("us")), ("pad", pa.string())]
)
decoded = 0
with pq.ParquetWriter(folder / "frame.parquet", schema) as writer:
    for _ in range(batches):
        batch = pa.record_batch([
            pa.array(rng.integers(0, 1000, rows_per_batch)),
            pa.array(np.full(rows_per_batch, 10**12, dtype="datetime64[us]"), pa.timestamp("us")),
            pa.array(["x" * 200] * rows_per_batch),
        ], schema=schema)
        decoded += batch.nbytes
        writer.write_batch(batch)
pool = pa.default_memory_pool()  # its peak covers writing the frame too: one batch at a time
spec = FeatureTable("t", 1, folder / "table.parquet", "x", ("k",), "ts", None, None, ("f",), ("f",))
entities = EntityFrame(folder / "frame.parquet", "parquet")
job = SortedSearchStore().get_historical_features(entities, [spec])
written = 0
with open(folder / "out.arrow", "wb") as out:
    for parts in _chunks(job, "arrow"):
        written += sum(out.write(part) for part in parts)
print(decoded, pool.max_memory(), written)
"""


def test_frame_larger_than_memory_streams_in_batches(tmp_path: Path) -> None:
    # A 2M-row frame of about 460 MB decoded passes through with Arrow's peak allocation at a
    # small fraction of that: the frame is read batch by batch from the spooled file, so a
    # frame larger than the service's memory works (up to CAIRN_MAX_ENTITY_FRAME_BYTES).
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    decoded, peak, written = map(int, done.stdout.split())
    assert decoded > 400_000_000
    assert written > decoded  # every row went out, with its feature
    assert peak < decoded / 8, (peak, decoded)


def test_online_equals_historical_at_now(
    fs: httpx.Client,  # noqa: F811
    fs_server: ThreadServer,  # noqa: F811
) -> None:
    from tests.test_online import columns, lookup, wait_online

    now = datetime.now(UTC).replace(microsecond=0)
    hour = timedelta(hours=1)
    rows = []
    for i in range(40):  # ties in time (broken by created), some rows too old for the ttl
        key = f"C{i % 12}"
        ts = now - (i % 5) * 9 * hour - 13 * timedelta(minutes=1)
        if i % 12 >= 10:
            ts -= 40 * hour  # C10 and C11 have only rows older than the ttl
        created = now - (i % 3) * hour if i % 4 else None
        rows.append((key, ts, created, float(i), i if i % 6 else None))
    table = pa.table(
        {
            "customer_id": pa.array([r[0] for r in rows], pa.string()),
            "ts": pa.array([r[1] for r in rows], pa.timestamp("us", "UTC")),
            "created": pa.array([r[2] for r in rows], pa.timestamp("us", "UTC")),
            "spend": pa.array([r[3] for r in rows], pa.float64()),
            "visits": pa.array([r[4] for r in rows], pa.int32()),
        }
    )
    version = declare(
        fs, "cust", table, entities=["customer_id"], ttl="30h", created_timestamp="created"
    )["version"]
    keys = [f"C{i}" for i in range(14)]  # two keys have no rows
    with httpx.Client(base_url=fs_server.url, timeout=60) as http:
        wait_online(http, "cust", version)
        online = columns(lookup(http, {"features": ["cust:*"], "entities": {"customer_id": keys}}))
    at = datetime.now(UTC)
    sent = pa.table(
        {
            "customer_id": keys,
            "event_timestamp": pa.array([at] * len(keys), pa.timestamp("us", "UTC")),
        }
    )
    answer = read_answer(historical(fs, sent, "cust:*"))
    assert answer.column("spend").to_pylist() == online["spend"]["values"]
    assert answer.column("visits").to_pylist() == online["visits"]["values"]
    assert answer.column("spend").to_pylist()[10:] == [None] * 4  # the ttl, then no rows
    assert answer.column("spend").null_count == 4


def test_client_sync_async_pandas_arrow_and_cli(
    fs: httpx.Client,  # noqa: F811
    fs_server: ThreadServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    from cairn.client import AsyncFeatureStoreClient, FeatureStoreClient

    declare(fs, "drivers", drivers([1.0, 2.0, 3.0]))
    sent = frame([3, 1, 9], [30, 0, 30], note=["a", "b", "c"])
    expected = [3.0, None, None]
    with FeatureStoreClient(fs_server.url) as client:
        table = client.get_historical_features(sent, ["drivers:trips"])
        assert isinstance(table, pa.Table)
        assert table.column("trips").to_pylist() == expected
        assert table.schema.metadata[b"cairn.feature_versions"] == b"drivers=1"
        df = client.get_historical_features(
            sent.to_pandas(), ["drivers:*"], full_feature_names=True
        )
        assert list(df.columns) == [
            "k",
            "event_timestamp",
            "note",
            "drivers__trips",
            "drivers__rating",
        ]
        assert df["drivers__trips"].isna().tolist() == [False, True, True]
        assert df.attrs["cairn.feature_versions"] == "drivers=1"
        # The entity frame's own index comes back, so a column assigned from the answer
        # lands on its entity row (a fresh 0..n index would misalign it silently).
        mine = sent.to_pandas().set_axis(["x", "y", "z"]).iloc[::-1]
        answer = client.get_historical_features(mine, ["drivers:trips"])
        assert list(answer.index) == ["z", "y", "x"]
        mine["trips"] = answer["trips"]
        assert mine.loc["x", "trips"] == 3.0
        assert mine["trips"].isna().tolist() == [True, True, False]
        path = tmp_path / "entities.parquet"
        pq.write_table(sent, path)
        from_file = client.get_historical_features(path, ["drivers:trips"])
        assert from_file.column("trips").to_pylist() == expected

    async def run() -> pa.Table:
        async with AsyncFeatureStoreClient(fs_server.url) as client:
            return await client.get_historical_features(sent, ["drivers:trips"])

    assert asyncio.run(run()).column("trips").to_pylist() == expected

    out = tmp_path / "out.parquet"
    env = cairn_env(tmp_path / "cli", CAIRN_FEATURESTORE_URL=fs_server.url)
    done = run_cairn(
        "features", "historical", str(path), "--feature", "drivers:trips", "-o", str(out), env=env
    )
    assert done.returncode == 0, done.stderr
    assert "3 rows" in done.stderr and "drivers=1" in done.stderr
    # One line: no progress bar into a pipe, whose end left an empty line before it.
    assert done.stderr.startswith("wrote ") and len(done.stderr.splitlines()) == 1, done.stderr
    written = pq.read_table(out)
    assert written.column("trips").to_pylist() == expected
    assert written.select(["k", "event_timestamp", "note"]).equals(sent)
    bad = run_cairn(
        "features", "historical", str(path), "--feature", "nosuch:x", "-o", str(out), env=env
    )
    assert bad.returncode == 1 and "'nosuch'" in bad.stderr
    assert not Path(f"{out}.part").exists()
    assert pq.read_table(out).column("trips").to_pylist() == expected  # left as it was
    nowhere = tmp_path / "no" / "such.parquet"
    unwritable = run_cairn(
        "features",
        "historical",
        str(path),
        "--feature",
        "drivers:trips",
        "-o",
        str(nowhere),
        env=env,
    )
    lines = unwritable.stderr.strip().splitlines()
    assert unwritable.returncode == 1 and "Traceback" not in unwritable.stderr, lines
    assert len(lines) == 1 and f"cannot write {nowhere}" in lines[0], lines


def test_example_table_with_date_timestamps(fs: httpx.Client) -> None:  # noqa: F811
    # customer_features (examples/) keys by customer_id and times rows by a date column: a date
    # is midnight UTC, so an entity row on that day sees the row, one the day before does not.
    path = ROOT / "examples" / "featuresets" / "customer_features" / "v2.parquet"
    response = upload(
        fs, "customer_features", path.read_bytes(), entities="customer_id", timestamp="feature_date"
    )
    assert response.status_code == 201, response.text
    dated = pq.read_table(path).slice(0, 1).to_pylist()[0]
    day = datetime.combine(dated["feature_date"], datetime.min.time(), UTC)
    sent = pa.table(
        {
            "customer_id": [dated["customer_id"]] * 3,
            "event_timestamp": pa.array(
                [day - timedelta(microseconds=1), day, day + timedelta(days=3)],
                pa.timestamp("us", "UTC"),
            ),
        }
    )
    answer = read_answer(historical(fs, sent, "customer_features:tenure_days"))
    assert answer.column("tenure_days").to_pylist() == [
        None,
        dated["tenure_days"],
        dated["tenure_days"],
    ]


def test_historical_cache_is_bounded_by_its_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: CAIRN_HISTORICAL_CACHE_BYTES is the memory kept for point-in-time indexes
    between calls. Room for one index: the older one is dropped for the newer; room for none:
    nothing is kept. Answers are the same whatever the bound."""
    stamps = [BASE + timedelta(hours=h) for h in range(200)]
    tables = {
        name: pa.table(
            {
                "k": pa.array([h % 50 for h in range(200)], pa.int64()),
                "ts": pa.array(stamps, pa.timestamp("us", "UTC")),
                name: pa.array([float(h) * scale for h in range(200)]),
            }
        )
        for name, scale in (("small", 1.0), ("large", 2.0))
    }
    tables["large"] = tables["large"].append_column("extra", pa.array(["x" * 50] * 200))
    frame = pa.table(
        {"k": pa.array([3, 7, 49]), "event_timestamp": pa.array([BASE + timedelta(days=9)] * 3)}
    )

    def run(limit: int | None) -> tuple[list[pa.Table], dict[str, int], int]:
        if limit is None:
            monkeypatch.delenv("CAIRN_HISTORICAL_CACHE_BYTES", raising=False)
        else:
            monkeypatch.setenv("CAIRN_HISTORICAL_CACHE_BYTES", str(limit))
        settings = Settings(
            data_dir=tmp_path / "fs", catalogue_url=f"http://127.0.0.1:{refused_port()}"
        )
        app = create_app(settings)
        answers = []
        with (
            ThreadServer(app) as server,
            httpx.Client(base_url=server.url + "/api/v1", timeout=60) as client,
        ):
            for name, table in tables.items():
                if client.get(f"/featuresets/{name}").status_code == 404:
                    stored = upload(
                        client, name, parquet_bytes(table), entities="k", timestamp="ts"
                    )
                    assert stored.status_code == 201, stored.text
                answers.append(read_answer(historical(client, frame, f"{name}:*")))
        cache = app.state.historical.engine.cache
        kept = {index.table.features[-1]: index.nbytes for index in cache._items.values()}
        return answers, kept, cache._bytes

    answers, both, held = run(None)  # the default, 512 MiB: both indexes kept
    assert set(both) == {"small", "extra"} and held == sum(both.values())
    one = both["small"] + both["extra"] - 1
    assert both["extra"] > both["small"]
    again, kept, held = run(one)
    assert kept == {"extra": both["extra"]} and held <= one  # the older index was dropped
    assert again == answers
    none, kept, held = run(both["small"] - 1)
    assert kept == {} and held == 0
    assert none == answers
    assert answers[0].column("small").to_pylist() == [153.0, 157.0, 199.0]

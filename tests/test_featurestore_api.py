"""Feature store API contract: real uvicorn servers on free ports, once per backend."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cairn.settings import Settings
from featurestore_service.app import create_app
from featurestore_service.backends import create_store
from tests.conftest import ThreadServer, backend_settings, refused_port

PARQUET = "application/vnd.apache.parquet"
ARROW = "application/vnd.apache.arrow.stream"
JSON = "application/json"


@pytest.fixture
def fs_settings(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Settings:
    # No catalogue listens there: registrations stay queued, writes still succeed.
    return backend_settings(
        request,
        backend,
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
    )


@pytest.fixture
def fs_server(fs_settings: Settings) -> Iterator[ThreadServer]:
    with ThreadServer(create_app(fs_settings)) as server:
        yield server


@pytest.fixture
def fs(fs_server: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fs_server.url + "/api/v1", timeout=60) as client:
        yield client


def values(name: str, *features: tuple[str, str, object], **meta: object) -> dict:
    return {
        "name": name,
        "features": [{"name": n, "dtype": d, "value": v} for n, d, v in features],
        **meta,
    }


def put(fs: httpx.Client, body: dict) -> dict:
    response = fs.post("/featuresets", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def parquet_bytes(table: pa.Table, **options: object) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, **options)
    return sink.getvalue()


def upload(fs: httpx.Client, name: str, data: bytes, **params: object) -> httpx.Response:
    return fs.post(
        f"/featuresets/{name}/versions",
        content=data,
        params=params,
        headers={"content-type": PARQUET},
    )


def sample_table(rows: int = 1000) -> pa.Table:
    return pa.table(
        {
            "customer_id": [f"c{i:05d}" for i in range(rows)],
            "recency_days": pa.array([i % 30 if i % 7 else None for i in range(rows)], pa.int32()),
            "spend": [i * 1.25 for i in range(rows)],
            "opted_in": [i % 2 == 0 for i in range(rows)],
            "seen_at": pa.array(
                [datetime(2025, 6, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(rows)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def stored_files(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.featurestore_blobs.rglob("*") if p.is_file())


# --- versions -------------------------------------------------------------------------------


def test_writes_get_consecutive_versions_and_latest_follows(fs: httpx.Client) -> None:
    first = fs.post(
        "/featuresets",
        json=values("churn", ("threshold", "float", 0.5), created_by="ana", version_label="a"),
    )
    assert first.status_code == 201
    assert first.headers["location"] == "/api/v1/featuresets/churn/versions/1"
    assert first.headers["etag"] == first.json()["etag"]
    body = first.json()
    assert (body["version"], body["kind"], body["created_by"]) == (1, "values", "ana")
    assert body["features"] == [{"name": "threshold", "dtype": "float", "value": 0.5}]
    put(fs, values("churn", ("threshold", "float", 0.4)))
    put(fs, values("churn", ("threshold", "float", 0.3), created_by="bo"))

    latest = fs.get("/featuresets/churn")
    assert latest.status_code == 200
    assert latest.json()["version"] == 3 and latest.json()["features"][0]["value"] == 0.3
    assert fs.get("/featuresets/churn/versions/1").json()["version_label"] == "a"

    listing = fs.get("/featuresets/churn/versions").json()
    assert listing["name"] == "churn" and listing["total"] == 3
    assert [i["version"] for i in listing["items"]] == [3, 2, 1]
    assert [i["created_by"] for i in listing["items"]] == ["bo", None, "ana"]
    stamps = [datetime.fromisoformat(i["created_at"]) for i in listing["items"]]
    assert stamps == sorted(stamps, reverse=True)
    assert "features" not in listing["items"][0]  # listings carry summaries
    paged = fs.get("/featuresets/churn/versions", params={"limit": 2}).json()
    assert [i["version"] for i in paged["items"]] == [3, 2]
    rest = fs.get("/featuresets/churn/versions", params={"cursor": paged["next_cursor"]}).json()
    assert [i["version"] for i in rest["items"]] == [1] and rest["next_cursor"] is None

    missing = fs.get("/featuresets/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert "nope" in missing.json()["detail"]
    assert fs.get("/featuresets/churn/versions/9").status_code == 404


def test_as_of_returns_the_version_current_then(fs: httpx.Client) -> None:
    made = [put(fs, values("prices", ("p", "int", n))) for n in (1, 2, 3)]
    created = [datetime.fromisoformat(m["created_at"]) for m in made]

    def as_of(moment: datetime) -> httpx.Response:
        return fs.get("/featuresets/prices", params={"as_of": moment.isoformat()})

    assert as_of(created[0]).json()["version"] == 1
    assert as_of(created[1] - timedelta(microseconds=1)).json()["version"] == 1
    assert as_of(created[1]).json()["version"] == 2
    assert as_of(created[2] + timedelta(days=1)).json()["version"] == 3
    before = as_of(created[0] - timedelta(seconds=1))
    assert before.status_code == 404 and "no live version" in before.json()["detail"]
    # An unencoded "+" arrives as a space; it is read as the offset it was meant to be.
    raw = fs.get(
        "/featuresets/prices?as_of=" + created[1].astimezone().isoformat().replace("+", "%20")
    )
    assert raw.json()["version"] == 2
    naive = fs.get("/featuresets/prices", params={"as_of": "2025-06-16T00:00:00"})
    assert naive.status_code == 422 and "time zone" in naive.json()["detail"]
    assert fs.get("/featuresets/prices", params={"as_of": "yesterday"}).status_code == 422
    # A deleted version is skipped: as of then, the previous one was current.
    assert fs.delete("/featuresets/prices/versions/2").status_code == 200
    assert as_of(created[1]).json()["version"] == 1


def test_versions_are_immutable(fs: httpx.Client, fs_settings: Settings) -> None:
    original = put(fs, values("frozen", ("a", "int", 1)))
    before = fs.get("/featuresets/frozen/versions/1").content
    for method in ("PUT", "PATCH"):
        response = fs.request(
            method, "/featuresets/frozen/versions/1", json=values("frozen", ("a", "int", 2))
        )
        assert response.status_code == 409, response.text
        assert "immutable" in response.json()["detail"]
    assert fs.put("/featuresets/frozen/versions/7", json={}).status_code == 409
    again = fs.post("/featuresets", json=values("frozen", ("a", "int", 2), version=1))
    assert again.status_code == 409 and "version 2" in again.json()["detail"]
    ahead = fs.post("/featuresets", json=values("frozen", ("a", "int", 2), version=5))
    assert ahead.status_code == 409
    table = upload(fs, "frozen", parquet_bytes(sample_table(10)), version=1)
    assert table.status_code == 409
    assert fs.get("/featuresets/frozen/versions/1").content == before
    assert fs.get("/featuresets/frozen/versions").json()["total"] == 1
    assert stored_files(fs_settings) == []
    # The expected version, when it is the next one, is accepted.
    assert put(fs, values("frozen", ("a", "int", 2), version=2))["version"] == 2
    assert original["etag"] == fs.get("/featuresets/frozen/versions/1").json()["etag"]


def test_fifty_parallel_writers_get_distinct_consecutive_versions(
    fs_settings: Settings,
) -> None:
    # Two app instances on one SQLite file: version numbers come from the database
    # (BEGIN IMMEDIATE + UNIQUE(name, version)), not from a lock in one process.
    writers = 50
    barrier = threading.Barrier(writers)
    results: dict[int, int] = {}
    errors: list[str] = []
    with ThreadServer(create_app(fs_settings)) as one, ThreadServer(create_app(fs_settings)) as two:

        def write(index: int) -> None:
            url = (one if index % 2 else two).url
            with httpx.Client(base_url=url, timeout=60) as client:
                barrier.wait(timeout=30)
                response = client.post(
                    "/api/v1/featuresets", json=values("race", ("writer", "int", index))
                )
            if response.status_code != 201:
                errors.append(response.text)
            else:
                results[index] = response.json()["version"]

        threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors[:2]
        assert sorted(results.values()) == list(range(1, writers + 1))
        with httpx.Client(base_url=one.url + "/api/v1") as client:
            listing = client.get("/featuresets/race/versions", params={"limit": 100}).json()
            assert listing["total"] == writers
            # No lost write: every version holds what the writer that got it sent.
            for index, version in results.items():
                doc = client.get(f"/featuresets/race/versions/{version}").json()
                assert doc["features"][0]["value"] == index
            latest = client.get("/featuresets/race").json()
        with httpx.Client(base_url=two.url + "/api/v1") as client:
            assert client.get("/featuresets/race").json()["version"] == writers
        assert latest["version"] == writers


def test_etag_and_if_none_match(fs: httpx.Client) -> None:
    put(fs, values("tagged", ("a", "string", "x")))
    first = fs.get("/featuresets/tagged")
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag == first.json()["etag"]
    cached = fs.get("/featuresets/tagged", headers={"if-none-match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == etag
    weak = fs.get("/featuresets/tagged/versions/1", headers={"if-none-match": f"W/{etag}, x"})
    assert weak.status_code == 304
    put(fs, values("tagged", ("a", "string", "y")))
    fresh = fs.get("/featuresets/tagged", headers={"if-none-match": etag})
    assert fresh.status_code == 200 and fresh.json()["version"] == 2
    assert fresh.headers["etag"] != etag


# --- tables -----------------------------------------------------------------------------------


def test_table_round_trips_through_every_representation(
    fs: httpx.Client, fs_settings: Settings
) -> None:
    table = sample_table(1000)
    data = parquet_bytes(table, row_group_size=300)
    created = upload(
        fs,
        "customers",
        data,
        depends_on=["customer_360", "stg_customers"],
        label=["domain:customer", "pii:false"],
        description="per customer",
        created_by="chen",
    )
    assert created.status_code == 201, created.text
    doc = created.json()
    assert doc["kind"] == "table" and doc["depends_on"] == ["customer_360", "stg_customers"]
    assert doc["labels"] == {"domain": "customer", "pii": "false"}
    assert doc["table"]["rows"] == 1000 and doc["table"]["row_groups"] == 4
    assert [c["name"] for c in doc["table"]["columns"]] == table.column_names
    assert doc["feature_count"] == 5 and doc["features"] == []

    parquet = fs.get("/featuresets/customers", headers={"accept": PARQUET})
    assert parquet.status_code == 200 and parquet.headers["content-type"] == PARQUET
    assert parquet.content == data  # the stored file is the uploaded bytes
    assert pq.read_table(io.BytesIO(parquet.content)).equals(table)

    arrow = fs.get("/featuresets/customers", headers={"accept": ARROW})
    assert arrow.headers["content-type"] == ARROW and arrow.headers["x-cairn-version"] == "1"
    assert pa.ipc.open_stream(arrow.content).read_all().equals(table)

    projected = fs.get(
        "/featuresets/customers/versions/1", params={"format": "arrow", "columns": "spend,seen_at"}
    )
    assert (
        pa.ipc.open_stream(projected.content).read_all().equals(table.select(["spend", "seen_at"]))
    )
    limited = fs.get("/featuresets/customers", params={"format": "parquet", "limit": 450})
    assert pq.read_table(io.BytesIO(limited.content)).equals(table.slice(0, 450))
    subset = fs.get(
        "/featuresets/customers",
        params={"columns": ["customer_id", "spend"], "limit": 10},
        headers={"accept": "application/x-parquet"},
    )
    assert pq.read_table(io.BytesIO(subset.content)).equals(
        table.select(["customer_id", "spend"]).slice(0, 10)
    )

    page = fs.get("/featuresets/customers", params={"offset": 298, "limit": 4}).json()
    assert page["version"] == 1 and page["table"]["rows"] == 1000
    rows = page["data"]["rows"]
    assert [r["customer_id"] for r in rows] == ["c00298", "c00299", "c00300", "c00301"]
    assert rows[0]["recency_days"] == 298 % 30 and rows[0]["opted_in"] is True
    assert page["data"]["next_offset"] == 302 and page["data"]["total_rows"] == 1000
    default = fs.get("/featuresets/customers", headers={"accept": "*/*"}).json()["data"]
    assert len(default["rows"]) == 100 and default["columns"] == table.column_names
    last = fs.get("/featuresets/customers", params={"offset": 990, "columns": "spend"}).json()
    assert len(last["data"]["rows"]) == 10 and last["data"]["next_offset"] is None
    assert last["data"]["rows"][0] == {"spend": 990 * 1.25}

    # ETags differ per representation, and each answers If-None-Match.
    etags = {parquet.headers["etag"], arrow.headers["etag"], projected.headers["etag"]}
    assert len(etags) == 3
    again = fs.get(
        "/featuresets/customers",
        headers={"accept": PARQUET, "if-none-match": parquet.headers["etag"]},
    )
    assert again.status_code == 304

    unknown = fs.get("/featuresets/customers", params={"format": "arrow", "columns": "nope"})
    assert unknown.status_code == 400 and "customer_id" in unknown.json()["detail"]
    assert fs.get("/featuresets/customers", headers={"accept": "text/csv"}).status_code == 406
    assert fs.get("/featuresets/customers", params={"format": "xml"}).status_code == 422
    assert fs.get("/featuresets/customers", params={"limit": "many"}).status_code == 422
    # A JSON page holds at most 10,000 rows (README); Arrow and Parquet are not paged.
    too_many = fs.get("/featuresets/customers", params={"limit": 10_001})
    assert too_many.status_code == 422 and "between 1 and 10000" in too_many.text
    whole = fs.get("/featuresets/customers", params={"format": "arrow", "limit": 10_001})
    assert pa.ipc.open_stream(whole.content).read_all().num_rows == 1000
    # Equal uploads share one content-addressed file.
    assert upload(fs, "customers", data).json()["version"] == 2
    assert len([p for p in stored_files(fs_settings) if p.suffix == ".parquet"]) == 1


def test_values_sets_are_json_only(fs: httpx.Client) -> None:
    put(fs, values("plain", ("a", "bool", True)))
    assert fs.get("/featuresets/plain", headers={"accept": ARROW}).status_code == 406
    ok = fs.get("/featuresets/plain", headers={"accept": "text/html, application/json;q=0.9"})
    assert ok.status_code == 200 and ok.json()["features"][0]["value"] is True
    json_route = fs.post("/featuresets/plain/versions", json=values("plain", ("a", "bool", False)))
    assert (
        json_route.status_code == 415 and "POST /api/v1/featuresets" in json_route.json()["detail"]
    )


def test_columns_picks_the_named_values_of_a_values_set(fs: httpx.Client) -> None:
    put(fs, values("picked", ("a", "bool", True), ("b", "int64", 2), ("c", "string", "x")))
    whole = fs.get("/featuresets/picked")
    some = fs.get("/featuresets/picked", params={"columns": "c,a,c"})
    assert some.status_code == 200, some.text
    assert [f["name"] for f in some.json()["features"]] == ["c", "a"]
    assert {k: v for k, v in some.json().items() if k != "features"} == {
        k: v for k, v in whole.json().items() if k != "features"
    }
    # Each choice is its own variant: its own ETag, and a 304 for it.
    assert some.headers["etag"] != whole.headers["etag"]
    again = fs.get(
        "/featuresets/picked/versions/1",
        params=[("columns", "c"), ("columns", "a")],
        headers={"if-none-match": some.headers["etag"]},
    )
    assert again.status_code == 304
    # A name the set lacks was ignored (the whole set came back); now it says what there is.
    missing = fs.get("/featuresets/picked", params={"columns": "a,zz"})
    assert missing.status_code == 400
    assert "'zz'" in missing.json()["detail"] and "a, b, c" in missing.json()["detail"]


def test_accept_q_zero_refuses_a_type_a_wildcard_would_allow(fs: httpx.Client) -> None:
    # RFC 9110: q=0 means "not acceptable"; a more specific range wins over */*.
    assert upload(fs, "negotiated", parquet_bytes(sample_table(10))).status_code == 201
    put(fs, values("named", ("a", "bool", True)))
    cases = [
        ("negotiated", f"{JSON};q=0, */*;q=0.1", 200, ARROW),
        ("negotiated", f"*/*;q=0.5, {JSON};q=0, {ARROW};q=0", 200, PARQUET),
        ("negotiated", f"application/*;q=0.2, {PARQUET};q=0.9", 200, PARQUET),
        ("negotiated", f"{ARROW}, {JSON}", 200, ARROW),
        ("negotiated", "text/html, */*;q=0.8", 200, JSON),
        ("named", f"*/*, {JSON};q=0", 406, None),
    ]
    for name, accept, status, media in cases:
        response = fs.get(f"/featuresets/{name}", headers={"accept": accept})
        assert response.status_code == status, (accept, response.text)
        if media is not None:
            assert response.headers["content-type"].startswith(media), accept


# --- soft delete, diff, search --------------------------------------------------------------
# --- soft delete, diff, search --------------------------------------------------------------


def test_soft_delete(fs: httpx.Client) -> None:
    put(fs, values("gone", ("a", "int", 1), labels={"team": "x"}))
    put(fs, values("gone", ("a", "int", 2), labels={"team": "x"}))
    deleted = fs.delete("/featuresets/gone/versions/2")
    assert deleted.status_code == 200
    assert deleted.json()["deleted"] is True and deleted.json()["deleted_at"]
    assert fs.get("/featuresets/gone").json()["version"] == 1  # never latest again
    assert fs.delete("/featuresets/gone/versions/2").json()["deleted"] is True  # idempotent
    kept = fs.get("/featuresets/gone/versions/2").json()
    assert kept["deleted"] is True and kept["features"][0]["value"] == 2
    flags = [
        (i["version"], i["deleted"]) for i in fs.get("/featuresets/gone/versions").json()["items"]
    ]
    assert flags == [(2, True), (1, False)]
    assert fs.get("/featuresets", params={"name": "gone"}).json()["items"][0]["version"] == 1
    fs.delete("/featuresets/gone/versions/1")
    latest = fs.get("/featuresets/gone")
    assert latest.status_code == 404 and "deleted" in latest.json()["detail"]
    assert fs.get("/featuresets", params={"label": "team:x"}).json()["total"] == 0
    assert fs.delete("/featuresets/gone/versions/3").status_code == 404
    assert fs.delete("/featuresets/never/versions/1").status_code == 404
    # A new version after deletions is 3, never a reused number.
    assert put(fs, values("gone", ("a", "int", 3)))["version"] == 3


def test_diff_of_values_and_tables(fs: httpx.Client) -> None:
    put(
        fs,
        values(
            "model",
            ("threshold", "float", 0.5),
            ("name", "string", "gbm"),
            ("inputs", "list<string>", ["a"]),
            labels={"stage": "dev"},
            depends_on=["x"],
        ),
    )
    put(
        fs,
        values(
            "model",
            ("threshold", "float", 0.4),
            ("name", "int", 3),
            ("inputs", "list<string>", ["a"]),
            ("weights", "map<float>", {"gold": 1}),
            labels={"stage": "prod", "team": "ml"},
            depends_on=["x", "y"],
        ),
    )
    diff = fs.get("/featuresets/model/diff", params={"from": 1, "to": 2}).json()
    assert [f["name"] for f in diff["added"]] == ["weights"]
    assert diff["removed"] == [] and diff["unchanged"] == 1
    changes = {c["name"]: c["changed"] for c in diff["changed"]}
    assert changes == {"threshold": ["value"], "name": ["dtype", "value"]}
    assert diff["labels"] == {
        "added": {"team": "ml"},
        "removed": {},
        "changed": {"stage": ["dev", "prod"]},
    }
    assert diff["depends_on_added"] == ["y"] and diff["data_changed"] is True
    assert diff["columns"] is None and diff["rows"] is None

    table = sample_table(50)
    upload(fs, "tab", parquet_bytes(table))
    wider = (
        table.slice(0, 40).drop_columns(["opted_in"]).append_column("score", pa.array([0.5] * 40))
    )
    wider = wider.set_column(1, "recency_days", pa.array([1] * 40, pa.int64()))
    upload(fs, "tab", parquet_bytes(wider))
    tdiff = fs.get("/featuresets/tab/diff", params={"from": 1, "to": 2}).json()
    assert [c["name"] for c in tdiff["columns"]["added"]] == ["score"]
    assert [c["name"] for c in tdiff["columns"]["removed"]] == ["opted_in"]
    assert [
        (c["name"], c["old"]["type"], c["new"]["type"]) for c in tdiff["columns"]["changed"]
    ] == [("recency_days", "int32", "int64")]
    assert tdiff["rows"] == {"old": 50, "new": 40, "delta": -10}
    same = fs.get("/featuresets/tab/diff", params={"from": 2, "to": 2}).json()
    assert same["data_changed"] is False
    assert fs.get("/featuresets/tab/diff", params={"from": 1, "to": 9}).status_code == 404
    assert fs.get("/featuresets/tab/diff", params={"from": 1}).status_code == 422


def test_a_search_parameter_the_route_does_not_take_is_a_422_naming_it(
    fs: httpx.Client,
) -> None:
    # A misspelt filter (nmae=churn, lable=team:ml) was dropped: every set was listed.
    put(fs, values("churn_a", ("recency", "int", 1), labels={"team": "ml"}))
    put(fs, values("sales_x", ("revenue", "float", 1.0), labels={"team": "bi"}))
    for params, near in (({"nmae": "churn"}, "name"), ({"lable": "team:ml"}, "label")):
        refused = fs.get("/featuresets", params=params)
        assert refused.status_code == 422, refused.text
        (error,) = refused.json()["errors"]
        assert error["field"] == next(iter(params)), refused.text
        assert f"is not a parameter of this search; did you mean {near}?" in error["message"]
        assert "name, label, q, limit, cursor" in error["message"], refused.text
    taken = {"name": "churn", "label": "team:ml", "q": "recency", "limit": "5"}
    assert [i["name"] for i in fs.get("/featuresets", params=taken).json()["items"]] == ["churn_a"]


def test_search_by_prefix_labels_and_text(fs: httpx.Client) -> None:
    put(fs, values("churn_a", ("recency", "int", 1), labels={"team": "ml", "tier": "gold"}))
    put(fs, values("churn_b", ("frequency", "int", 1), labels={"team": "ml"}))
    put(
        fs,
        values(
            "sales_x", ("revenue", "float", 1.0), labels={"team": "bi"}, description="shop revenue"
        ),
    )
    put(fs, values("churn_b", ("frequency", "int", 2), labels={"team": "ml", "tier": "gold"}))

    def names(**params: object) -> list[str]:
        response = fs.get("/featuresets", params=params)
        assert response.status_code == 200, response.text
        return [i["name"] for i in response.json()["items"]]

    assert names(name="CHU") == ["churn_a", "churn_b"]
    assert names(label=["team:ml", "tier:gold"]) == ["churn_a", "churn_b"]
    assert names(label="team:bi") == ["sales_x"]
    assert names(q="revenue") == ["sales_x"]
    assert names(q="frequency") == ["churn_b"]
    assert names(q="((") == []
    items = fs.get("/featuresets", params={"name": "churn_b"}).json()["items"]
    assert items[0]["version"] == 2  # one item per set: its latest version
    first = fs.get("/featuresets", params={"limit": 2}).json()
    assert first["total"] == 3 and len(first["items"]) == 2
    second = fs.get("/featuresets", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [i["name"] for i in second["items"]] == ["sales_x"] and second["next_cursor"] is None
    assert fs.get("/featuresets", params={"label": "nocolon"}).status_code == 400
    assert fs.get("/featuresets", params={"cursor": "!!"}).status_code == 400
    # A cursor of another kind of listing is refused, not read as an empty or repeated page.
    by_text = fs.get("/featuresets", params={"q": "ml", "limit": 1}).json()
    assert by_text["next_cursor"] is not None
    for params in (
        {"q": "frequency", "cursor": first["next_cursor"]},
        {"cursor": by_text["next_cursor"]},
        {"name": "churn", "cursor": by_text["next_cursor"]},
    ):
        refused = fs.get("/featuresets", params=params)
        assert refused.status_code == 400, (params, refused.text)
        assert "cursor" in refused.json()["detail"]


def test_mastro_routes(fs: httpx.Client) -> None:
    created = fs.put(
        "/featureset/",
        json={
            "name": "mastro_set",
            "version": "v1.2",
            "description": "from a Mastro client",
            "labels": {"team": "ml"},
            "features": [{"name": "f", "value": 3, "data_type": "int64"}],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    # Mastro's FeatureSet fields only, its data_type spelling kept.
    assert set(body) == {"name", "inserted_at", "version", "features", "description", "labels"}
    assert body["version"] == "v1.2" and body["inserted_at"]
    assert body["features"] == [{"name": "f", "value": 3, "data_type": "int64"}]
    assert fs.get("/featuresets/mastro_set").json()["version_label"] == "v1.2"
    fs.put(
        "/featureset/",
        json={
            "name": "mastro_set",
            "version": "v1.3",
            "labels": {"team": "ml"},
            "features": [{"name": "f", "value": 4, "data_type": "int"}],
        },
    )
    by_name = fs.get("/featureset/name/mastro_set", params={"limit": 1, "page": 2}).json()
    assert [d["version"] for d in by_name["data"]] == ["v1.2"]
    assert by_name["pagination"] == {
        "total": 2,
        "page": 2,
        "perPage": 1,
        "prev": 1,
        "next": 0,
        "totalPage": 2,
    }
    labels = fs.post("/featureset/labels", json={"labels": {"team": "ml"}, "limit": 10, "page": 1})
    assert labels.json()["pagination"]["total"] == 2
    text = fs.post("/featureset/search", json={"query": "mastro", "limit": 10, "page": 1}).json()
    assert {d["version"] for d in text["data"]} == {"v1.2", "v1.3"}
    listing = fs.get("/featureset/", params={"limit": 10, "page": 0}).json()
    assert listing["pagination"]["total"] == 2
    missing = fs.get("/featureset/name/none", params={"limit": 10, "page": 1})
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    bad = fs.put("/featureset/", json={"name": "x", "features": [{"name": "f", "value": 1}]})
    assert bad.status_code == 400 and "dtype" in bad.json()["message"]


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    fs: httpx.Client, fs_settings: Settings
) -> None:
    put(fs, values("guarded", ("a", "int", 1)))
    snapshot = fs.get("/featuresets/guarded/versions").content

    def refused(response: httpx.Response, status: int, *words: str) -> None:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
        detail = response.json()["detail"]
        for word in words:
            assert word in detail, detail

    refused(
        fs.post("/featuresets", json=values("guarded", ("a", "decimal128", 1))),
        422,
        "decimal128",
        "int, float, bool, string, timestamp",
    )
    refused(fs.post("/featuresets", json=values("guarded", ("a", "int", "7"))), 422, "not an int")
    refused(fs.post("/featuresets", json=values("guarded", ("a", "int", 2**70))), 422, "64-bit")
    refused(fs.post("/featuresets", json=values("guarded", ("a", "float", True))), 422, "float")
    refused(
        fs.post("/featuresets", json=values("guarded", ("a", "list<int>", [1, "x"]))),
        422,
        "list<int>",
    )
    refused(
        fs.post("/featuresets", json=values("guarded", ("a", "timestamp", "2025-06-16 10:00"))),
        422,
        "time zone",
    )
    refused(
        fs.post("/featuresets", json=values("guarded", ("a", "int", 1), ("a", "int", 2))),
        422,
        "twice",
    )
    refused(fs.post("/featuresets", json={"name": "guarded", "features": []}), 422, "features")
    nested: dict = {}
    for _ in range(300):  # past orjson's depth limit, which the error message used (a 500)
        nested = {"a": nested}
    refused(fs.post("/featuresets", json=values("guarded", ("a", "string", nested))), 422, "deep")
    # Each label filter is a clause of the search (a thousand of them were a 500).
    many = [("label", f"k{i}:v") for i in range(999)]
    assert fs.get("/featuresets", params=many).status_code == 400
    many_mastro = [(f"k{i}", "v") for i in range(1500)]
    assert fs.get("/featureset/labels", params=many_mastro).status_code == 400
    refused(fs.post("/featuresets", json=values("bad/name", ("a", "int", 1))), 422, "name")
    refused(
        fs.post("/featuresets", content=b"{nope", headers={"content-type": "application/json"}),
        422,
    )
    refused(upload(fs, "guarded", b"PAR1 this is not parquet PAR1"), 400, "Parquet")
    truncated = parquet_bytes(sample_table(100))[:-20]
    refused(upload(fs, "guarded", truncated), 400, "Parquet")
    refused(upload(fs, "guarded", b""), 400, "empty")
    refused(
        fs.post(
            "/featuresets/guarded/versions",
            content=b"a,b\n1,2",
            headers={"content-type": "text/csv"},
        ),
        415,
        "Parquet",
    )
    refused(
        upload(fs, "guarded", parquet_bytes(sample_table(5)), label="nocolon"), 400, "key:value"
    )
    assert fs.get("/featuresets/guarded/versions").content == snapshot
    assert stored_files(fs_settings) == []  # no blob, no leftover temporary file


def test_300_mib_upload_is_refused_while_streaming(fs: httpx.Client, fs_settings: Settings) -> None:
    chunk = bytes(1024 * 1024)  # one buffer, sent 300 times: the test holds 1 MiB

    def body() -> Iterator[bytes]:
        for _ in range(300):
            yield chunk

    response = fs.post(
        "/featuresets/huge/versions", content=body(), headers={"content-type": PARQUET}
    )
    assert response.status_code == 413
    assert "268435456 bytes" in response.json()["detail"]
    assert fs.get("/featuresets/huge/versions").status_code == 404
    assert stored_files(fs_settings) == []
    # A declared length over the cap is refused before any byte of the body is sent.
    port = httpx.URL(str(fs.base_url)).port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(
            b"POST /api/v1/featuresets/huge/versions HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/vnd.apache.parquet\r\n"
            + f"content-length: {300 * 1024 * 1024}\r\n\r\n".encode()
        )
        assert raw.recv(4096).startswith(b"HTTP/1.1 413")


def test_json_routes_below_featuresets_keep_the_json_body_cap(fs: httpx.Client) -> None:
    # The upload cap (256 MiB) is POST .../{name}/versions's alone; the JSON routes below
    # /api/v1/featuresets/ refuse past CAIRN_MAX_BODY_BYTES (16 MiB) as every JSON route does,
    # before reading the body (a declared length) and while it streams in.
    over = 17 * 1024 * 1024
    port = httpx.URL(str(fs.base_url)).port
    for method, path, reads_body in [
        ("PUT", "/api/v1/featuresets/big/checks", True),
        ("POST", "/api/v1/featuresets/big/skew/samples", True),
        # These two answer (404: no such set; 409: versions are immutable) before reading any
        # body: a declared length over the cap is refused all the same.
        ("POST", "/api/v1/featuresets/big/materialize", False),
        ("PUT", "/api/v1/featuresets/big/versions/1", False),
    ]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(
                f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                f"content-length: {over}\r\n\r\n".encode()
            )
            assert raw.recv(4096).startswith(b"HTTP/1.1 413"), (method, path)
        if not reads_body:
            continue
        streamed = fs.request(
            method,
            path.removeprefix("/api/v1"),
            content=iter([b"[" + b"0," * (over // 2), b"0]"]),
            headers={"content-type": "application/json"},
        )
        assert streamed.status_code == 413, (method, path, streamed.text[:200])
        assert "16777216 bytes" in streamed.json()["detail"]


def test_health_metrics_and_read_keys(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        api_keys=["k1"],
        read_needs_key=True,
    )
    with ThreadServer(create_app(settings)) as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/readyz").status_code == 200
        key = {"authorization": "Bearer k1"}
        denied = c.post("/api/v1/featuresets", json=values("k", ("a", "int", 1)))
        assert denied.status_code == 401
        assert (
            c.post(
                "/api/v1/featuresets", json=values("k", ("a", "int", 1)), headers=key
            ).status_code
            == 201
        )
        assert c.get("/api/v1/featuresets/k").status_code == 401  # the fast route checks too
        assert c.get("/api/v1/featuresets/k", headers=key).status_code == 200
        # With keys set, the metrics and the API description need one too (CAIRN_OPEN_*).
        assert c.get("/metrics").status_code == 401
        assert c.get("/openapi.json").status_code == 401
        metrics = c.get("/metrics", headers=key).text
        assert 'route="/api/v1/featuresets/{name}"' in metrics
        assert "cairn_featurestore_outbox_pending" in metrics
        spec = c.get("/openapi.json", headers=key).json()
        assert "/api/v1/featuresets/{name}" in spec["paths"]


# --- the outbox of catalogue registrations -------------------------------------------------


def test_a_registration_queued_without_a_write_is_delivered_like_a_writes(
    fs_settings: Settings,
) -> None:
    """FeatureSetStore.outbox_enqueue (a set's flags changed in the metric store): queued on its
    own, one entry per name, kept across a reopen, backed off with the name's others, and
    dropped only up to what a delivery covered."""

    async def scenario() -> None:
        store = create_store(fs_settings)
        await store.open()
        try:
            assert await store.outbox_due(time.time(), 10) == []
            await store.outbox_enqueue("flagged", datetime.now(UTC))
            await store.outbox_enqueue("flagged", datetime.now(UTC))
        finally:
            await store.close()
        store = create_store(fs_settings)
        await store.open()
        try:
            assert await store.outbox_pending() == 1
            [entry] = await store.outbox_due(time.time(), 10)
            assert (entry.name, entry.attempts) == ("flagged", 0)
            later = time.time() + 3600
            await store.outbox_retry("flagged", 1, later, "the catalogue is down")
            assert await store.outbox_due(time.time(), 10) == []
            assert await store.outbox_next_due() == pytest.approx(later)
            [entry] = await store.outbox_due(later, 10)
            assert entry.attempts == 1
            # Queued while that delivery ran, so the delivery may have read older flags.
            await store.outbox_enqueue("flagged", datetime.now(UTC))
            await store.outbox_done("flagged", entry.seq)
            assert await store.outbox_pending() == 1
            [again] = await store.outbox_due(time.time(), 10)
            assert (again.name, again.attempts) == ("flagged", 0)
            await store.outbox_done("flagged", again.seq)
            assert await store.outbox_pending() == 0
            assert await store.outbox_next_due() is None
        finally:
            await store.close()

    asyncio.run(scenario())


# --- decoded-size limits, non-finite floats, failed writes ----------------------------------


def zeros(rows: int) -> pa.ChunkedArray:
    """``rows`` int64 zeros as chunks sharing one buffer: gigabytes to decode, 8 MB to hold."""
    chunk = pa.repeat(pa.scalar(0, pa.int64()), 1_000_000)
    return pa.chunked_array([chunk] * (rows // 1_000_000))


def test_decompression_bombs_are_refused_before_decoding(
    fs: httpx.Client, fs_settings: Settings
) -> None:
    # 150 million zeros in 3 columns, one row group: 650 KB of zstd, 1.2 GB once decoded.
    column = zeros(50_000_000)
    bomb = parquet_bytes(
        pa.table({"a": column, "b": column, "c": column}),
        compression="zstd",
        row_group_size=50_000_000,
    )
    assert len(bomb) < 2_000_000
    refused = upload(fs, "bomb", bomb)
    assert refused.status_code == 413, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    detail = refused.json()["detail"]
    assert "CAIRN_TABLE_MAX_ROW_GROUP_BYTES" in detail and "536,870,912" in detail, detail
    assert "row_group_size" in detail

    # A 100 KB string, dictionary-encoded 10,000 times: the footer hides it (byte arrays have
    # no width there); measuring while the upload is checked finds 1 GB.
    big = pa.DictionaryArray.from_arrays(
        pa.array([0] * 10_000, pa.int32()), pa.array(["x" * 100_000])
    )
    strings = parquet_bytes(pa.table({"s": big}), compression="zstd", store_schema=False)
    refused = upload(fs, "bomb", strings)
    assert refused.status_code == 413, refused.text
    assert "CAIRN_TABLE_MAX_ROW_GROUP_BYTES" in refused.json()["detail"]

    assert fs.get("/featuresets/bomb/versions").status_code == 404
    assert stored_files(fs_settings) == []  # no blob, no leftover temporary file


def test_row_and_total_limits_name_their_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        table_max_rows=999,
        table_max_decoded_bytes=20_000,
    )
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as api,
    ):
        rows = upload(api, "t", parquet_bytes(sample_table(1000)))
        assert rows.status_code == 413 and "CAIRN_TABLE_MAX_ROWS" in rows.json()["detail"]
        total = upload(api, "t", parquet_bytes(sample_table(900), row_group_size=100))
        assert total.status_code == 413
        assert "CAIRN_TABLE_MAX_DECODED_BYTES" in total.json()["detail"]
        assert upload(api, "t", parquet_bytes(sample_table(100))).status_code == 201


def test_nan_and_infinities_stay_distinguishable_from_null(fs: httpx.Client) -> None:
    nan, inf = float("nan"), float("inf")
    table = pa.table(
        {
            "x": pa.array([1.5, nan, inf, -inf, None], pa.float64()),
            "xs": pa.array([[nan, 2.0], [inf], None, [-inf, None], []], pa.list_(pa.float32())),
            "n": pa.array([1, 2, 3, 4, None], pa.int64()),
        }
    )
    assert upload(fs, "odd_floats", parquet_bytes(table)).status_code == 201
    rows = fs.get("/featuresets/odd_floats").json()["data"]["rows"]
    assert [r["x"] for r in rows] == [1.5, "NaN", "Infinity", "-Infinity", None]
    assert [r["xs"] for r in rows] == [["NaN", 2.0], ["Infinity"], None, ["-Infinity", None], []]
    assert [r["n"] for r in rows] == [1, 2, 3, 4, None]
    # Arrow and Parquet carry them as floats.
    arrow = pa.ipc.open_stream(fs.get("/featuresets/odd_floats?format=arrow").content).read_all()
    parquet = pq.read_table(io.BytesIO(fs.get("/featuresets/odd_floats?format=parquet").content))
    for served in (arrow, parquet):
        assert served.column("x").to_pylist()[2:] == [inf, -inf, None]
        assert served.column("x").to_pylist()[1] != served.column("x").to_pylist()[1]  # NaN
    # A value set refuses them (422) rather than storing a null.
    refused = fs.post(
        "/featuresets",
        content=b'{"name": "odd", "features": [{"name": "a", "dtype": "float", "value": NaN}]}',
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 422 and "finite" in refused.json()["detail"]


def race(fs: httpx.Client, settings: Settings, slow: bytes, fast: bytes, version: int) -> str:
    """Two uploads to ``raced`` expecting ``version``: the slow one passes its version check,
    then the fast one is stored; the slow one's write is refused (409) by the store after its
    file was checked and put in place. Returns the sha256 of the fast one's file."""
    tmp = settings.featurestore_blobs / "tmp"
    release = threading.Event()
    answers: list[httpx.Response] = []

    def slow_body() -> Iterator[bytes]:
        yield slow[:100]
        release.wait(30)
        yield slow[100:]

    def slow_upload() -> None:
        with httpx.Client(base_url=str(fs.base_url), timeout=60) as other:
            answers.append(
                other.post(
                    "/featuresets/raced/versions",
                    content=slow_body(),
                    params={"version": version},
                    headers={"content-type": PARQUET},
                )
            )

    thread = threading.Thread(target=slow_upload)
    thread.start()
    try:
        # Its version check is done once its body is being written to a temporary file.
        for _ in range(3000):
            if tmp.is_dir() and any(tmp.iterdir()):
                break
            threading.Event().wait(0.01)
        stored = upload(fs, "raced", fast, version=version)
        assert stored.status_code == 201, stored.text
    finally:
        release.set()
        thread.join(60)
    assert answers[0].status_code == 409, answers[0].text
    return str(stored.json()["table"]["sha256"])


def test_a_failed_version_write_leaves_no_file_behind(
    fs: httpx.Client, fs_settings: Settings
) -> None:
    first, second = parquet_bytes(sample_table(10)), parquet_bytes(sample_table(20))
    kept = race(fs, fs_settings, parquet_bytes(sample_table(50)), first, version=1)
    assert [p.name for p in stored_files(fs_settings)] == [f"{kept}.parquet"]
    # Refused bytes that version 1 already stores: the shared file stays.
    also = race(fs, fs_settings, first, second, version=2)
    assert {p.name for p in stored_files(fs_settings)} == {f"{kept}.parquet", f"{also}.parquet"}
    for version in (1, 2):
        served = fs.get(f"/featuresets/raced/versions/{version}", params={"format": "parquet"})
        assert served.status_code == 200


def test_nanosecond_timestamps_page_as_json(fs: httpx.Client) -> None:
    # pandas writes timestamps in nanoseconds; pyarrow hands them out as pandas.Timestamp.
    moment = datetime(2025, 6, 16, 5, 45, tzinfo=UTC)
    table = pa.table(
        {
            "at": pa.array([moment, None], pa.timestamp("ns", tz="UTC")),
            "naive": pa.array([moment.replace(tzinfo=None), None], pa.timestamp("ns")),
            "took": pa.array([timedelta(seconds=90), None], pa.duration("ns")),
        }
    )
    assert upload(fs, "ns_times", parquet_bytes(table)).status_code == 201
    page = fs.get("/featuresets/ns_times")
    assert page.status_code == 200, page.text
    assert page.json()["data"]["rows"] == [
        {"at": "2025-06-16T05:45:00+00:00", "naive": "2025-06-16T05:45:00", "took": 90.0},
        {"at": None, "naive": None, "took": None},
    ]

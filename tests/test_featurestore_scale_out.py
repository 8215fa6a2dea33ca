"""Two feature-store processes (`cairn serve featurestore`) sharing MongoDB (FerretDB) and an S3
blob store (SeaweedFS), each with its own data folder: writers spread over both get gapless,
distinct versions, and each process serves the other's tables (Arrow and Parquet GETs, online
lookups, point-in-time joins)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore_service.blobstore import open_blob_store
from tests.conftest import ProcessServer, cairn_env, refused_port
from tests.servers.fixtures import ProductionServers
from tests.test_featurestore_api import parquet_bytes
from tests.test_online import columns, customers, lookup, wait_online

ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"
NOW = datetime.now(UTC).replace(microsecond=0)
WRITERS = 6  # threads, half of them on each process
WRITES = 4  # uploads per thread


@pytest.fixture
def pair(
    production_servers: ProductionServers, s3_server: object, tmp_path: Path
) -> Iterator[tuple[httpx.Client, httpx.Client, str, dict[str, str]]]:
    bucket = s3_server.fresh_bucket("scale")  # type: ignore[attr-defined]
    blobs_url = f"s3://{bucket}/blobs"
    shared = {
        **production_servers.env(),  # one database for both
        **s3_server.env(),  # type: ignore[attr-defined]
        "CAIRN_BLOBS_URL": blobs_url,
        "CAIRN_CATALOGUE_URL": f"http://127.0.0.1:{refused_port()}",
        "CAIRN_BLOBS_CACHE_BYTES": str(64 * 1024 * 1024),
    }
    servers = [
        ProcessServer(
            "featurestore", cairn_env(tmp_path / name, **shared), tmp_path / f"{name}.log"
        )
        for name in ("a", "b")
    ]
    try:
        for server in servers:
            server.start(timeout=120)
        with (
            httpx.Client(base_url=servers[0].url, timeout=60) as a,
            httpx.Client(base_url=servers[1].url, timeout=60) as b,
        ):
            yield a, b, blobs_url, shared
    finally:
        for server in servers:
            server.stop()


def table(seed: int) -> pa.Table:
    return pa.table({"k": list(range(seed, seed + 50)), "v": [float(seed)] * 50})


def test_writers_on_both_processes_get_gapless_distinct_versions_and_each_serves_the_other(
    pair: tuple[httpx.Client, httpx.Client, str, dict[str, str]],
    tmp_path: Path,
    use_env: object,
) -> None:
    a, b, blobs_url, shared = pair
    clients = {"a": a, "b": b}
    written: list[tuple[int, str, int]] = []  # (version, process, seed)
    errors: list[str] = []
    lock = threading.Lock()

    def writer(number: int) -> None:
        name = "a" if number % 2 == 0 else "b"
        with httpx.Client(base_url=str(clients[name].base_url), timeout=120) as client:
            for i in range(WRITES):
                seed = number * 100 + i
                answer = client.post(
                    "/api/v1/featuresets/shared/versions",
                    content=parquet_bytes(table(seed)),
                    headers={"content-type": PARQUET},
                )
                with lock:
                    if answer.status_code == 201:
                        written.append((answer.json()["version"], name, seed))
                    else:
                        errors.append(f"{name}: {answer.status_code} {answer.text[:300]}")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)

    assert errors == []
    versions = sorted(v for v, _, _ in written)
    assert versions == list(range(1, WRITERS * WRITES + 1))  # gapless and distinct
    assert {p for _, p, _ in written} == {"a", "b"}

    # Every version reads back from the process that did not write it, byte for byte.
    for version, name, seed in written:
        other = b if name == "a" else a
        got = other.get(
            f"/api/v1/featuresets/shared/versions/{version}", headers={"accept": PARQUET}
        )
        assert got.status_code == 200, got.text
        assert got.content == parquet_bytes(table(seed))
    latest = max(written)
    for client in (a, b):
        stream = client.get("/api/v1/featuresets/shared", headers={"accept": ARROW})
        assert pa.ipc.open_stream(stream.content).read_all().equals(table(latest[2]))

    # The tables are in the shared bucket, one per distinct upload, and no process kept one.
    use_env({k: v for k, v in shared.items() if not k.startswith("CAIRN_BLOBS")})  # type: ignore[operator]
    store = open_blob_store(blobs_url)
    assert len(list(store.list_blobs())) == WRITERS * WRITES
    store.close()
    for name in ("a", "b"):
        kept = [
            p
            for p in (tmp_path / name / "featurestore-blobs").rglob("*.parquet")
            if p.parent.name != "cache"
        ]
        assert kept == []

    # A feature table written on one process: online lookups and a point-in-time join on the
    # other.
    day = timedelta(days=1)
    rows = [("C1", NOW - 3 * day, 1.0, 1), ("C1", NOW - day, 3.0, 3), ("C2", NOW - day, 20.0, 2)]
    made = a.post(
        "/api/v1/featuresets/customers/versions",
        content=parquet_bytes(customers(rows)),
        params={"entities": "customer_id", "timestamp": "feature_date"},
        headers={"content-type": PARQUET},
    )
    assert made.status_code == 201, made.text
    version = made.json()["version"]
    wait_online(b, "customers", version)
    answer = lookup(b, {"features": ["customers:spend"], "entities": {"customer_id": ["C1", "C2"]}})
    assert columns(answer)["spend"]["values"] == [3.0, 20.0]
    frame = pa.table(
        {
            "customer_id": ["C1", "C1"],
            "event_timestamp": pa.array([NOW - 2 * day, NOW], pa.timestamp("us", "UTC")),
        }
    )
    joined = b.post(
        "/api/v1/historical-features",
        params={"features": "customers:spend"},
        content=parquet_bytes(frame),
        headers={"content-type": PARQUET, "accept": PARQUET},
    )
    assert joined.status_code == 200, joined.text
    assert pq.read_table(io.BytesIO(joined.content)).column("spend").to_pylist() == [1.0, 3.0]

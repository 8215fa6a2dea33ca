"""`cairn crawl thrift://...` against a real Hive standalone metastore (Derby, Java 17;
tests/servers/metastore.py): databases and tables become assets, a table depends on its
database, a table over a folder a volume crawl catalogued is linked to that asset, and a
dropped table is soft-deleted."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from cairn.models import crawled_id
from tests.conftest import ProcessServer
from tests.servers.metastore import HiveMetastore
from tests.servers.processes import free_port
from tests.test_crawl_e2e import crawl, make_volume, search


def get(server: ProcessServer, asset_id: str) -> dict:
    response = httpx.get(f"{server.url}/api/v1/assets/{asset_id}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_databases_and_tables_with_edges_and_location_link(
    tmp_path: Path, hive_metastore: HiveMetastore, catalogue_process: ProcessServer
) -> None:
    lake = tmp_path / "lake"
    make_volume(lake)
    code, report = crawl(lake, catalogue_process)
    assert code == 0, report
    (raw,) = search(catalogue_process.url, name="sales_raw")["items"]

    db = f"sales_{uuid.uuid4().hex[:8]}"
    with hive_metastore.client() as client:
        client.create_database(
            db, owner="alice", location=(hive_metastore.warehouse / db).as_uri(), comment="Sales"
        )
        client.create_table(
            db,
            "orders",
            columns=[("id", "bigint", "order id"), ("amount", "decimal(10,2)", None)],
            partition_keys=[("dt", "string")],
            location=(hive_metastore.warehouse / db / "orders").as_uri(),
            owner="bob",
            comment="Every order",
        )
        # Hadoop writes local paths as file:/x; the volume's asset says file:///x.
        client.create_table(
            db,
            "raw_sales",
            columns=[("store_id", "bigint", None), ("amount", "double", None)],
            location=f"file:{lake / 'raw/sales'}",
            owner="bob",
            storage="textfile",
        )

    url = hive_metastore.url
    code, report = crawl(url, catalogue_process)
    assert code == 0, report
    assert report["kind"] == "source" and report["errors"] == [], report

    db_id = crawled_id(url, f"database:{db}", 0)
    database = get(catalogue_process, db_id)
    assert database["type"] == "database" and database["name"] == db
    assert database["owners"] == ["alice"] and database["description"] == "Sales"

    orders = get(catalogue_process, crawled_id(url, f"table:{db}.orders", 0))
    assert orders["type"] == "table" and orders["name"] == f"{db}.orders"
    assert orders["owners"] == ["bob"] and orders["description"] == "Every order"
    assert orders["format"] == "parquet"
    assert [(c["name"], c["type"]) for c in orders["schema"]] == [
        ("id", "bigint"),
        ("amount", "decimal(10,2)"),
        ("dt", "string"),
    ]
    assert orders["schema"][2]["description"] == "partition key"
    assert orders["labels"]["partitioned"] is True
    assert orders["extra"]["metastore"]["partition_keys"] == ["dt"]
    assert orders["location"] == (hive_metastore.warehouse / db / "orders").as_uri()
    assert orders["depends_on"] == [db_id]

    linked = get(catalogue_process, crawled_id(url, f"table:{db}.raw_sales", 0))
    assert linked["format"] == "text"
    assert linked["labels"]["partitioned"] is False
    assert linked["extra"]["location_asset"] == raw["id"]
    assert set(linked["depends_on"]) == {db_id, raw["id"]}

    # The lineage picture: database -> both tables, and the crawled folder -> its table.
    lineage = httpx.get(
        f"{catalogue_process.url}/api/v1/assets/{db_id}/lineage",
        params={"direction": "down", "depth": 1},
        timeout=10,
    ).json()
    edges = {(e["source"], e["target"]) for e in lineage["edges"]}
    assert edges == {(db_id, orders["id"]), (db_id, linked["id"])}
    upstream = httpx.get(
        f"{catalogue_process.url}/api/v1/assets/{linked['id']}/lineage",
        params={"direction": "up", "depth": 1},
        timeout=10,
    ).json()
    assert (raw["id"], linked["id"]) in {(e["source"], e["target"]) for e in upstream["edges"]}

    # Unchanged metastore: no writes. A dropped table: soft-deleted.
    code, again = crawl(url, catalogue_process)
    assert code == 0 and again["created"] == again["updated"] == again["deleted"] == 0, str(again)
    with hive_metastore.client() as client:
        client.drop_table(db, "orders")
    code, after = crawl(url, catalogue_process)
    assert code == 0 and after["deleted"] == 1, after
    assert get(catalogue_process, orders["id"])["deleted"] is True
    assert get(catalogue_process, linked["id"])["deleted"] is False


def test_metastore_down_fails_clearly(catalogue_process: ProcessServer) -> None:
    port = free_port()  # nothing listens there
    code, report = crawl(f"thrift://127.0.0.1:{port}", catalogue_process)
    assert code == 1
    assert f"cannot reach the Hive Metastore at 127.0.0.1:{port}" in report["error"], report

"""`cairn crawl thrift://...` against a real Hive standalone metastore (Derby, Java 17;
tests/servers/metastore.py): databases and tables become assets; database -> table, and the
asset a volume crawl catalogued at a table's location -> the table, are lineage edges of origin
"metastore" (not depends_on), found through the catalogue, so whichever machine crawled the
volume; a table that moves loses its old link, and a dropped table is soft-deleted and leaves
the living lineage."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from cairn.models import crawled_id
from tests.conftest import ProcessServer
from tests.servers.metastore import HiveMetastore
from tests.servers.processes import refused_port
from tests.test_crawl_e2e import crawl, make_volume, search


def get(server: ProcessServer, asset_id: str) -> dict:
    response = httpx.get(f"{server.url}/api/v1/assets/{asset_id}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def lineage(
    server: ProcessServer, asset_id: str, direction: str, origin: str | None = None
) -> set[tuple[str, str, str]]:
    """The edges of an asset's lineage one step up or down (of one origin, if given)."""
    response = httpx.get(
        f"{server.url}/api/v1/assets/{asset_id}/lineage",
        params={"direction": direction, "depth": 1},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    edges = {(e["source"], e["target"], e["origin"]) for e in response.json()["edges"]}
    return {e for e in edges if origin in (None, e[2])}


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
    assert orders["depends_on"] == []  # the link is a metastore edge, not a manifest's

    linked = get(catalogue_process, crawled_id(url, f"table:{db}.raw_sales", 0))
    assert linked["format"] == "text"
    assert linked["labels"]["partitioned"] is False
    assert linked["depends_on"] == [] and "location_asset" not in linked.get("extra", {})

    # The lineage picture: database -> both tables, and the crawled folder -> its table, all
    # of origin "metastore".
    assert lineage(catalogue_process, db_id, "down") == {
        (db_id, orders["id"], "metastore"),
        (db_id, linked["id"], "metastore"),
    }
    assert lineage(catalogue_process, linked["id"], "up") == {
        (db_id, linked["id"], "metastore"),
        (raw["id"], linked["id"], "metastore"),
    }
    assert lineage(catalogue_process, raw["id"], "down", "metastore") == {
        (raw["id"], linked["id"], "metastore")
    }

    # Unchanged metastore: no writes. A moved table: the old location's link goes.
    code, again = crawl(url, catalogue_process)
    assert code == 0 and again["created"] == again["updated"] == again["deleted"] == 0, str(again)
    with hive_metastore.client() as client:
        client.drop_table(db, "orders")
        client.drop_table(db, "raw_sales")
        client.create_table(
            db,
            "raw_sales",
            columns=[("store_id", "bigint", None), ("amount", "double", None)],
            location=f"file:{tmp_path / 'elsewhere'}",
            owner="bob",
            storage="textfile",
        )
    code, after = crawl(url, catalogue_process)
    assert code == 0 and after["deleted"] == 1, after
    assert lineage(catalogue_process, linked["id"], "up") == {(db_id, linked["id"], "metastore")}
    assert lineage(catalogue_process, raw["id"], "down", "metastore") == set()
    # The dropped table: soft-deleted, gone from its database's lineage; its own page still
    # says where it came from, as a deleted file's asset keeps its depends_on.
    assert get(catalogue_process, orders["id"])["deleted"] is True
    assert get(catalogue_process, linked["id"])["deleted"] is False
    assert lineage(catalogue_process, db_id, "down") == {(db_id, linked["id"], "metastore")}
    assert lineage(catalogue_process, orders["id"], "up") == {(db_id, orders["id"], "metastore")}


def test_the_location_link_comes_from_the_catalogue(
    tmp_path: Path, hive_metastore: HiveMetastore, catalogue_process: ProcessServer
) -> None:
    """The metastore is crawled from a machine that never crawled the volume (its own data
    directory), first before the volume is catalogued, then after: the link comes from the
    catalogue, on the next metastore crawl."""
    lake = tmp_path / "lake"
    make_volume(lake)
    db = f"other_{uuid.uuid4().hex[:8]}"
    with hive_metastore.client() as client:
        client.create_database(db, owner="alice", location=(tmp_path / "wh").as_uri())
        client.create_table(
            db,
            "raw_sales",
            columns=[("amount", "double", None)],
            location=f"file:{lake / 'raw/sales'}/",
            owner="bob",
            storage="textfile",
        )
    elsewhere = {"CAIRN_DATA_DIR": str(tmp_path / "another-machine")}
    code, report = crawl(hive_metastore.url, catalogue_process, settings=elsewhere)
    assert code == 0, report
    db_id = crawled_id(hive_metastore.url, f"database:{db}", 0)
    table = crawled_id(hive_metastore.url, f"table:{db}.raw_sales", 0)
    assert lineage(catalogue_process, table, "up") == {(db_id, table, "metastore")}

    code, report = crawl(lake, catalogue_process)  # on this machine, with its own state
    assert code == 0, report
    (raw,) = search(catalogue_process.url, name="sales_raw")["items"]
    code, report = crawl(hive_metastore.url, catalogue_process, settings=elsewhere)
    assert code == 0, report
    # That machine's crawl state knows the metastore alone.
    assert len(list((tmp_path / "another-machine").glob("crawl-state/*.db"))) == 1
    assert lineage(catalogue_process, table, "up") == {
        (db_id, table, "metastore"),
        (raw["id"], table, "metastore"),
    }


def test_metastore_down_fails_clearly(catalogue_process: ProcessServer) -> None:
    port = refused_port()  # nothing listens there
    code, report = crawl(f"thrift://127.0.0.1:{port}", catalogue_process)
    assert code == 1
    assert f"cannot reach the Hive Metastore at 127.0.0.1:{port}" in report["error"], report


def test_a_database_dropped_while_it_is_listed_is_gone_not_a_failed_crawl(
    hive_metastore: HiveMetastore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymetastore.hive_metastore import ThriftHiveMetastore

    from cairn.settings import Settings
    from crawler.sources.metastore import MetastoreSource

    kept, dropped = (f"{stem}_{uuid.uuid4().hex[:8]}" for stem in ("kept", "dropped"))
    with hive_metastore.client() as client:
        for db in (kept, dropped):
            client.create_database(
                db, owner="alice", location=(hive_metastore.warehouse / db).as_uri()
            )
            client.create_table(
                db,
                "t",
                columns=[("id", "bigint", None)],
                location=(hive_metastore.warehouse / db / "t").as_uri(),
                owner="bob",
            )
    # The race made certain: the database is dropped (on the real metastore) after the
    # crawl described it and listed its tables, before it reads them.
    read_tables = ThriftHiveMetastore.Client.get_table_objects_by_name_req

    def drop_first(self: object, request: object) -> object:
        if getattr(request, "dbName", None) == dropped:
            with hive_metastore.client() as other:
                other.api.drop_database(dropped, False, True)
        return read_tables(self, request)

    monkeypatch.setattr(ThriftHiveMetastore.Client, "get_table_objects_by_name_req", drop_first)
    listing = MetastoreSource.from_url(hive_metastore.url, Settings()).list_assets()

    keys = {a.key for a in listing.assets}
    assert {f"database:{kept}", f"table:{kept}.t"} <= keys
    assert not {k for k in keys if dropped in k}
    assert not {k for k in listing.unreadable if dropped in k}


def test_a_port_that_is_no_metastore_is_named(catalogue_process: ProcessServer) -> None:
    # The catalogue's HTTP answer read as a frame "Length exceeded max allowed: 16384000",
    # and that was all the report said.
    port = catalogue_process.url.rsplit(":", 1)[1]
    code, report = crawl(f"thrift://127.0.0.1:{port}", catalogue_process)
    assert code == 1
    assert "is that the metastore's Thrift port" in report["error"], report

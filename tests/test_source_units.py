"""Pure pieces of the crawler sources: JSON schema inference from sampled messages, schema
registry documents to columns, location matching, and source URL parsing."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cairn.settings import Settings
from crawler.source_crawl import location_spellings
from crawler.sources import SourceError, is_source_url, open_source
from crawler.sources.json_schema import infer_json_schema
from crawler.sources.metastore import format_of, normalize_location
from crawler.sources.registry_schema import (
    RegistryTrouble,
    RegistryUnreachable,
    columns_of,
    fetch_registry_schema,
)
from tests.conftest import cairn_env, refused_port, run_cairn


def test_json_inference_merges_kinds_and_nullability() -> None:
    messages = [
        json.dumps({"id": 1, "price": 2, "tags": ["a"], "ok": True}).encode(),
        json.dumps({"id": 2, "price": 2.5, "tags": [], "ok": False, "extra": {"k": 1}}).encode(),
        json.dumps({"id": 3, "price": None, "tags": "x", "ok": True}).encode(),
        b"not json at all",
        b"[1, 2, 3]",  # JSON, but not an object
    ]
    columns = {c["name"]: c for c in infer_json_schema(messages) or []}
    assert list(columns) == ["id", "price", "tags", "ok", "extra"]
    assert columns["id"] == {"name": "id", "type": "int64", "nullable": False}
    assert columns["price"] == {"name": "price", "type": "double", "nullable": True}
    assert columns["tags"]["type"] == "json"  # a list, then a string
    assert columns["ok"]["type"] == "bool" and not columns["ok"]["nullable"]
    assert columns["extra"] == {"name": "extra", "type": "struct", "nullable": True}


def test_json_inference_without_objects_gives_no_schema() -> None:
    assert infer_json_schema([b"\x00\x01", b"42", b""]) is None
    assert infer_json_schema([]) is None


def test_avro_record_to_columns() -> None:
    avro = {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "id", "type": "long", "doc": "order id"},
            {"name": "note", "type": ["null", "string"]},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    assert columns_of("AVRO", json.dumps(avro)) == [
        {"name": "id", "type": "long", "nullable": False, "description": "order id"},
        {"name": "note", "type": "string", "nullable": True},
        {"name": "at", "type": "timestamp-millis", "nullable": False},
    ]
    assert columns_of("AVRO", '"string"') is None  # not a record
    assert columns_of("PROTOBUF", "syntax = 'proto3';") is None


def test_json_schema_to_columns() -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "description": "key"},
            "name": {"type": ["string", "null"]},
            "score": {"type": "number"},
        },
        "required": ["id", "name"],
    }
    assert columns_of("JSON", json.dumps(schema)) == [
        {"name": "id", "type": "integer", "nullable": False, "description": "key"},
        {"name": "name", "type": "string", "nullable": True},
        {"name": "score", "type": "number", "nullable": True},
    ]


def test_locations_match_across_spellings() -> None:
    assert location_spellings("file:/data/lake/t/")[:2] == [
        "file:///data/lake/t",
        "file:///data/lake/t/",
    ]
    # A metastore's NameNode RPC port; Cairn's hdfs:// volumes name the HTTP port.
    hdfs = location_spellings("hdfs://nn:8020/w/t")
    assert hdfs[0] == "hdfs://nn:8020/w/t"
    assert {"hdfs://nn:9870/w/t", "webhdfs://nn:9870/w/t", "hdfs://nn/w/t"} <= set(hdfs)
    assert not any("other" in u for u in hdfs)
    assert location_spellings("s3://b/a/b") == ["s3://b/a/b", "s3://b/a/b/"]
    assert normalize_location("file:/tmp/x/") == "file:///tmp/x"


def test_table_format_from_storage_classes() -> None:
    parquet = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    assert format_of({}, parquet, None) == "parquet"
    assert format_of({}, "org.apache.hadoop.hive.ql.io.orc.OrcInputFormat", None) == "orc"
    text = "org.apache.hadoop.mapred.TextInputFormat"
    assert format_of({}, text, "org.apache.hadoop.hive.serde2.OpenCSVSerde") == "csv"
    assert format_of({}, text, "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe") == "text"
    assert format_of({"table_type": "ICEBERG"}, parquet, None) == "iceberg"
    assert format_of({}, None, None) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://", "names no broker"),
        ("kafka://b:9092/topic", "names brokers only"),
        ("thrift://", "thrift://host:9083"),
        ("thrift://ms:9083/sales", "thrift://host:9083"),
        ("thrift://ms:port", "not a number"),
        ("kafka://user:secret@b:9092", "carries no credentials"),
        ("thrift://user:secret@ms:9083", "carries no credentials"),
    ],
)
def test_bad_source_urls_say_what_to_write(url: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(url, Settings())


def test_source_urls_are_told_from_volumes() -> None:
    assert is_source_url("kafka://b:9092") and is_source_url("THRIFT://ms:9083")
    assert not is_source_url("hdfs://nn:9870/x") and not is_source_url("/data/kafka://x")
    source = open_source("kafka://b1,b2:9093", Settings())
    assert source.url == "kafka://b1:9092,b2:9093"


def test_watch_is_refused_for_sources(tmp_path: Path) -> None:
    result = run_cairn("crawl", "kafka://127.0.0.1:9", "--watch", env=cairn_env(tmp_path))
    assert result.returncode == 1
    assert "--watch needs a local folder" in result.stderr and "--every" in result.stderr


def test_a_password_in_the_schema_registry_url_stays_out_of_the_error() -> None:
    # Confluent Cloud's registry takes its key and secret as the URL's user info; the error
    # becomes a problem in the crawl report.
    url = f"https://reg-key:reg-s3cret@127.0.0.1:{refused_port()}"
    with pytest.raises(SourceError) as info:
        fetch_registry_schema(url, "orders-value", timeout=2)
    assert "reg-s3cret" not in str(info.value)
    assert "reg-key@127.0.0.1" in str(info.value)


@pytest.fixture
def answering(request: pytest.FixtureRequest) -> Iterator[str]:
    """A local HTTP server answering every GET with the status in ``request.param``: what a
    registry behind a proxy answers when it is down (503) or refuses the key (401)."""
    status = request.param

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"no")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("answering", [503], indirect=True)
def test_a_registry_in_trouble_is_told_from_one_that_answered(answering: str) -> None:
    # A server error says nothing of the subject's schema (the crawl keeps what it had); a
    # refused key is an answer (the topic is described without the registry's schema).
    with pytest.raises(RegistryTrouble, match="HTTP 503"):
        fetch_registry_schema(answering, "orders-value", timeout=5)
    with pytest.raises(RegistryUnreachable):
        fetch_registry_schema(f"http://127.0.0.1:{refused_port()}", "orders-value", timeout=5)


@pytest.mark.parametrize("answering", [401], indirect=True)
def test_a_registry_that_refuses_the_key_answered(answering: str) -> None:
    with pytest.raises(SourceError, match="HTTP 401") as info:
        fetch_registry_schema(answering, "orders-value", timeout=5)
    assert not isinstance(info.value, RegistryTrouble)

"""Both services fuzzed from their own OpenAPI documents with schemathesis.

Real servers (in-process uvicorn), the sqlite backend, API keys required for reads and writes,
so the key checks are exercised too (schemathesis retries guarded operations without the key
and with a wrong one). The pass condition is no server error and no response that breaks the
document: an undocumented status, content type, header or body shape, invalid input accepted.
The budget is bounded and the generation derandomized, so a CI run is stable.

Parquet uploads and Arrow/Parquet downloads cannot be generated from a schema: explicit cases
send a real Parquet file and read both formats back, validated by the same checks.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from cairn.settings import Settings
from catalogue_service.app import create_app as catalogue_app
from featurestore_service.app import create_app as featurestore_app
from tests.conftest import ThreadServer

KEY = "fuzz-key"
# Spelt as the security scheme names it, so schemathesis can drop it to probe the key check.
AUTH = {"Authorization": f"Bearer {KEY}"}
# The embedded backend, and keys needed for writes and reads alike: every operation has its
# key check fuzzed.
KEYED: dict[str, Any] = {"backend": "sqlite", "api_keys": [KEY], "read_needs_key": True}
PARQUET = "application/vnd.apache.parquet"
ARROW = "application/vnd.apache.arrow.stream"

# Parquet bodies are sent as the bytes they are (random bytes from the fuzzer, a real file from
# the explicit cases below).
schemathesis.serializer.alias(
    [PARQUET, "application/x-parquet", "application/vnd.apache.arrow.stream"],
    "application/octet-stream",
)

# Examples per operation in the random phase; the deterministic phases come on top of it.
BUDGET = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ThreadServer]]:
    root: Path = tmp_path_factory.mktemp("fuzz")
    with ThreadServer(catalogue_app(Settings(data_dir=root / "catalogue", **KEYED))) as cat:
        featurestore = featurestore_app(
            Settings(
                data_dir=root / "featurestore",
                catalogue_url=cat.url,
                api_key=KEY,
                **KEYED,
            )
        )
        with ThreadServer(featurestore) as fs:
            yield {"catalogue": cat, "featurestore": fs}


def _document(create_app: Callable[[Settings], FastAPI]) -> dict[str, Any]:
    """A service's OpenAPI document under the fuzzed settings, for collection (the app is
    never started: its store is not opened). The served document is checked to be the same."""
    unused = Path(tempfile.gettempdir()) / "cairn-fuzz-never-opened"
    return create_app(Settings(data_dir=unused, **KEYED)).openapi()


CATALOGUE_DOC = _document(catalogue_app)
FEATURESTORE_DOC = _document(featurestore_app)
# The key as the document's security scheme: schemathesis sends it, and also leaves it out or
# spoils it to check that every guarded operation refuses such requests.
# Not checked: that every schema-valid request is accepted. The models hold rules JSON Schema
# cannot say (an asset type from the configured set, no control characters, ...), answered with
# the documented 422.
CONFIG = SchemathesisConfig.from_dict(
    {
        "auth": {"openapi": {"bearer": {"bearer": KEY}}},
        "checks": {"positive_data_acceptance": {"enabled": False}},
        # Every value of a repeated string query parameter is valid (`tag=null` is the tag
        # "null"), yet the generator at times calls one "invalid" and expects a refusal.
        "operations": [
            {
                "include-path": "/api/v1/assets",
                "include-method": "GET",
                "checks": {"negative_data_rejection": {"enabled": False}},
            }
        ],
    }
)
catalogue = schemathesis.openapi.from_dict(CATALOGUE_DOC, config=CONFIG)
featurestore = schemathesis.openapi.from_dict(FEATURESTORE_DOC, config=CONFIG)


def test_the_fuzzed_documents_are_the_served_ones(servers: dict[str, ThreadServer]) -> None:
    for name, document in (("catalogue", CATALOGUE_DOC), ("featurestore", FEATURESTORE_DOC)):
        served = httpx.get(servers[name].url + "/openapi.json", headers=AUTH)
        assert served.json() == document
        assert httpx.get(servers[name].url + "/openapi.json").status_code == 401


@catalogue.parametrize()
@BUDGET
def test_catalogue_conforms_to_its_openapi(
    case: schemathesis.Case, servers: dict[str, ThreadServer]
) -> None:
    case.call_and_validate(base_url=servers["catalogue"].url)


@featurestore.parametrize()
@BUDGET
def test_featurestore_conforms_to_its_openapi(
    case: schemathesis.Case, servers: dict[str, ThreadServer]
) -> None:
    case.call_and_validate(base_url=servers["featurestore"].url)


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_parquet_upload_and_arrow_and_parquet_downloads_conform(
    servers: dict[str, ThreadServer],
) -> None:
    url = servers["featurestore"].url
    table = pa.table({"customer_id": [1, 2, 3], "score": [0.5, 0.25, 1.0]})
    upload = featurestore["/api/v1/featuresets/{name}/versions"]["POST"].Case(
        path_parameters={"name": "fuzz_table"},
        query={"description": "uploaded by the fuzz suite"},
        body=_parquet(table),
        media_type=PARQUET,
    )
    created = upload.call_and_validate(base_url=url, headers=AUTH)
    assert created.status_code == 201, created.text
    version = created.json()["version"]

    latest = featurestore["/api/v1/featuresets/{name}"]["GET"]
    one = featurestore["/api/v1/featuresets/{name}/versions/{version}"]["GET"]
    reads = [
        latest.Case(path_parameters={"name": "fuzz_table"}, headers={"accept": ARROW}),
        latest.Case(path_parameters={"name": "fuzz_table"}, query={"format": "parquet"}),
        one.Case(
            path_parameters={"name": "fuzz_table", "version": version},
            query={"columns": "score", "limit": 2},
            headers={"accept": PARQUET},
        ),
        one.Case(
            path_parameters={"name": "fuzz_table", "version": version},
            query={"format": "json", "limit": 1},
        ),
    ]
    answers = [case.call_and_validate(base_url=url, headers=AUTH) for case in reads]
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert pa.ipc.open_stream(answers[0].content).read_all().equals(table)
    assert pq.read_table(io.BytesIO(answers[1].content)).equals(table)
    assert pq.read_table(io.BytesIO(answers[2].content)).to_pydict() == {"score": [0.5, 0.25]}
    assert answers[3].json()["data"]["rows"] == [{"customer_id": 1, "score": 0.5}]

    # The same upload without a key, and with a body that is not Parquet, are refused as
    # documented.
    refused = upload.call_and_validate(base_url=url)
    assert refused.status_code == 401
    not_parquet = featurestore["/api/v1/featuresets/{name}/versions"]["POST"].Case(
        path_parameters={"name": "fuzz_table"}, body=b"not parquet", media_type=PARQUET
    )
    assert not_parquet.call_and_validate(base_url=url, headers=AUTH).status_code == 400

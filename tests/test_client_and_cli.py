"""The typed clients (sync and async) and ``cairn featureset`` against real servers."""

from __future__ import annotations

import asyncio
import inspect
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from cairn.cli import app
from cairn.client import (
    AsyncCatalogueClient,
    AsyncFeatureStoreClient,
    BadAnswer,
    CatalogueClient,
    FeatureStoreClient,
    ServiceUnreachable,
)
from cairn.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from cairn.models import Asset, FeatureSet, FeatureSetDiff, FeatureSetVersions
from cairn.settings import Settings
from featurestore_service.app import create_app
from tests.conftest import ROOT, ProcessServer, ThreadServer, cairn_env, refused_port, run_cairn

EXAMPLES = ROOT / "examples" / "featuresets"


@pytest.fixture
def featurestore(settings: Settings, catalogue: ThreadServer) -> Iterator[ThreadServer]:
    fs_settings = Settings(data_dir=settings.data_dir / "fs", catalogue_url=catalogue.url)
    with ThreadServer(create_app(fs_settings)) as server:
        yield server


def table() -> pa.Table:
    return pa.table({"id": list(range(20)), "score": [i / 10 for i in range(20)]})


def test_sync_feature_store_client(featurestore: ThreadServer, tmp_path: Path) -> None:
    with FeatureStoreClient(featurestore.url) as fs:
        first = fs.put(
            "serving",
            [{"name": "threshold", "dtype": "float", "value": 0.5}],
            depends_on=["churn_model"],
            labels={"team": "ml"},
            created_by="ana",
        )
        assert isinstance(first, FeatureSet) and first.version == 1
        second = fs.put("serving", [{"name": "threshold", "dtype": "float", "value": 0.4}])
        assert fs.get("serving").features[0].value == 0.4
        assert fs.get("serving", version=1).created_by == "ana"
        assert fs.get("serving", as_of=first.created_at).version == 1
        assert fs.get("serving", as_of=second.created_at.isoformat()).version == 2
        listing = fs.versions("serving")
        assert isinstance(listing, FeatureSetVersions) and listing.total == 2
        diff = fs.diff("serving", 1, 2)
        assert isinstance(diff, FeatureSetDiff) and diff.changed[0].name == "threshold"
        assert [s.name for s in fs.search(labels={"team": "ml"}).items] == []  # v2 has no labels
        assert [s.name for s in fs.search(name="serv").items] == ["serving"]
        with pytest.raises(Conflict, match="immutable"):
            fs.put("serving", [{"name": "t", "dtype": "int", "value": 1}], version=1)
        with pytest.raises(NotFound, match="missing"):
            fs.get("missing")
        with pytest.raises(ValueError, match="dtype"):  # checked before any request
            fs.put("serving", [{"name": "t", "dtype": "complex", "value": 1}])
        assert fs.delete("serving", 2).deleted is True
        assert fs.get("serving").version == 1

        data = table()
        stored = fs.put_table("scores", data, depends_on=["customer_360"], version_label="a")
        assert stored.kind == "table" and stored.table is not None and stored.table.rows == 20
        assert fs.get_table("scores").equals(data)
        assert fs.get_table("scores", columns=["score"], limit=5).equals(
            data.select(["score"]).slice(0, 5)
        )
        frame = fs.get_dataframe("scores")
        pd.testing.assert_frame_equal(frame, data.to_pandas())
        fs.put_table("scores", frame.assign(extra=1))
        path = tmp_path / "scores.parquet"
        pq.write_table(data, path)
        assert fs.put_table("scores", path).version == 3
        assert fs.put_table("scores", path.read_bytes()).table.sha256 == stored.table.sha256  # type: ignore[union-attr]
        target = fs.download("scores", tmp_path / "out.parquet", version=3)
        assert target.read_bytes() == path.read_bytes()
        # A refused download leaves the file it would have replaced as it was, and no other.
        with pytest.raises(NotFound):
            fs.download("missing", target)
        with pytest.raises(NotFound):
            fs.download("missing", tmp_path / "never.parquet")
        assert target.read_bytes() == path.read_bytes()
        assert sorted(p.name for p in tmp_path.glob("*.parquet*")) == [
            "out.parquet",
            "scores.parquet",
        ]
        page = fs.get("scores", version=2, columns=["extra"], limit=3, offset=1)
        assert page.data is not None and page.data.rows == [{"extra": 1}] * 3
        with pytest.raises(InvalidRequest):
            fs.get_table("scores", limit=-1)

    with (
        FeatureStoreClient(f"http://127.0.0.1:{refused_port()}", timeout=2, retries=0) as dead,
        pytest.raises(ServiceUnreachable, match="running"),
    ):
        dead.get("x")


def test_async_feature_store_client(featurestore: ThreadServer, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AsyncFeatureStoreClient(featurestore.url) as fs:
            made = await asyncio.gather(
                *(
                    fs.put("async_set", [{"name": "i", "dtype": "int", "value": i}])
                    for i in range(5)
                )
            )
            assert sorted(m.version for m in made) == [1, 2, 3, 4, 5]
            assert (await fs.get("async_set")).version == 5
            assert (await fs.versions("async_set")).total == 5
            assert (await fs.diff("async_set", 1, 5)).changed[0].name == "i"
            await fs.put_table("async_table", table())
            assert (await fs.get_table("async_table")).equals(table())
            target = await fs.download("async_table", tmp_path / "async.parquet")
            assert pq.read_table(target).equals(table())
            projected = await fs.download(
                "async_table", tmp_path / "part.parquet", version=1, columns=["id"], limit=3
            )
            assert pq.read_table(projected).equals(table().select(["id"]).slice(0, 3))
            with pytest.raises(NotFound):
                await fs.download("nope", tmp_path / "nope.parquet")
            with pytest.raises(NotFound):
                await fs.download("nope", target)
            assert not (tmp_path / "nope.parquet").exists()
            assert pq.read_table(target).equals(table())
            frame = await fs.get_dataframe("async_table", columns=["id"])
            assert list(frame.columns) == ["id"]
            assert (await fs.search(name="async")).total == 2
            assert (await fs.delete("async_set", 5)).deleted
            with pytest.raises(NotFound):
                await fs.get("nope")

    asyncio.run(scenario())


def test_catalogue_clients_see_registered_feature_sets(
    catalogue: ThreadServer, featurestore: ThreadServer
) -> None:
    with CatalogueClient(catalogue.url) as cat:
        made = cat.put_asset({"name": "churn_model", "type": "model", "tags": ["ml"]})
        assert isinstance(made, Asset) and made.revision == 1
        assert cat.get_asset(made.id).name == "churn_model"
        assert cat.get_asset_by_name("churn_model").id == made.id
        bulk = cat.bulk([{"name": "customer_360", "type": "dataset", "tags": ["ml"]}])
        assert bulk.created == 1
        assert cat.tags()[0].tag == "ml" and cat.types() == {"dataset": 1, "model": 1}
        with FeatureStoreClient(featurestore.url) as fs:
            fs.put(
                "serving",
                [{"name": "threshold", "dtype": "float", "value": 0.5}],
                depends_on=["churn_model", "customer_360"],
            )
        deadline = time.monotonic() + 30
        while not cat.search(type="featureset").items and time.monotonic() < deadline:
            time.sleep(0.05)
        page = cat.search(type="featureset")
        assert [a.name for a in page.items] == ["featureset:serving"]
        lineage = cat.lineage("featureset:serving", direction="up", depth=1)
        assert {n.name for n in lineage.nodes} == {
            "featureset:serving",
            "churn_model",
            "customer_360",
        }
        assert cat.delete_asset(made.id).deleted is True
        with pytest.raises(NotFound):
            cat.get_asset("nope")

    async def scenario() -> None:
        async with AsyncCatalogueClient(catalogue.url) as cat:
            assert (await cat.search(q="serving")).items[0].name == "featureset:serving"
            assert (await cat.get_asset("featureset:serving")).type == "featureset"
            await cat.put_asset({"name": "async_asset", "type": "report"}, "async-1")
            assert (await cat.get_asset_by_name("async_asset")).id == "async-1"

    asyncio.run(scenario())


def test_async_client_health_quick_give_up_and_per_caller_key(tmp_path: Path) -> None:
    """What a server-side caller (the web UI) needs: the service's health from every call and
    from ``probe``, a short answer when nothing listens, an unreadable answer reported as such,
    and one pool sending each caller's own key."""
    from catalogue_service.app import create_app as catalogue_app

    async def nonsense(scope: dict, receive: object, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"<html>not json</html>"})

    keyed = Settings(data_dir=tmp_path, api_keys=["key-1"], read_needs_key=True)
    with ThreadServer(catalogue_app(keyed)) as server, ThreadServer(nonsense) as odd:

        async def scenario() -> None:
            client = AsyncCatalogueClient(
                server.url, api_key="wrong", timeout=5, connect_timeout=1, retries=1
            )
            assert client.health.state == "unknown"
            with pytest.raises(Unauthorized, match="not valid"):
                await client.types()
            assert client.health.state == "up"  # a refusal is still an answer
            caller = client.with_api_key("key-1")
            assert await caller.types() == {} and caller.health is client.health
            with pytest.raises(Unauthorized, match="needs an API key"):
                await client.with_api_key(None).types()
            probed = await client.probe(timeout=1)
            assert probed.ok and probed.detail == "ready" and probed.latency_ms is not None
            await client.aclose()

            down = AsyncCatalogueClient(
                f"http://127.0.0.1:{refused_port()}", timeout=5, connect_timeout=1, retries=1
            )
            with pytest.raises(ServiceUnreachable) as info:
                await down.types()
            assert info.value.reason == "refused the connection (is it running?)"
            assert down.health.state == "down" and down.health.detail == info.value.reason
            assert (await down.probe(timeout=1)).ok is False
            await down.aclose()

            async with AsyncCatalogueClient(odd.url, timeout=5) as confused:
                with pytest.raises(BadAnswer):
                    await confused.get_asset("x")
                assert confused.health.state == "down"
                assert (await confused.probe(timeout=1)).ok  # /readyz answered 200

        asyncio.run(scenario())


def test_async_client_retries_a_dropped_get_once_when_asked() -> None:
    """A connection dropped before any answer (a restart, an idle keep-alive cut) is tried
    again with ``retries``; with none the caller hears of it at once."""

    async def scenario() -> None:
        served = 0

        async def drop_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal served
            served += 1
            await reader.readuntil(b"\r\n\r\n")
            if served % 2 == 1:
                writer.close()  # no answer at all
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: 2\r\nconnection: close\r\n\r\n{}"
            )
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(drop_first, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        async with server:
            async with AsyncCatalogueClient(url, timeout=5, retries=1) as patient:
                assert await patient.types() == {} and served == 2
            async with AsyncCatalogueClient(url, timeout=5, retries=0) as hasty:
                with pytest.raises(ServiceUnreachable) as info:
                    await hasty.types()
                assert info.value.reason.startswith("the connection failed") and served == 3

    asyncio.run(scenario())


def _public_methods(client: type) -> set[str]:
    return {
        name for name in dir(client) if not name.startswith("_") and callable(getattr(client, name))
    }


def test_async_clients_have_the_sync_methods_but_those_the_readme_names() -> None:
    # README (Python client): the async clients have the same methods, awaitable, except these.
    own = {"close", "aclose", "probe", "with_api_key"}  # closing, and the async extras it lists
    sync_only = {"put_checks", "download_historical_features"}
    async_only = {"asset_profile", "asset_drift", "asset_metrics_history", "metric_sets"}
    for sync, async_ in (
        (FeatureStoreClient, AsyncFeatureStoreClient),
        (CatalogueClient, AsyncCatalogueClient),
    ):
        methods, awaited = _public_methods(sync) - own, _public_methods(async_) - own
        if sync is FeatureStoreClient:
            assert methods - awaited == sync_only and awaited - methods == async_only
        else:
            assert methods == awaited
        for name in awaited & methods:
            assert inspect.iscoroutinefunction(getattr(async_, name)), name


def test_the_cli_sends_cairn_api_key(tmp_path: Path) -> None:
    # README (configuration): the `cairn featureset` commands send CAIRN_API_KEY, so they can
    # write to a feature store whose writes need a key.
    keyed = Settings(data_dir=tmp_path / "fs", api_keys=["cli-key-1"])
    with ThreadServer(create_app(keyed)) as server:
        yaml_set = str(EXAMPLES / "churn_model_serving" / "v1.yaml")
        env = cairn_env(tmp_path / "cli", CAIRN_FEATURESTORE_URL=server.url)
        refused = run_cairn("featureset", "put", yaml_set, env=env)
        assert refused.returncode == 1 and "needs an API key" in refused.stderr, refused.stderr
        put = run_cairn("featureset", "put", yaml_set, env={**env, "CAIRN_API_KEY": "cli-key-1"})
        assert put.returncode == 0 and "churn_model_serving version 1 stored" in put.stdout


def test_a_refused_cli_says_how_to_send_a_key(tmp_path: Path) -> None:
    """A 401 from a keyed service: every `cairn` subcommand's error line names CAIRN_API_KEY,
    the variable the CLI reads (the server only knows CAIRN_API_KEYS), and says whether a key
    was sent; the client library raises the service's words unchanged."""
    keyed = Settings(data_dir=tmp_path / "fs", api_keys=["cli-key-1"], read_needs_key=True)
    with ThreadServer(create_app(keyed)) as server:
        yaml_set = str(EXAMPLES / "churn_model_serving" / "v1.yaml")
        env = cairn_env(tmp_path / "cli", CAIRN_FEATURESTORE_URL=server.url)
        wrong = {**env, "CAIRN_API_KEY": "not-a-key"}
        commands = [
            (("featureset", "put", yaml_set), env, "no key was sent"),
            (("featureset", "put", yaml_set), wrong, "the key in CAIRN_API_KEY was refused"),
            (("metrics", "show", "churn_model_serving"), env, "no key was sent"),
            (("features", "online", "-f", "t:x", "-e", "k=1"), wrong, "was refused"),
        ]
        for args, sent_env, said in commands:
            refused = run_cairn(*args, env=sent_env)
            assert refused.returncode == 1, refused.stderr
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), refused.stderr
            assert said in lines[0], (args, refused.stderr)
            assert "set CAIRN_API_KEY to one of the service's keys" in lines[0], refused.stderr
        with FeatureStoreClient(server.url) as client, pytest.raises(Unauthorized) as raised:
            client.put("churn_model_serving", [{"name": "x", "dtype": "int", "value": 1}])
        said_by_server = raised.value.detail
        assert "CAIRN_API_KEY" not in said_by_server.replace("CAIRN_API_KEYS", "")
        assert "Hint" not in said_by_server


def test_featureset_versions_lists_every_version(tmp_path: Path) -> None:
    # Daily versions pass a page (1,000) in under three years; the command says "every".
    settings = Settings(
        data_dir=tmp_path / "fs", catalogue_url=f"http://127.0.0.1:{refused_port()}"
    )
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1") as http,
    ):
        for day in range(1002):
            body = {"name": "daily", "features": [{"name": "day", "dtype": "int", "value": day}]}
            assert http.post("/featuresets", json=body).status_code == 201
        runner = CliRunner()
        shown = runner.invoke(app, ["featureset", "versions", "daily", "--url", server.url])
        assert shown.exit_code == 0, shown.output
        rows = shown.stdout.splitlines()[1:]
        assert [int(row.split()[0]) for row in rows] == list(range(1002, 0, -1))
        listed = runner.invoke(
            app, ["featureset", "versions", "daily", "--url", server.url, "--json"]
        )
        assert listed.exit_code == 0, listed.output
        data = orjson.loads(listed.stdout)
        assert len(data["items"]) == data["total"] == 1002 and data["next_cursor"] is None


def test_featureset_cli(featurestore: ThreadServer, tmp_path: Path) -> None:
    # Most commands run in-process (CliRunner, --url); the first two go through the real
    # entry point with CAIRN_FEATURESTORE_URL, as a user would run them.
    env = cairn_env(tmp_path / "cli", CAIRN_FEATURESTORE_URL=featurestore.url)
    put = run_cairn("featureset", "put", str(EXAMPLES / "churn_model_serving" / "v1.yaml"), env=env)
    assert put.returncode == 0 and "churn_model_serving version 1 stored" in put.stdout
    missing = run_cairn("featureset", "get", "nope", env=env)
    assert missing.returncode == 1 and "No feature set is named 'nope'" in missing.stderr

    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["featureset", args[0], "--url", featurestore.url, *args[1:]])

    def cairn(*args: str) -> str:
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        return result.stdout

    for version in ("v2", "v3"):
        out = cairn("put", str(EXAMPLES / "churn_model_serving" / f"{version}.yaml"))
        assert f"churn_model_serving version {version[1]} stored" in out
    parquet = EXAMPLES / "customer_features" / "v1.parquet"
    cairn(
        "put",
        str(parquet),
        "--name",
        "customers",
        "--depends-on",
        "customer_360",
        "--label",
        "team:ml",
        "--created-by",
        "chen",
    )
    renamed = orjson.loads(
        cairn(
            "put",
            str(EXAMPLES / "recommender_settings" / "v1.yaml"),
            "--name",
            "reco",
            "--depends-on",
            "product_recommender",
            "--json",
        )
    )
    assert renamed["name"] == "reco" and renamed["depends_on"] == ["product_recommender"]

    latest = orjson.loads(cairn("get", "churn_model_serving"))
    assert latest["version"] == 3 and latest["version_label"] == "2025-06-16"
    first = orjson.loads(cairn("get", "churn_model_serving", "--version", "1"))
    assert {f["name"]: f["value"] for f in first["features"]}["decision_threshold"] == 0.5
    as_of = orjson.loads(cairn("get", "churn_model_serving", "--as-of", first["created_at"]))
    assert as_of["version"] == 1
    rows = orjson.loads(cairn("get", "customers", "--columns", "customer_id", "--limit", "2"))
    assert rows["data"]["rows"] == [
        {"customer_id": r} for r in pq.read_table(parquet)["customer_id"].to_pylist()[:2]
    ]
    out_file = tmp_path / "customers.parquet"
    cairn("get", "customers", "--format", "parquet", "-o", str(out_file))
    assert out_file.read_bytes() == parquet.read_bytes()
    # -o with JSON wrote nothing and printed to stdout instead; it now writes the file.
    json_file = tmp_path / "churn.json"
    saved = invoke("get", "churn_model_serving", "--version", "1", "-o", str(json_file))
    assert saved.exit_code == 0 and saved.stdout == "", saved.output
    assert orjson.loads(json_file.read_bytes()) == first
    # A page shorter than the total says so, instead of passing for the whole list.
    assert "the first 1 shown, raise --limit" in cairn("list", "--limit", "1")

    listing = cairn("list")
    assert "churn_model_serving" in listing and "customers" in listing
    assert "3 feature sets" in listing
    versions = cairn("versions", "churn_model_serving").splitlines()
    assert versions[1].split()[0] == "3" and "2025-06-02" in versions[3]
    diff = cairn("diff", "churn_model_serving", "1", "2")
    assert "+ tier_weights (map<float>)" in diff
    assert "~ decision_threshold: float 0.5 -> float 0.42" in diff
    assert "~ label stage: staging -> prod" in diff
    diff_json = orjson.loads(cairn("diff", "churn_model_serving", "2", "3", "--json"))
    assert diff_json["depends_on_added"] == ["churn_scores"]
    assert "reco version 1 deleted" in cairn("delete", "reco", "1")

    # A Parquet file is a table whatever its name; a file that is neither says what it lacks.
    renamed_table = tmp_path / "file.txt"
    renamed_table.write_bytes(parquet.read_bytes())
    assert "q version 1 stored" in cairn("put", str(renamed_table), "--name", "q")
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\x00\xff\xfe binary")
    neither = invoke("put", str(binary), "--name", "q")
    assert neither.exit_code == 1, neither.output
    assert "neither a Parquet file" in neither.stderr and "UTF-8" in neither.stderr
    assert "codec" not in neither.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nfeatures:\n  - {name: a, dtype: complex, value: 1}\n")
    refused = invoke("put", str(bad))
    assert refused.exit_code == 1 and "complex" in refused.stderr
    both = invoke("get", "customers", "--version", "1", "--as-of", "2025-01-01T00:00:00Z")
    assert both.exit_code == 2 and "either" in both.stderr
    # Mistakes a user makes are one error line each, naming what to fix.
    for args, expected in (
        (("put", str(parquet), "--name", "bad name!"), "name"),
        (
            ("get", "customers", "--format", "parquet", "-o", str(tmp_path / "no/such.parquet")),
            "no/such.parquet",
        ),
        (("get", "nope", "--format", "parquet", "-o", str(out_file)), "nope"),
        # The service's words were for HTTP ("send Accept: application/json").
        (
            ("get", "churn_model_serving", "--format", "parquet", "-o", str(tmp_path / "v.pq")),
            "named values, served as JSON only: leave out --format parquet",
        ),
    ):
        result = invoke(*args)
        # SystemExit: the command ended itself; any other exception escaped it.
        assert isinstance(result.exception, SystemExit), (args, result.exception)
        assert result.exit_code == 1, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert expected in lines[0], (args, lines)
    assert out_file.read_bytes() == parquet.read_bytes()  # the failed get left it whole
    # Without -o, Parquet goes to stdout (/dev/stdout, a symlink) as it arrives, whether
    # stdout is a pipe or a file the shell redirected it to.
    get = [sys.executable, "-m", "cairn", "featureset", "get", "customers", "--format", "parquet"]
    piped = subprocess.run(get, env=env, capture_output=True, timeout=120, cwd=ROOT)
    assert piped.returncode == 0 and piped.stdout == parquet.read_bytes(), piped.stderr
    redirected = tmp_path / "redirected.parquet"
    with redirected.open("wb") as stdout:
        done = subprocess.run(get, env=env, stdout=stdout, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and redirected.read_bytes() == parquet.read_bytes()
    assert Path("/dev/stdout").is_symlink() or not Path("/dev/stdout").is_file()


def test_a_password_in_a_service_url_stays_out_of_errors_and_reports(tmp_path: Path) -> None:
    dead = f"http://etl:url-s3cret@127.0.0.1:{refused_port()}"
    client = FeatureStoreClient(dead, timeout=2, retries=0)
    with client, pytest.raises(ServiceUnreachable) as info:
        client.get("x")
    assert "url-s3cret" not in str(info.value) and "etl@127.0.0.1" in str(info.value)
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "a.cairn.yaml").write_text("name: a\ntype: dataset\n")
    crawled = run_cairn(
        "crawl", str(volume), "--catalogue", dead, "--json", env=cairn_env(tmp_path / "data")
    )
    assert crawled.returncode != 0
    assert "etl@127.0.0.1" in crawled.stdout + crawled.stderr
    assert "url-s3cret" not in crawled.stdout + crawled.stderr


def test_put_asset_leaves_checking_to_the_catalogue(tmp_path: Path) -> None:
    """The catalogue knows its own types (CAIRN_EXTRA_TYPES): put_asset validated locally,
    against this process's settings, and raised pydantic's error for an asset the catalogue
    takes (bulk sent the same item and it was created)."""
    env = cairn_env(tmp_path / "data", CAIRN_EXTRA_TYPES="experiment")
    server = ProcessServer("catalogue", env, tmp_path / "catalogue.log").start()
    try:
        with CatalogueClient(server.url, retries=0) as cat:
            made = cat.put_asset({"name": "exp2", "type": "experiment"})
            assert made.type == "experiment" and made.id == cat.get_asset_by_name("exp2").id
            assert cat.put_asset({"id": "e3", "name": "exp3", "type": "experiment"}).id == "e3"
            with pytest.raises(InvalidRequest, match="spaceship"):  # the server's detail
                cat.put_asset({"name": "x", "type": "spaceship"})
            with pytest.raises(InvalidRequest, match="name"):
                cat.put_asset({"type": "dataset"})
    finally:
        server.stop()


def test_put_asset_puts_a_named_dict_where_the_catalogue_would() -> None:
    from cairn.client.catalogue import CatalogueCalls
    from cairn.models import AssetWrite

    for name in ("sales", " e\u0301t\u00e9 "):  # stripped, accents composed, as the server does
        expected = AssetWrite(name=name, type="dataset").ensure_id()
        call = CatalogueCalls.put_asset({"name": name, "type": "dataset"}, None)
        assert call.path == f"/api/v1/assets/{expected}" and call.json["name"] == name


def test_featureset_put_reads_a_yaml_name_as_text_and_names_bad_labels(tmp_path: Path) -> None:
    # YAML reads `name: 123` as a number: it was refused as "not a valid string" while
    # `version_label: 1.0` was taken as text; `labels: [a, b]` ended in a TypeError traceback.
    with ThreadServer(create_app(Settings(data_dir=tmp_path / "fs"))) as server:
        numbered = tmp_path / "numbered.yaml"
        numbered.write_text(
            "name: 123\nversion_label: 1.0\nfeatures:\n  - {name: x, dtype: int64, value: 1}\n"
        )
        listed = tmp_path / "listed.yaml"
        listed.write_text(
            "name: listed\nlabels: [a, b]\nfeatures:\n  - {name: x, dtype: int64, value: 1}\n"
        )
        runner = CliRunner()
        put = runner.invoke(app, ["featureset", "put", str(numbered), "--url", server.url])
        assert put.exit_code == 0, put.output
        assert "123 version 1 stored" in put.output
        refused = runner.invoke(
            app, ["featureset", "put", str(listed), "--url", server.url, "--label", "k:v"]
        )
        # A clean exit 1 (SystemExit), not a TypeError.
        assert refused.exit_code == 1, refused.output
        assert isinstance(refused.exception, SystemExit), refused.exception
        assert "labels must be a map of key: value, not a list" in refused.output


def test_featureset_put_of_a_folder_stores_the_versions_it_lacks(tmp_path: Path) -> None:
    # README (feature tables): `feature_table:` in featureset.yaml declares a table; a folder
    # of versions is stored as cairn up seeds its examples, and again only what is new.
    folder = tmp_path / "orders_features"
    folder.mkdir()
    rows = pa.table(
        {
            "order_id": pa.array([1, 2, 2], pa.int64()),
            "ts": pa.array([1, 2, 3], pa.timestamp("s", tz="UTC")),
            "amount": [1.5, 2.0, 2.5],
        }
    )
    pq.write_table(rows, folder / "v1.parquet")
    (folder / "featureset.yaml").write_text(
        "name: orders\ndescription: Order amounts.\nlabels: {team: ml}\n"
        "feature_table: {entities: [order_id], timestamp: ts, ttl: 7d}\n"
        "versions:\n  v1.parquet: {version_label: first, created_by: ana}\n"
    )
    with ThreadServer(create_app(Settings(data_dir=tmp_path / "fs"))) as server:
        runner = CliRunner()

        def put(*args: str) -> Result:
            return runner.invoke(app, ["featureset", "put", *args, "--url", server.url])

        first = put(str(folder))
        assert first.exit_code == 0, first.output
        assert "orders version 1 stored (table" in first.output
        with FeatureStoreClient(server.url) as client:
            stored = client.get("orders")
            assert stored.feature_table is not None
            assert stored.feature_table.entities == ["order_id"]
            assert stored.feature_table.timestamp == "ts"
            assert (stored.version_label, stored.created_by) == ("first", "ana")
            assert stored.labels == {"team": "ml"} and stored.description == "Order amounts."
        again = put(str(folder))
        assert again.exit_code == 0 and "nothing to store" in again.output, again.output

        pq.write_table(rows.slice(0, 2), folder / "v2.parquet")
        added = put(str(folder), "--json")
        assert added.exit_code == 0, added.output
        assert [v["version"] for v in orjson.loads(added.stdout)] == [2]
        with FeatureStoreClient(server.url) as client:
            second = client.get("orders")
            # Inherited from the folder's declaration, and by the author of the run.
            assert second.feature_table is not None and second.feature_table.entities == [
                "order_id"
            ]
            assert second.version == 2 and second.created_by not in (None, "ana")

        # Mistakes are one error line naming the file, and nothing is stored.
        for file_name, content, expected in [
            ("v4.yaml", "features: []\n", "no v3"),
            ("v3.yaml", "name: other\nfeatures: []\n", "v3.yaml names the set 'other'"),
            ("v3.yaml", "features: [unclosed\n", "v3.yaml"),
            ("v2.yml", "features: []\n", "are both version 2"),
        ]:
            (folder / file_name).write_text(content)
            refused = put(str(folder))
            (folder / file_name).unlink()
            assert refused.exit_code == 1, (file_name, refused.output)
            assert expected in refused.stderr, (file_name, refused.stderr)
        meta = "name: orders\nfeature_table: {entities: [order_id], timestamp: ts}\n"
        for bad, expected in [
            ("name: orders\ndesciption: typo\n", "unknown key 'desciption'"),
            (meta.replace("entities", "entity"), "feature_table: unknown key 'entity'"),
            (meta + "versions: {v1.parquet: first}\n", "versions: v1.parquet must be a mapping"),
            (meta + "versions: {v9.parquet: {}}\n", "versions names v9.parquet"),
        ]:
            (folder / "featureset.yaml").write_text(bad)
            refused = put(str(folder))
            assert refused.exit_code == 1, (bad, refused.output)
            assert isinstance(refused.exception, SystemExit), refused.exception
            assert expected in refused.stderr, (bad, refused.stderr)
        options = put(str(folder), "--entity", "order_id")
        assert options.exit_code == 2 and "featureset.yaml" in options.output

        # Every version is checked before the first is sent: v4's mistake stores no v3.
        (folder / "featureset.yaml").write_text(
            meta + "versions: {v3.yaml: {version_label: third, created_by: bo}}\n"
        )
        (folder / "v3.yaml").write_text("features:\n  - {name: a, dtype: int64, value: 1}\n")
        (folder / "v4.yaml").write_text("features:\n  - {name: b, value: 1}\n")
        late = put(str(folder))
        assert late.exit_code == 1, late.output
        assert "v4.yaml: " in late.stderr and "features.0.dtype" in late.stderr, late.output
        with FeatureStoreClient(server.url) as client:
            assert client.versions("orders").total == 2
        (folder / "v4.yaml").unlink()
        assert put(str(folder)).exit_code == 0
        with FeatureStoreClient(server.url) as client:
            third = client.get("orders")
            # A YAML version takes its label and author from featureset.yaml's versions too.
            assert (third.version, third.version_label, third.created_by) == (3, "third", "bo")


def test_a_cli_pointed_at_another_service_says_to_give_the_feature_stores_url(
    tmp_path: Path,
) -> None:
    """`--url` (or CAIRN_FEATURESTORE_URL) naming the catalogue or the web UI, a newcomer's
    slip between 8001, 8002 and 8080: the error line said only "No route GET
    /api/v1/featuresets; see /docs for the API." or "HTTP 404 from ...", not what to fix."""
    from catalogue_service.app import create_app as create_catalogue
    from ui.app import create_app as create_ui

    catalogue_settings = Settings(data_dir=tmp_path / "cat")
    with (
        ThreadServer(create_catalogue(catalogue_settings)) as catalogue,
        ThreadServer(create_ui(Settings(data_dir=tmp_path / "ui"))) as ui,
    ):
        env = cairn_env(tmp_path / "cli")
        for url in (catalogue.url, ui.url):
            for args in (
                ("featureset", "list"),
                ("featureset", "get", "customer_features"),
                ("features", "online", "-f", "customer_features:x", "-e", "customer_id=C1"),
                ("metrics", "show", "customer_features"),
            ):
                result = run_cairn(*args, "--url", url, env=env)
                assert result.returncode == 1, (args, result.stderr)
                lines = result.stderr.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
                assert f"{url} does not answer as a feature store" in lines[0], (url, lines)
                assert "--url or CAIRN_FEATURESTORE_URL" in lines[0], lines


def test_services_and_commands_a_test_starts_never_reach_the_default_ports(
    tmp_path: Path,
) -> None:
    """A feature store a test started without naming a catalogue registered its sets in
    whatever served 127.0.0.1:8001: the developer's own `make up`, which the README runs beside
    `make test` (featureset:orders, featureset:123 appeared in it), and `cairn` commands run
    without --url went to 127.0.0.1:8002. Both now default to a closed port in tests."""
    from tests.conftest import NOWHERE

    for settings in (Settings(), Settings(data_dir=tmp_path / "fs")):
        assert settings.catalogue_url == settings.featurestore_url == NOWHERE
    env = cairn_env(tmp_path / "cli")
    assert env["CAIRN_CATALOGUE_URL"] == env["CAIRN_FEATURESTORE_URL"] == NOWHERE
    listed = run_cairn("featureset", "list", env={**env, "CAIRN_HTTP_RETRIES": "1"})
    where = NOWHERE.removeprefix("http://")
    assert listed.returncode == 1 and where in listed.stderr, listed.stderr


def test_test_servers_get_ports_apart_and_outside_the_ephemeral_range() -> None:
    """``free_port`` took the kernel's pick for ``bind(0)``, from the range outgoing
    connections use too: a server already running could be given the port by the kernel for a
    connection of its own before the next server bound it, and two calls could give one port
    twice (each is let go at once)."""
    from tests.servers.processes import LOWEST_PORT, free_port

    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(LOWEST_PORT <= port < low for port in ports), ports
    with socket.socket() as held:
        held.bind(("127.0.0.1", ports[-1]))  # still free: nothing was left bound


def test_featureset_put_names_the_file_line_and_column_of_a_yaml_error(tmp_path: Path) -> None:
    """A YAML set that does not parse: the error line said "cannot read FILE: while parsing a
    flow node" over four lines, with PyYAML's `in "<unicode string>", line 3, column 1` and a
    caret, instead of the file, line and column on one line as a crawl reports a manifest."""
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nfeatures: [\n")
    colon = tmp_path / "colon.yaml"
    colon.write_text("name: x\ndescription: a: b\nfeatures: []\n")
    env = cairn_env(tmp_path / "cli")
    for path, where, said in (
        (broken, ":3:1: ", "expected the node content"),
        (colon, ":2:15: ", "mapping values are not allowed here"),
    ):
        result = run_cairn("featureset", "put", str(path), env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: {path}{where}YAML syntax error: "), lines
        assert said in lines[0] and "<unicode string>" not in lines[0], lines

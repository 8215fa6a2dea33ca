"""`cairn crawl hdfs://...`, `abfss://...` and `s3://...` end to end, as subprocesses against
a real catalogue process and the real minicluster / Azurite / SeaweedFS: the same behaviour as
on a local folder (incremental state, soft deletes, report, exit codes), and no credential
anywhere."""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from connectors import open_volume
from tests.conftest import ProcessServer, cairn_env, run_cairn
from tests.servers.fixtures import TEST_USER, AzuriteServer, HdfsServer, S3Server
from tests.test_crawl_e2e import crawl, make_volume, search
from tests.test_crawl_modes import crawler, wait_for


class RemoteLake(ABC):
    """One volume on a remote server, changed through the server's own API."""

    url: str
    settings: dict[str, str]

    @abstractmethod
    def upload(self, local: Path) -> None: ...

    @abstractmethod
    def put(self, path: str, data: bytes) -> None: ...

    @abstractmethod
    def delete_folder(self, path: str) -> None: ...

    def lock(self, folder: str) -> None:
        """Makes a folder unreadable to the crawler, where the backend can."""
        return None  # an optional hook: backends without the notion keep this default


class HdfsLake(RemoteLake):
    def __init__(self, server: HdfsServer) -> None:
        self.server = server
        self.root = server.fresh_dir("e2e") + "/lake"
        self.url = server.url(self.root)
        self.settings = {"CAIRN_HDFS_USER": TEST_USER}

    def upload(self, local: Path) -> None:
        self.server.admin.upload_tree(local, self.root)

    def put(self, path: str, data: bytes) -> None:
        self.server.admin.put(f"{self.root}/{path}", data)

    def delete_folder(self, path: str) -> None:
        self.server.admin.delete(f"{self.root}/{path}")

    def lock(self, folder: str) -> None:
        self.server.admin.chmod(f"{self.root}/{folder}", "700")


class AdlsLake(RemoteLake):
    def __init__(self, server: AzuriteServer) -> None:
        self.server = server
        self.name = server.fresh_container()
        self.container = server.container(self.name)
        self.url = server.url(self.name, "lake")
        self.settings = server.env()

    def upload(self, local: Path) -> None:
        for path in sorted(local.rglob("*")):
            if path.is_file():
                self.put(path.relative_to(local).as_posix(), path.read_bytes())

    def put(self, path: str, data: bytes) -> None:
        self.container.upload_blob(f"lake/{path}", data, overwrite=True)

    def delete_folder(self, path: str) -> None:
        for blob in self.container.list_blobs(name_starts_with=f"lake/{path}/"):
            self.container.delete_blob(blob.name)


class S3Lake(RemoteLake):
    def __init__(self, server: S3Server) -> None:
        self.server = server
        self.bucket = server.fresh_bucket("lake")
        self.client = server.client()
        self.url = server.url(self.bucket, "lake")
        self.settings = server.env()

    def upload(self, local: Path) -> None:
        for path in sorted(local.rglob("*")):
            if path.is_file():
                self.put(path.relative_to(local).as_posix(), path.read_bytes())

    def put(self, path: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"lake/{path}", Body=data)

    def delete_folder(self, path: str) -> None:
        listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"lake/{path}/")
        for obj in listing.get("Contents", []):
            self.client.delete_object(Bucket=self.bucket, Key=obj["Key"])


@pytest.fixture(params=["hdfs", "adls", "s3"])
def lake(request: pytest.FixtureRequest) -> Iterator[RemoteLake]:
    if request.param == "hdfs":
        yield HdfsLake(request.getfixturevalue("hdfs_server"))
    elif request.param == "adls":
        yield AdlsLake(request.getfixturevalue("azurite_server"))
    else:
        yield S3Lake(request.getfixturevalue("s3_server"))


def test_remote_crawl_change_delete_and_zero_write_recrawl(
    lake: RemoteLake, tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    make_volume(tmp_path / "lake")
    lake.upload(tmp_path / "lake")
    base = catalogue_process.url

    code, report = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert code == 0, report
    assert report["volume"] == lake.url
    assert report["manifests_found"] == 3 and report["created"] == 4 and report["errors"] == []

    daily = httpx.get(base + "/api/v1/assets/by-name/sales_daily").json()
    assert daily["depends_on"] == ["sales_raw"]
    assert [c["name"] for c in daily["schema"]] == ["day", "store_id", "amount"]  # CSV head
    assert daily["format"] == "csv" and daily["size_bytes"] > 0
    assert daily["volume"] == lake.url
    assert daily["location"] == lake.url + "/gold/daily"
    assert daily["manifest_path"] == "gold/daily/MANIFEST.yaml"
    raw = httpx.get(base + "/api/v1/assets/by-name/sales_raw").json()
    # Parquet footer read over ranged requests
    assert {c["name"]: c["type"] for c in raw["schema"]} == {
        "store_id": "int64",
        "amount": "double",
    }

    code, again = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert code == 0
    assert again["created"] == again["updated"] == again["deleted"] == 0
    assert again["unchanged"] == 4 and again["manifests_parsed"] == 0

    lake.put(
        "gold/daily/MANIFEST.yaml",
        b"name: sales_daily\ntype: dataset\ndescription: Daily sales per store, now with refunds.\n"
        b"tags: [sales, gold, refunds]\ndepends-on: [sales_raw]\n",
    )
    lake.delete_folder("raw/sales")
    lake.put("ref/stores.cairn.yaml", b"name: stores\ntype: table\ntags: [reference]\n")
    code, changed = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert code == 0, changed
    assert changed["updated"] == 1 and changed["deleted"] == 2 and changed["unchanged"] == 1
    assert [i["name"] for i in search(base, q="refunds")["items"]] == ["sales_daily"]
    assert httpx.get(base + "/api/v1/assets/by-name/sales_raw").json()["deleted"] is True

    # A bad manifest is reported with its line; the crawl goes on (exit 2).
    lake.put("broken/MANIFEST.yaml", b"name: broken\ntype: spaceship\n")
    code, bad = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert code == 2
    assert [(e["path"], e["line"]) for e in bad["errors"]] == [("broken/MANIFEST.yaml", 2)]


def test_a_remote_volume_emptied_whole_deletes_its_assets_only_when_allowed(
    lake: RemoteLake, tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    # On S3 and ADLS's Blob API a folder vanishes with its last object: the volume's root
    # then "did not exist", so --allow-empty could never delete what was crawled there.
    make_volume(tmp_path / "lake")
    lake.upload(tmp_path / "lake")
    assert crawl(lake.url, catalogue_process, settings=lake.settings)[0] == 0
    for folder in ("raw", "gold", "ref"):
        lake.delete_folder(folder)
    base = catalogue_process.url

    code, refused = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert code == 1
    assert "holds no file, but its last crawl found 3 manifests" in refused["error"]
    assert "--allow-empty" in refused["error"]
    assert httpx.get(base + "/api/v1/assets/by-name/stores").json()["deleted"] is False

    code, emptied = crawl(lake.url, catalogue_process, "--allow-empty", settings=lake.settings)
    assert code == 0 and emptied["deleted"] == 4, emptied
    assert httpx.get(base + "/api/v1/assets/by-name/stores").json()["deleted"] is True
    # A root never crawled and holding nothing is still a mistake to be told of.
    typo = lake.url.rsplit("/", 1)[0] + "/lkae"
    code, missing = crawl(typo, catalogue_process, "--allow-empty", settings=lake.settings)
    assert code == 1 and "does not exist" in missing["error"], missing


def test_adls_root_marker_and_an_object_named_as_a_folder_still_let_deletions_through(
    azurite_server: AzuriteServer,
    tmp_path: Path,
    catalogue_process: ProcessServer,
    use_env: Callable[[dict[str, str]], None],
) -> None:
    # The root's own "lake/" marker was reported as an unclean name at path '' (the root),
    # and a walk that reports the root can delete nothing. A blob "raw" beside "raw/..." was
    # yielded as a file and as a folder of the same path.
    lake = AdlsLake(azurite_server)
    make_volume(tmp_path / "lake")
    lake.upload(tmp_path / "lake")
    lake.container.upload_blob("lake/", b"")
    lake.put("raw", b"a file where a folder is")
    lake.put("gold", b"")  # an empty one: the usual folder marker, nothing to report

    use_env(lake.settings)
    walked = [e.path for e in open_volume(lake.url).walk()]
    assert len(walked) == len(set(walked)), walked

    code, report = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert code == 0 and report["created"] == 4, report
    assert [w["path"] for w in report["warnings"]] == ["raw"], report["warnings"]
    assert "the folder is walked" in report["warnings"][0]["reason"]

    lake.delete_folder("raw/sales")
    lake.delete_folder("gold/daily")
    code, changed = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert code == 0 and changed["deleted"] == 2, changed
    base = catalogue_process.url
    assert httpx.get(base + "/api/v1/assets/by-name/sales_raw").json()["deleted"] is True


def test_unreadable_remote_folder_is_reported_and_keeps_its_assets(
    hdfs_server: HdfsServer, tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    lake = HdfsLake(hdfs_server)
    make_volume(tmp_path / "lake")
    lake.upload(tmp_path / "lake")
    assert crawl(lake.url, catalogue_process, settings=lake.settings)[0] == 0

    lake.lock("raw")
    code, report = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert code == 0, report
    assert [(w["path"], w["reason"]) for w in report["warnings"]] == [
        ("raw", "cannot list directory: permission denied")
    ]
    # Not soft-deleted: the walk could not see inside, which is not the same as gone.
    assert report["deleted"] == 0
    raw = httpx.get(catalogue_process.url + "/api/v1/assets/by-name/sales_raw").json()
    assert raw["deleted"] is False


def test_a_volume_root_that_cannot_be_listed_fails_the_crawl(
    hdfs_server: HdfsServer, tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    # A root the crawl's identity may not list was one skipped folder: a first crawl
    # "succeeded" with nothing in it (exit 0), a recrawl blamed an unmounted volume and
    # offered --allow-empty, which would not even have deleted anything.
    lake = HdfsLake(hdfs_server)
    make_volume(tmp_path / "lake")
    lake.upload(tmp_path / "lake")
    assert crawl(lake.url, catalogue_process, settings=lake.settings)[0] == 0
    hdfs_server.admin.chmod(lake.root, "700")  # owner: the superuser

    code, refused = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert code == 1, refused
    assert "its root: cannot list directory: permission denied" in refused["error"]
    assert "mounted" not in refused["error"]
    stores = httpx.get(catalogue_process.url + "/api/v1/assets/by-name/stores").json()
    assert stores["deleted"] is False

    other = HdfsLake(hdfs_server)
    other.upload(tmp_path / "lake")
    hdfs_server.admin.chmod(other.root, "700")
    code, first = crawl(other.url, catalogue_process, settings=other.settings)
    assert code == 1 and "permission denied" in first["error"], first


def test_remote_crawl_exit_1_when_the_volume_cannot_be_opened(
    azurite_server: AzuriteServer, tmp_path: Path
) -> None:
    env = cairn_env(tmp_path / "data", CAIRN_HTTP_RETRIES="2", **azurite_server.env())
    missing = run_cairn("crawl", azurite_server.url("nosuchfs", "lake"), env=env)
    assert missing.returncode == 1
    assert "filesystem 'nosuchfs' does not exist" in " ".join(missing.stderr.split())
    dead = run_cairn("crawl", "hdfs://127.0.0.1:9/lake", env=env)
    assert dead.returncode == 1 and "cannot reach WebHDFS" in " ".join(dead.stderr.split())


def test_every_recrawls_a_remote_volume(
    hdfs_server: HdfsServer, tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    lake = HdfsLake(hdfs_server)
    lake.put("a/MANIFEST.yaml", b"name: remote_scheduled\ntype: dataset\n")
    env = cairn_env(tmp_path / "data", **lake.settings)
    base = catalogue_process.url
    with crawler(lake.url, "--every", "1s", "--catalogue", base, env=env):
        wait_for(base, "remote_scheduled")
        lake.put("b/MANIFEST.yaml", b"name: remote_later\ntype: dataset\n")
        wait_for(base, "remote_later")


def test_credentials_appear_nowhere(
    azurite_server: AzuriteServer, tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    """A SAS token, an account key and a connection string go through a crawl each (and a
    wrong key through a failing one), with debug logging: none of them shows up in output,
    reports, the catalogue or its log."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    server = azurite_server
    lake = AdlsLake(server)
    make_volume(tmp_path / "lake")
    lake.upload(tmp_path / "lake")
    sas = generate_container_sas(
        server.account,
        lake.name,
        account_key=server.key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
        # a distinctive token: the signature differs from any other test's
        ip=None,
        protocol="https",
        cache_control=f"cairn-{uuid.uuid4().hex}",
    )
    wrong_key = "Q2Fpcm5EaXN0aW5jdGl2ZVdyb25nS2V5Rm9yVGVzdHM="
    runs = [
        server.env(CAIRN_AZURE_ACCOUNT_KEY="", CAIRN_AZURE_SAS_TOKEN=sas),
        server.env(),
        server.env(
            CAIRN_AZURE_ACCOUNT_KEY="",
            CAIRN_AZURE_CONNECTION_STRING=server.server.connection_string,
        ),
        server.env(CAIRN_AZURE_ACCOUNT_KEY=wrong_key),
    ]
    secrets = [sas, sas.split("sig=")[1].split("&")[0], server.key, wrong_key]
    texts = []
    for n, settings in enumerate(runs):
        env = cairn_env(
            Path(catalogue_process.env["CAIRN_DATA_DIR"]),
            CAIRN_LOG_LEVEL="debug",
            **settings,
        )
        for extra in ([], ["--json"]):
            result = run_cairn(
                "crawl", lake.url, "--catalogue", catalogue_process.url, *extra, env=env
            )
            assert result.returncode == (1 if n == 3 else 0), result.stderr
            texts += [result.stdout, result.stderr]
        if n == 3:
            assert "refused access" in " ".join((result.stdout + result.stderr).split())
    listing = httpx.get(
        catalogue_process.url + "/api/v1/assets", params={"include_deleted": "true", "limit": 100}
    )
    assert listing.json()["total"] == 4
    texts += [listing.text, catalogue_process.logs()]
    for path in Path(catalogue_process.env["CAIRN_DATA_DIR"]).rglob("*"):
        if path.is_file():
            texts.append(path.read_bytes().decode("latin-1"))
    for secret in secrets:
        for text in texts:
            assert secret not in text
    for item in listing.json()["items"]:
        assert item["volume"] == lake.url and "?" not in item["location"]
    assert json.loads(texts[2])["volume"] == lake.url  # the --json report of the SAS crawl


def test_schema_reads_on_hdfs_take_one_request_with_the_listed_size(
    hdfs_server: HdfsServer, use_env: Callable[[dict[str, str]], None]
) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from connectors import open_volume
    from connectors.webhdfs import HdfsVolume
    from crawler.crawl import _read_schema

    sink = io.BytesIO()
    pq.write_table(pa.table({"id": [1, 2], "name": ["a", "b"]}), sink)
    root = hdfs_server.fresh_dir("schemas")
    hdfs_server.admin.put(f"{root}/t/a.csv", b"id,when\n1,2024-01-02\n")
    hdfs_server.admin.put(f"{root}/t/b.parquet", sink.getvalue())
    use_env({"CAIRN_HDFS_USER": TEST_USER})
    volume = open_volume(hdfs_server.url(root))
    assert isinstance(volume, HdfsVolume)
    sizes = {e.path: e.size for e in volume.walk() if not e.is_dir}

    before = volume.requests
    csv = _read_schema(volume, "t/a.csv", sizes["t/a.csv"])
    parquet = _read_schema(volume, "t/b.parquet", sizes["t/b.parquet"])
    # One OPEN each: no GETFILESTATUS; the Parquet footer is inside the one ranged read.
    assert volume.requests - before == 2
    assert [(f["name"], f["type"]) for f in csv[1] or []] == [("id", "int64"), ("when", "date")]
    assert [(f["name"], f["type"]) for f in parquet[1] or []] == [
        ("id", "int64"),
        ("name", "string"),
    ]
    # Without the size, the volume asks for it first, as before.
    before = volume.requests
    assert _read_schema(volume, "t/b.parquet")[1] == parquet[1]
    assert volume.requests - before == 2

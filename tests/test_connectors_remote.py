"""What only the remote connectors do: HDFS high availability and authentication settings,
ADLS credentials, URL forms and folder markers, against the real minicluster and Azurite.

The behaviour they share with the local connector is in test_volume_contract.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors import (
    AccessDenied,
    EntryNotFound,
    NotAFile,
    VolumeError,
    open_volume,
    supported_schemes,
)
from tests.conftest import ROOT, cairn_env, refused_port
from tests.servers.fixtures import TEST_USER, AzuriteServer, HdfsServer, S3Server

SetEnv = Callable[[dict[str, str]], None]


def test_registry_knows_every_remote_scheme() -> None:
    assert set(supported_schemes()) == {"file", "hdfs", "webhdfs", "abfss", "abfs", "az", "s3"}


# -- HDFS ------------------------------------------------------------------------------------


@pytest.fixture
def hdfs_tree(hdfs_server: HdfsServer) -> str:
    root = hdfs_server.fresh_dir("ha")
    hdfs_server.admin.put(f"{root}/a/MANIFEST.yaml", b"name: a\ntype: dataset\n")
    return root


def test_hdfs_tries_the_next_namenode(
    hdfs_server: HdfsServer, hdfs_tree: str, use_env: SetEnv
) -> None:
    cluster = hdfs_server.cluster
    use_env({"CAIRN_HDFS_USER": TEST_USER})
    dead = f"127.0.0.1:{refused_port()}"
    standby = cluster.standby_url.removeprefix("http://")
    active = cluster.active_url.removeprefix("http://")
    # A NameNode that is down, then one in standby (it answers StandbyException), then the
    # active one: the volume ends up on the active one without reporting anything.
    volume = open_volume(f"hdfs://{dead},{standby},{active}{hdfs_tree}")
    assert volume.url == f"hdfs://{dead},{standby},{active}{hdfs_tree}"
    problems: list[tuple[str, str]] = []
    assert [e.path for e in volume.walk(lambda p, r: problems.append((p, r)))] == [
        "a",
        "a/MANIFEST.yaml",
    ]
    assert problems == []
    assert volume.read("a/MANIFEST.yaml", 100) == b"name: a\ntype: dataset\n"


def test_hdfs_nameservice_survives_a_failover(
    hdfs_server: HdfsServer, hdfs_tree: str, use_env: SetEnv
) -> None:
    cluster = hdfs_server.cluster
    addresses = [u.removeprefix("http://") for u in cluster.namenodes]
    use_env(
        {
            "CAIRN_HDFS_USER": TEST_USER,
            "CAIRN_HDFS_NAMESERVICES": json.dumps({"lakehouse": addresses}),
        }
    )
    volume = open_volume(f"hdfs://lakehouse{hdfs_tree}")
    assert volume.url == f"hdfs://lakehouse{hdfs_tree}"  # stable whichever NameNode is active
    assert len(list(volume.walk())) == 2
    assert volume.read("a/MANIFEST.yaml", 100).startswith(b"name: a")  # learns a DataNode
    cluster.failover()
    try:
        assert [e.path for e in volume.walk()] == ["a", "a/MANIFEST.yaml"]
        assert volume.read("a/MANIFEST.yaml", 100).startswith(b"name: a")
    finally:
        cluster.failover()
        hdfs_server.admin.base = cluster.active_url + "/webhdfs/v1"


def test_hdfs_lists_folders_concurrently_in_a_fixed_order(
    hdfs_server: HdfsServer, use_env: SetEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from connectors.webhdfs import HdfsVolume

    root = hdfs_server.fresh_dir("conc")
    for n in range(6):
        hdfs_server.admin.put(f"{root}/f{n}/sub/x{n}.csv", b"a\n1\n")
    url = hdfs_server.url(root)

    # The first four folder listings below the root wait for each other: a walk that lists
    # one folder at a time never gets past the barrier (BrokenBarrierError after 60 s).
    barrier = threading.Barrier(4, timeout=60)
    waited: list[str] = []
    real_batch = HdfsVolume._batch

    def batch(self: HdfsVolume, rel: str, after: str | None) -> object:
        if rel and len(waited) < 4:
            waited.append(rel)
            barrier.wait()
        return real_batch(self, rel, after)

    monkeypatch.setattr(HdfsVolume, "_batch", batch)
    use_env({"CAIRN_HDFS_USER": TEST_USER, "CAIRN_CRAWL_LIST_CONCURRENCY": "4"})
    volume = open_volume(url)
    assert isinstance(volume, HdfsVolume) and volume.list_concurrency == 4
    first = [(e.path, e.is_dir) for e in volume.walk()]
    assert len(waited) == 4 and not barrier.broken
    monkeypatch.setattr(HdfsVolume, "_batch", real_batch)
    # Same entries, same order, every time; one folder at a time finds the same set.
    assert [(e.path, e.is_dir) for e in volume.walk()] == first
    use_env({"CAIRN_HDFS_USER": TEST_USER, "CAIRN_CRAWL_LIST_CONCURRENCY": "1"})
    one = open_volume(url)
    assert sorted((e.path, e.is_dir) for e in one.walk()) == sorted(first)
    assert len(first) == 6 * 3


def test_hdfs_reads_go_straight_to_the_datanode_after_the_first(
    hdfs_server: HdfsServer, use_env: SetEnv
) -> None:
    import dataclasses

    import requests

    from connectors.webhdfs import HdfsVolume

    root = hdfs_server.fresh_dir("direct")
    files = {f"d/f{n}.csv": f"n\n{n}\n".encode() for n in range(3)}
    for path, data in files.items():
        hdfs_server.admin.put(f"{root}/{path}", data)
    use_env({"CAIRN_HDFS_USER": TEST_USER})
    volume = open_volume(hdfs_server.url(root))
    assert isinstance(volume, HdfsVolume)
    asked: list[str] = []  # requests that reached a NameNode (DataNode reads bypass requests)

    def note(response: requests.Response, *args: object, **kwargs: object) -> None:
        asked.append(response.url)

    volume.client._session.hooks["response"].append(note)

    assert [volume.read(p, 100) for p in files] == list(files.values())
    # The first read through the NameNode (noredirect: one request), the others straight.
    assert len(asked) == 1 and "op=OPEN" in asked[0]
    assert volume.direct_reads == 2
    with volume.open("d/f1.csv", len(files["d/f1.csv"])) as f:
        assert f.read() == files["d/f1.csv"]
    assert (len(asked), volume.direct_reads) == (1, 3)

    # The DataNode refuses what does not exist; the NameNode then names the reason.
    with pytest.raises(EntryNotFound):
        volume.read("d/missing.csv", 100)
    with pytest.raises(NotAFile):
        volume.read("d", 100)
    assert volume.read("d/f2.csv", 100) == files["d/f2.csv"]

    # A DataNode that stopped answering: the read goes through the NameNode, which names
    # one that answers, and later reads go there.
    learned = volume._datanode
    assert learned is not None and learned.addresses  # looked up once, for every read
    dead = dataclasses.replace(learned, port=refused_port())
    assert dead.addresses is None
    volume._datanode = dead
    before = (len(asked), volume.direct_reads)
    assert volume.read("d/f0.csv", 100) == files["d/f0.csv"]
    assert (len(asked), volume.direct_reads) == (before[0] + 1, before[1])
    assert volume._datanode == learned
    assert volume.read("d/f1.csv", 100) == files["d/f1.csv"]
    assert (len(asked), volume.direct_reads) == (before[0] + 1, before[1] + 1)


def test_hdfs_listings_skip_requests_and_fall_back_to_it(
    hdfs_server: HdfsServer, use_env: SetEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    import requests

    from connectors import http1
    from connectors.webhdfs import HdfsVolume

    root = hdfs_server.fresh_dir("fastlist")
    for n in range(3):
        hdfs_server.admin.put(f"{root}/d{n}/f.csv", b"a\n1\n")
    hdfs_server.admin.mkdirs(f"{root}/locked/inside")
    hdfs_server.admin.chmod(f"{root}/locked", "700")  # owner: the superuser
    use_env({"CAIRN_HDFS_USER": TEST_USER})
    volume = open_volume(hdfs_server.url(root))
    assert isinstance(volume, HdfsVolume)
    asked: list[str] = []  # requests that went through requests

    def note(response: requests.Response, *args: object, **kwargs: object) -> None:
        asked.append(response.url)

    volume.client._session.hooks["response"].append(note)
    problems: list[tuple[str, str]] = []
    expected = ["d0", "d1", "d2", "locked", "d0/f.csv", "d1/f.csv", "d2/f.csv"]
    assert [e.path for e in volume.walk(lambda p, r: problems.append((p, r)))] == expected
    # Listings answered over kept-alive bare HTTP; the one refused was asked again through
    # requests, whose error decoding names the reason as before.
    assert problems == [("locked", "cannot list directory: permission denied")]
    assert len(asked) == 1 and "LISTSTATUS_BATCH" in asked[0] and "locked" in asked[0]

    # Kept-alive connections the NameNode has dropped: listed again on fresh ones.
    for pool in volume._pools.values():
        for connection in pool._idle:
            connection._sock.shutdown(2)
    problems.clear()
    assert [e.path for e in volume.walk(lambda p, r: problems.append((p, r)))] == expected
    assert len(asked) == 2 and volume._fast
    pools = list(volume._pools.values())
    volume.close()
    assert pools and all(not pool._idle for pool in pools)

    # A NameNode whose answers the bare client cannot read: listed through requests, as
    # before, and the bare client is not tried again on that volume.
    def unreadable(*args: object, **kwargs: object) -> object:
        raise http1.BadAnswer("not what WebHDFS answers")

    monkeypatch.setattr(http1.Connection, "get", unreadable)
    again = open_volume(hdfs_server.url(root))
    assert isinstance(again, HdfsVolume)
    again.client._session.hooks["response"].append(note)
    asked.clear()
    assert [e.path for e in again.walk(lambda p, r: None)] == expected
    assert not again._fast and sum("LISTSTATUS_BATCH" in url for url in asked) == 5
    again.close()


def test_hdfs_datanode_endpoint_keeps_the_redirects_query_but_shows_no_token() -> None:
    from connectors.webhdfs import _DataNode

    node = _DataNode.from_location(
        "http://dn1:9864/webhdfs/v1/lake/a.csv?op=OPEN&user.name=etl"
        "&namenoderpcaddress=prod&delegation=SECRETTOKEN&offset=0&length=10"
    )
    assert node is not None and (node.host, node.port) == ("dn1", 9864)
    assert "SECRETTOKEN" in node.query and "offset" not in node.query
    assert "SECRETTOKEN" not in repr(node)
    # Only plain HTTP is read straight; anything else follows the redirect as before.
    assert _DataNode.from_location("https://dn1:9865/webhdfs/v1/a?op=OPEN") is None


def test_hdfs_session_reads_proxies_once_and_never_netrc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README (HDFS): proxy variables are read once when the volume opens; ~/.netrc is not
    # consulted. A plain requests call beside it shows the .netrc would otherwise be sent.
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    from connectors.webhdfs import _session

    sent: list[str | None] = []

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            sent.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login hdfs password netrc-secret\n")
    netrc.chmod(0o600)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(netrc))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/webhdfs/v1/?op=GETFILESTATUS"
        assert requests.get(url, timeout=10).status_code == 200
        assert _session(url).get(url, timeout=10).status_code == 200
        assert sent[0] is not None and sent[0].startswith("Basic ")  # what trust_env does
        assert sent[1] is None
    finally:
        server.shutdown()
        server.server_close()

    monkeypatch.setenv("HTTP_PROXY", "http://proxy-one.example:3128")
    session = _session("http://nn1.example:9870")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy-two.example:3128")
    assert session.proxies["http"] == "http://proxy-one.example:3128"
    assert not session.trust_env  # requests re-reads nothing from the environment per call


def test_hdfs_unreachable_namenode_is_a_clear_error(use_env: SetEnv) -> None:
    use_env({"CAIRN_HTTP_RETRIES": "2"})
    with pytest.raises(VolumeError, match=r"cannot reach WebHDFS.*HTTP port") as info:
        open_volume(f"hdfs://127.0.0.1:{refused_port()}/lake")
    assert "user.name" not in str(info.value)


@pytest.mark.parametrize(
    "url, message",
    [
        ("hdfs://alice:pw@127.0.0.1:9870/lake", "takes no user name or password"),
        ("hdfs://127.0.0.1:9870/lake?delegation=tok123", "takes no query string"),
        ("webhdfs://nn:99999/lake", "port out of range"),
        ("hdfs:///lake", "names no NameNode"),
    ],
)
def test_hdfs_url_mistakes(url: str, message: str, use_env: SetEnv) -> None:
    use_env({})
    with pytest.raises(VolumeError, match=message) as info:
        open_volume(url)
    assert "pw" not in str(info.value) and "tok123" not in str(info.value)


def test_hdfs_permission_denied_names_the_user_and_its_setting(
    hdfs_server: HdfsServer, use_env: SetEnv
) -> None:
    locked = hdfs_server.fresh_dir("locked")
    hdfs_server.admin.mkdirs(f"{locked}/lake")
    hdfs_server.admin.chmod(locked, "700")  # owner: the superuser
    use_env({"CAIRN_HDFS_USER": TEST_USER})
    # It said "the volume root: permission denied", and not as whom.
    with pytest.raises(AccessDenied, match=rf"user={TEST_USER}, access=EXECUTE.*CAIRN_HDFS_USER"):
        open_volume(hdfs_server.url(f"{locked}/lake"))


def test_hdfs_url_naming_another_http_server_says_so(s3_server: S3Server, use_env: SetEnv) -> None:
    # SeaweedFS's S3 gateway answers /webhdfs/v1/... with an XML error page: the report
    # showed that page's bytes as "WebHDFS error: b'<?xml ...'".
    use_env({"CAIRN_HTTP_RETRIES": "1"})
    address = s3_server.endpoint.removeprefix("http://")
    with pytest.raises(VolumeError, match="error page that is not WebHDFS's") as info:
        open_volume(f"hdfs://{address}/lake")
    assert "<?xml" not in str(info.value) and "9870" in str(info.value)


def test_hdfs_kerberos_without_the_extra_names_it(use_env: SetEnv) -> None:
    use_env({"CAIRN_HDFS_AUTH": "kerberos"})
    with pytest.raises(VolumeError, match=r"pip install 'cairn-catalogue\[kerberos\]'"):
        open_volume("hdfs://127.0.0.1:9870/lake")


MISSING_LIBRARY = """
import sys
sys.modules[sys.argv[1]] = None  # as if the extra were not installed
from connectors import UnsupportedScheme, open_volume
try:
    open_volume(sys.argv[2])
except UnsupportedScheme as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    "module, url, extra",
    [
        ("hdfs", "hdfs://127.0.0.1:9870/x", "hdfs"),
        ("azure.storage.blob", "abfss://c@acct.dfs.core.windows.net/x", "adls"),
        ("boto3", "s3://bucket/x", "s3"),
    ],
)
def test_missing_client_library_names_the_extra(module: str, url: str, extra: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", MISSING_LIBRARY, module, url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert f"pip install 'cairn-catalogue[{extra}]'" in result.stdout, result.stdout + result.stderr


# -- ADLS ------------------------------------------------------------------------------------


@pytest.fixture
def lake(azurite_server: AzuriteServer) -> str:
    name = azurite_server.fresh_container()
    container = azurite_server.container(name)
    container.upload_blob("lake/sales/MANIFEST.yaml", b"name: sales\ntype: dataset\n")
    container.upload_blob("lake/sales/part-0.csv", b"a,b\n1,2\n")
    return name


def _sas(server: AzuriteServer, container: str, **permissions: bool) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        server.account,
        container,
        account_key=server.key,
        permission=ContainerSasPermissions(**permissions),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


def _paths(url: str) -> list[str]:
    return sorted(e.path for e in open_volume(url).walk())


EXPECTED = ["sales", "sales/MANIFEST.yaml", "sales/part-0.csv"]


def test_adls_account_key_sas_connection_string_and_default_credential(
    azurite_server: AzuriteServer, lake: str, use_env: SetEnv
) -> None:
    server = azurite_server
    url = server.url(lake, "lake")
    use_env(server.env())
    assert _paths(url) == EXPECTED

    sas = _sas(server, lake, read=True, list=True)
    use_env(server.env(CAIRN_AZURE_ACCOUNT_KEY="", CAIRN_AZURE_SAS_TOKEN=sas))
    assert _paths(url) == EXPECTED

    use_env(
        server.env(
            CAIRN_AZURE_ACCOUNT_KEY="",
            CAIRN_AZURE_ENDPOINT="",
            CAIRN_AZURE_CONNECTION_STRING=server.server.connection_string,
        )
    )
    assert _paths(url) == EXPECTED
    assert _paths(f"az://{lake}/lake") == EXPECTED  # the account comes from the string

    # DefaultAzureCredential (azure-identity), here finding a managed identity endpoint.
    before = server.tokens.calls
    use_env(server.env(CAIRN_AZURE_ACCOUNT_KEY=""))
    assert _paths(url) == EXPECTED
    assert server.tokens.calls > before


def test_adls_url_forms(azurite_server: AzuriteServer, lake: str, use_env: SetEnv) -> None:
    server = azurite_server
    use_env(server.env(CAIRN_AZURE_ACCOUNT_NAME=server.account))
    for url in (
        f"abfs://{lake}@{server.account}.dfs.core.windows.net/lake",
        f"abfss://{lake}@{server.account}.blob.core.windows.net/lake/",
        f"az://{lake}/lake",
    ):
        volume = open_volume(url)
        assert sorted(e.path for e in volume.walk()) == EXPECTED
        assert volume.url == url.rstrip("/")
    sales = open_volume(f"az://{lake}/lake").url_for("sales")
    assert sales == f"az://{lake}/lake/sales"


def test_adls_blob_host_follows_the_cloud_of_the_url(use_env: SetEnv) -> None:
    from cairn.settings import get_settings
    from connectors.adls import _container_client

    use_env({"CAIRN_AZURE_ACCOUNT_KEY": "a2V5"})
    client = _container_client(get_settings(), "fs", "acct", "core.chinacloudapi.cn")
    assert client.url == "https://acct.blob.core.chinacloudapi.cn/fs"
    use_env({"CAIRN_AZURE_ACCOUNT_KEY": "a2V5", "CAIRN_AZURE_ENDPOINT": "https://x.test/{account}"})
    client = _container_client(get_settings(), "fs", "acct", "core.windows.net")
    assert client.url == "https://x.test/acct/fs"


def test_adls_credential_mistakes(
    azurite_server: AzuriteServer, lake: str, use_env: SetEnv
) -> None:
    server = azurite_server
    url = server.url(lake, "lake")
    wrong = "V3JvbmdLZXlGb3JDYWlyblRlc3RzT25seQ=="
    use_env(server.env(CAIRN_AZURE_ACCOUNT_KEY=wrong))
    with pytest.raises(AccessDenied, match="refused access") as info:
        open_volume(url)
    assert wrong not in str(info.value)

    use_env(server.env(CAIRN_AZURE_SAS_TOKEN="sv=x"))
    with pytest.raises(VolumeError, match="set only one of"):
        open_volume(url)
    # An empty line of an env file is no credential: the SAS beside it is the one.
    sas = _sas(server, lake, list=True, read=True)
    blank = {"CAIRN_AZURE_ACCOUNT_KEY": "", "CAIRN_AZURE_CONNECTION_STRING": " "}
    use_env({**server.env(CAIRN_AZURE_ACCOUNT_KEY=""), **blank, "CAIRN_AZURE_SAS_TOKEN": sas})
    assert open_volume(url).read("sales/MANIFEST.yaml", 100).startswith(b"name: sales")

    use_env(server.env())
    with pytest.raises(VolumeError, match="takes no query string") as info:
        open_volume(url + "?sv=2024&sig=Zm9vYmFy")
    assert "Zm9vYmFy" not in str(info.value)
    with pytest.raises(VolumeError, match="credentials go in CAIRN_AZURE"):
        open_volume(f"abfss://{lake}:{server.key}@{server.account}.dfs.core.windows.net/")

    # Not base64: the SDK cannot sign, and no request goes out to be refused.
    use_env(server.env(CAIRN_AZURE_ACCOUNT_KEY="not a key!"))
    with pytest.raises(AccessDenied, match="not a valid storage account key") as info:
        open_volume(url)
    assert "None" not in str(info.value)

    other = server.server.connection_string.replace(server.account, "otheraccount1")
    use_env(server.env(CAIRN_AZURE_ACCOUNT_KEY="", CAIRN_AZURE_CONNECTION_STRING=other))
    with pytest.raises(VolumeError, match="'devstoreaccount1' but"):
        open_volume(url)


def test_adls_walk_and_stat_carry_the_etag(
    azurite_server: AzuriteServer, lake: str, use_env: SetEnv
) -> None:
    # Last-Modified has whole seconds: a same-size rewrite within one went unnoticed by a
    # recrawl, whose fingerprint takes the tag in (S3's walk carried it, ADLS's did not).
    use_env(azurite_server.env())
    container = azurite_server.container(lake)
    blob = container.upload_blob("tagged/MANIFEST.yaml", b"name: a\ntype: dataset\n")
    volume = open_volume(azurite_server.url(lake, "tagged"))

    (walked,) = list(volume.walk())
    assert walked.tag == blob.get_blob_properties().etag.strip('"') != ""
    assert volume.stat("MANIFEST.yaml").tag == walked.tag
    container.upload_blob("tagged/MANIFEST.yaml", b"name: b\ntype: dataset\n", overwrite=True)
    (again,) = list(volume.walk())
    assert again.size == walked.size and again.tag != walked.tag


def test_adls_missing_filesystem_and_list_only_sas(
    azurite_server: AzuriteServer, lake: str, use_env: SetEnv
) -> None:
    server = azurite_server
    use_env(server.env())
    with pytest.raises(EntryNotFound, match="filesystem 'nosuchfs' does not exist"):
        open_volume(server.url("nosuchfs"))

    use_env(server.env(CAIRN_AZURE_ACCOUNT_KEY="", CAIRN_AZURE_SAS_TOKEN=_sas(server, lake)))
    with pytest.raises(AccessDenied):  # a SAS without list permission cannot walk at all
        open_volume(server.url(lake, "lake"))


def test_adls_folder_markers_and_unclean_blob_names(
    azurite_server: AzuriteServer, use_env: SetEnv
) -> None:
    server = azurite_server
    name = server.fresh_container()
    container = server.container(name)
    container.upload_blob("lake/empty", b"", metadata={"hdi_isfolder": "true"})
    container.upload_blob("lake/slashed/", b"")
    container.upload_blob("lake/ok/f.txt", b"f")
    container.upload_blob("lake/odd//double.txt", b"x")
    container.upload_blob("lakeside.txt", b"not in the volume")
    use_env(server.env())

    volume = open_volume(server.url(name, "lake"))
    problems: list[tuple[str, str]] = []
    entries = {e.path: e.is_dir for e in volume.walk(lambda p, r: problems.append((p, r)))}

    assert entries == {"empty": True, "slashed": True, "ok": True, "ok/f.txt": False}
    assert [p for p, _ in problems] == ["odd//double.txt"]
    assert "not a clean path" in problems[0][1]
    assert open_volume(server.url(name, "lake/empty")).url.endswith("/lake/empty")
    with pytest.raises(VolumeError, match="not a directory"):
        open_volume(server.url(name, "lakeside.txt"))


def test_adls_walks_listing_prefixes_at_once_match_one_flat_listing(
    azurite_server: AzuriteServer,
    use_env: SetEnv,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """CAIRN_CRAWL_LIST_CONCURRENCY > 1 cuts the listing by prefix: the same entries and
    problems, in the same order, as one flat listing, with the names whose order is odd: a
    blob named as a folder, markers of both kinds, the root's own, unclean names."""
    monkeypatch.setattr("connectors.adls.PAGE_SIZE", 3)
    server = azurite_server
    name = server.fresh_container()
    container = server.container(name)
    container.upload_blob("lake", b"", metadata={"hdi_isfolder": "true"})  # the root's marker
    container.upload_blob("lake/", b"")
    container.upload_blob("lake/a", b"shadowed")  # beside "a/x": the folder wins
    container.upload_blob("lake/a/x", b"x")
    container.upload_blob("lake/a b/y", b"y")
    container.upload_blob("lake/a.txt", b"t")
    container.upload_blob("lake/a0", b"0")
    container.upload_blob("lake/d", b"", metadata={"hdi_isfolder": "true"})
    container.upload_blob("lake/d/e/", b"")
    container.upload_blob("lake/d/e/f", b"f")
    container.upload_blob("lake/odd//g", b"g")
    for i in range(12):
        container.upload_blob(f"lake/p{i:02d}/q/r.txt", b"r")
    container.upload_blob("lakeside.txt", b"not in the volume")

    def walk(concurrency: int) -> tuple[list[tuple[str, bool]], list[tuple[str, str]]]:
        use_env(server.env(CAIRN_CRAWL_LIST_CONCURRENCY=str(concurrency)))
        problems: list[tuple[str, str]] = []
        with open_volume(server.url(name, "lake")) as volume:
            entries = [(e.path, e.is_dir) for e in volume.walk(lambda *p: problems.append(p))]
        return entries, problems

    one = walk(1)
    assert sorted(one[0]) == [
        ("a", True),
        ("a b", True),
        ("a b/y", False),
        ("a.txt", False),
        ("a/x", False),
        ("a0", False),
        ("d", True),
        ("d/e", True),
        ("d/e/f", False),
        *[
            (f"p{i:02d}{part}", part != "/q/r.txt")
            for i in range(12)
            for part in ("", "/q", "/q/r.txt")
        ],
    ]
    assert sorted(p for p, _ in one[1]) == ["a", "odd//g"]
    assert walk(4) == one and walk(16) == one
    # A kept-alive connection per listing: none dropped from a pool too small (urllib3 warns).
    assert "Connection pool is full" not in caplog.text


def test_a_malformed_nameservices_setting_is_named(use_env: SetEnv) -> None:
    use_env({"CAIRN_HDFS_NAMESERVICES": "prod=nn1:9870"})
    with pytest.raises(Exception, match="CAIRN_HDFS_NAMESERVICES"):
        open_volume("hdfs://prod/lake")


def test_watch_needs_every_for_remote_volumes(tmp_path: Path) -> None:
    env = cairn_env(tmp_path / "data")
    # hdfs:// is covered in test_crawl_modes.py
    for url in ("abfss://fs@acct.dfs.core.windows.net/lake", "az://fs/lake", "s3://bucket/lake"):
        result = subprocess.run(
            [sys.executable, "-m", "cairn", "crawl", url, "--watch"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )
        assert result.returncode == 1
        assert "--every" in result.stderr


def test_hdfs_user_defaults_to_the_login_name(
    hdfs_server: HdfsServer, use_env: SetEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: CAIRN_HDFS_USER, default: your login name. The NameNode records the user a
    write came from as its owner: the login name (what getpass reads, LOGNAME first) when the
    variable is unset, the variable's value when set."""
    root = hdfs_server.fresh_dir("user")
    hdfs_server.admin.chmod(root, "777")
    monkeypatch.setenv("LOGNAME", "login-ana")
    use_env({})
    with open_volume(hdfs_server.url(root)) as volume:
        volume.write_bytes("by-login.txt", b"a")
    use_env({"CAIRN_HDFS_USER": TEST_USER})
    with open_volume(hdfs_server.url(root)) as volume:
        volume.write_bytes("by-setting.txt", b"b")
    listed = hdfs_server.admin._op("GET", root, "LISTSTATUS").json()["FileStatuses"]["FileStatus"]
    owners = {status["pathSuffix"]: status["owner"] for status in listed}
    assert owners == {"by-login.txt": "login-ana", "by-setting.txt": TEST_USER}


def test_a_flat_listing_yields_each_path_once() -> None:
    # S3 allows "a" beside "a/x" (SeaweedFS refuses it, so the S3 walk's shared helper is
    # checked on a listing as AWS would send it, in name order).
    from connectors.flat import flat_entries

    listed = [
        ("", 0, 0, True, ""),  # the root's own marker
        ("a", 6, 1, False, "e1"),
        ("a b", 2, 1, False, "e2"),
        ("a.txt", 1, 1, False, "e3"),
        ("a/x", 1, 1, False, "e4"),
        ("m", 0, 1, False, "e5"),  # an empty object as a folder marker
        ("m", 0, 1, True, ""),  # and the "m/" marker beside it
        ("z", 3, 1, False, "e6"),
    ]
    problems: list[tuple[str, str]] = []
    entries = list(flat_entries(listed, lambda p, r: problems.append((p, r)), "object key"))

    assert sorted((e.path, e.is_dir) for e in entries) == [
        ("a", True),
        ("a b", False),
        ("a.txt", False),
        ("a/x", False),
        ("m", True),
        ("z", False),
    ]
    assert [p for p, _ in problems] == ["a"] and "6 bytes are skipped" in problems[0][1]

"""One contract for every Volume: the same tests on a local folder, on HDFS (a real minicluster
over WebHDFS), on ADLS Gen2's Blob API (a real Azurite) and on S3 (a real SeaweedFS).

Each backend builds the same tree its own way (files, empty folders) and says how it counts
requests; the tests only use the Volume protocol and the registry.
"""

from __future__ import annotations

import inspect
import io
import json
import os
import shutil
import subprocess
import sys
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import (
    Entry,
    EntryNotFound,
    EntryTooLarge,
    NotAFile,
    PathOutsideVolume,
    Volume,
    VolumeError,
    open_volume,
)
from connectors.base import WritableVolume
from tests.conftest import ROOT, cairn_env
from tests.servers.fixtures import TEST_USER, AzuriteServer, HdfsServer, S3Server
from tests.servers.seaweedfs import LIST_ONLY_ACCESS_KEY, LIST_ONLY_SECRET_KEY

# path -> bytes, or None for an empty folder
Tree = dict[str, bytes | None]
IS_ROOT = os.geteuid() == 0


class Backend(ABC):
    name: str
    per_path_permissions: bool

    @abstractmethod
    def make(self, tree: Tree) -> str:
        """Builds the tree in a fresh place; returns the volume URL."""

    def env(self) -> dict[str, str]:
        """Settings a process needs to open the volume."""
        return {}

    @abstractmethod
    def restricted(self, url: str, folder: str, file: str) -> tuple[list[str], dict[str, str]]:
        """Makes ``folder`` unlistable and ``file`` unreadable (as far as the backend can);
        returns (command prefix, settings) of an identity those rules apply to."""

    def small_pages(self, monkeypatch: pytest.MonkeyPatch, size: int = 500) -> None:
        """Makes listing pages small enough for the large-directory tests to cross several."""
        return None  # an optional hook: backends without the notion keep this default

    def requests(self, volume: Volume) -> int | None:
        return getattr(volume, "requests", None)

    def grant_writes(self, url: str, folders: list[str]) -> None:
        """Lets the tests' identity write in these folders, where writes need a grant."""
        return None  # an optional hook: backends whose test identity writes anywhere keep it


class LocalBackend(Backend):
    name = "local"
    per_path_permissions = True

    def __init__(self, base: Path) -> None:
        self.base = base

    def make(self, tree: Tree) -> str:
        root = self.base / uuid.uuid4().hex[:8]
        root.mkdir(parents=True)
        for path, data in tree.items():
            target = root / path
            if data is None:
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        return root.as_uri()

    def restricted(self, url: str, folder: str, file: str) -> tuple[list[str], dict[str, str]]:
        root = Path(url.removeprefix("file://"))
        (root / folder).chmod(0)
        (root / file).chmod(0)
        # root reads mode-000 files regardless: drop the capabilities that let it.
        drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
        return (drop if IS_ROOT else []), {}

    def requests(self, volume: Volume) -> int | None:
        return None


class HdfsBackend(Backend):
    name = "hdfs"
    per_path_permissions = True

    def __init__(self, server: HdfsServer) -> None:
        self.server = server

    def make(self, tree: Tree) -> str:
        root = self.server.fresh_dir("contract")
        admin = self.server.admin
        for path, data in tree.items():
            if data is None:
                admin.mkdirs(f"{root}/{path}")
        files = [(f"{root}/{p}", d) for p, d in tree.items() if d is not None]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda item: admin.put(*item), files))
        return self.server.url(root)

    def env(self) -> dict[str, str]:
        return {"CAIRN_HDFS_USER": TEST_USER}

    def grant_writes(self, url: str, folders: list[str]) -> None:
        root = "/" + url.split("/", 3)[3]
        for folder in folders:
            self.server.admin.chown(f"{root}/{folder}".rstrip("/"), TEST_USER)

    def restricted(self, url: str, folder: str, file: str) -> tuple[list[str], dict[str, str]]:
        root = url.split("/", 3)[3]
        self.server.admin.chmod(f"/{root}/{folder}", "700")  # owner: the superuser
        self.server.admin.chmod(f"/{root}/{file}", "600")
        return [], self.env()


class AdlsBackend(Backend):
    name = "adls"
    # The Blob API has no per-folder permissions: a SAS that may list but not read is the
    # narrowest identity, and it is refused per file.
    per_path_permissions = False

    def __init__(self, server: AzuriteServer) -> None:
        self.server = server

    def make(self, tree: Tree) -> str:
        name = self.server.fresh_container()
        container = self.server.container(name)
        from concurrent.futures import ThreadPoolExecutor

        def upload(item: tuple[str, bytes | None]) -> None:
            path, data = item
            if data is None:
                container.upload_blob(f"lake/{path}", b"", metadata={"hdi_isfolder": "true"})
            else:
                container.upload_blob(f"lake/{path}", data, overwrite=True)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(upload, tree.items()))
        return self.server.url(name, "lake")

    def env(self) -> dict[str, str]:
        return self.server.env()

    def restricted(self, url: str, folder: str, file: str) -> tuple[list[str], dict[str, str]]:
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        container = url.removeprefix("abfss://").partition("@")[0]
        sas = generate_container_sas(
            self.server.account,
            container,
            account_key=self.server.key,
            permission=ContainerSasPermissions(list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        return [], self.server.env(CAIRN_AZURE_ACCOUNT_KEY="", CAIRN_AZURE_SAS_TOKEN=sas)

    def small_pages(self, monkeypatch: pytest.MonkeyPatch, size: int = 500) -> None:
        monkeypatch.setattr("connectors.adls.PAGE_SIZE", size)


class S3Backend(Backend):
    name = "s3"
    # Policies can be per prefix, but the narrowest identity the test server offers is one
    # that may list and not read: refused per object, like ADLS's list-only SAS.
    per_path_permissions = False

    def __init__(self, server: S3Server) -> None:
        self.server = server

    def make(self, tree: Tree) -> str:
        bucket = self.server.fresh_bucket("contract")
        client = self.server.client()
        from concurrent.futures import ThreadPoolExecutor

        def upload(item: tuple[str, bytes | None]) -> None:
            path, data = item
            if data is None:  # a folder exists as a zero-length 'name/' object
                client.put_object(Bucket=bucket, Key=f"lake/{path}/", Body=b"")
            else:
                client.put_object(Bucket=bucket, Key=f"lake/{path}", Body=data)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(upload, tree.items()))
        return self.server.url(bucket, "lake")

    def env(self) -> dict[str, str]:
        return self.server.env()

    def restricted(self, url: str, folder: str, file: str) -> tuple[list[str], dict[str, str]]:
        return [], self.server.env(
            AWS_ACCESS_KEY_ID=LIST_ONLY_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=LIST_ONLY_SECRET_KEY
        )

    def small_pages(self, monkeypatch: pytest.MonkeyPatch, size: int = 500) -> None:
        monkeypatch.setattr("connectors.s3.PAGE_SIZE", size)


@pytest.fixture(params=["local", "hdfs", "adls", "s3"])
def backend(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_env: Callable[[dict[str, str]], None],
) -> Iterator[Backend]:
    made: Backend
    if request.param == "local":
        made = LocalBackend(tmp_path)
    elif request.param == "hdfs":
        made = HdfsBackend(request.getfixturevalue("hdfs_server"))
    elif request.param == "adls":
        made = AdlsBackend(request.getfixturevalue("azurite_server"))
    else:
        made = S3Backend(request.getfixturevalue("s3_server"))
    use_env(made.env())
    yield made


def walk_all(volume: Volume) -> tuple[dict[str, Entry], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    entries: dict[str, Entry] = {}
    for entry in volume.walk(lambda p, r: problems.append((p, r))):
        assert entry.path not in entries, f"{entry.path} yielded twice"
        entries[entry.path] = entry
    return entries, problems


NESTED: Tree = {
    "top.txt": b"12345",
    "a/b/c/deep.yaml": b"x" * 42,
    "a/sibling.csv": b"1,2\n",
    "a/b/empty.bin": b"",
    "empty": None,
}


def test_walk_nested_tree(backend: Backend) -> None:
    volume = open_volume(backend.make(NESTED))
    assert isinstance(volume, Volume)

    entries, problems = walk_all(volume)

    assert problems == []
    # Order is the backend's own (listing order, depth first or flat): compare as sets.
    assert {p: (e.is_dir, None if e.is_dir else e.size) for p, e in entries.items()} == {
        "top.txt": (False, 5),
        "a": (True, None),
        "a/b": (True, None),
        "a/b/c": (True, None),
        "a/b/c/deep.yaml": (False, 42),
        "a/b/empty.bin": (False, 0),
        "a/sibling.csv": (False, 4),
        "empty": (True, None),
    }
    deep = entries["a/b/c/deep.yaml"]
    assert deep.name == "deep.yaml"
    assert abs(deep.mtime_ns / 1e9 - datetime.now(UTC).timestamp()) < 600
    assert volume.stat("a/b/c/deep.yaml") == Entry("a/b/c/deep.yaml", 42, deep.mtime_ns, False)
    assert volume.stat("a/b").is_dir and volume.stat("empty").is_dir
    assert volume.stat("a/./b/../b/c").path == "a/b/c"
    top = volume.stat("")
    assert top.path == "" and top.is_dir
    # The same tree walked twice gives the same entries, whatever the order.
    assert walk_all(volume)[0] == entries
    volume.close()


AWKWARD = ["données/été.yaml", "日本/ファイル.csv", "with space/a#b%c?.txt", "x+y=z;w@v.txt"]


def test_unicode_and_awkward_names(backend: Backend) -> None:
    volume = open_volume(backend.make({name: name.encode() for name in AWKWARD}))

    entries, problems = walk_all(volume)

    assert problems == []
    for name in AWKWARD:
        assert entries[name].size == len(name.encode())
        assert volume.read(name, 1024) == name.encode()
    url = volume.url_for("with space/a#b%c?.txt")
    assert "%20" in url and "#" not in url and "?" not in url
    # A folder's URL handed back to the registry opens that folder.
    sub = open_volume(volume.url_for("données"))
    assert sub.read("été.yaml", 1024) == "données/été.yaml".encode()
    assert [e.path for e in sub.walk()] == ["été.yaml"]


def test_large_directory_is_listed_in_batches_and_walked_lazily(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 1200
    backend.small_pages(monkeypatch)
    tree: Tree = {f"big/f{i:05d}.parquet": b"x" * (i % 7) for i in range(count)}
    volume = open_volume(backend.make(tree))

    walk = volume.walk()
    assert inspect.isgenerator(walk)
    before = backend.requests(volume)
    first = next(walk)
    after_first = backend.requests(volume)
    rest = list(walk)
    after_all = backend.requests(volume)

    entries = {e.path: e for e in [first, *rest]}
    assert len(entries) == count + 1 == 1 + len(rest)
    assert entries["big/f01199.parquet"].size == 1199 % 7
    if before is not None and after_first is not None and after_all is not None:
        # The first entry came before the whole listing did: batches of at most 500 entries.
        assert after_first - before < after_all - before
        assert after_all - before >= 3


# Names whose folders' keys do not sort together with the folder's own name: "a b/x" and
# "a.txt" come between "a" and "a/x" in a flat listing, "a0" after it.
SPREAD: Tree = {
    "a b/x.txt": b"1",
    "a.txt": b"22",
    "a/x.txt": b"333",
    "a/empty": None,
    "a/b/c/d.txt": b"4",
    "a0": b"55",
    "empty": None,
    "top.txt": b"6",
    **{f"p{i:02d}/{part}/f.csv": b"x" * i for i in range(30) for part in ("k=1", "k=2")},
}


def test_several_listings_at_once_walk_the_same_entries(
    backend: Backend, use_env: Callable[[dict[str, str]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CAIRN_CRAWL_LIST_CONCURRENCY: the walk lists several folders (HDFS) or prefixes (S3,
    ADLS) at once; the entries are the same as listing one after another, and on a flat
    listing store in the same order (the keys' name order), across many small pages."""
    backend.small_pages(monkeypatch, 7)
    url = backend.make(SPREAD)
    walks: dict[str, list[tuple[str, bool, int]]] = {}
    for concurrency in ("1", "4", "16"):
        use_env({**backend.env(), "CAIRN_CRAWL_LIST_CONCURRENCY": concurrency})
        with open_volume(url) as volume:
            entries, problems = walk_all(volume)
        assert problems == []
        walks[concurrency] = [
            (e.path, e.is_dir, 0 if e.is_dir else e.size) for e in entries.values()
        ]

    folders = {"a", "a b", "a/b", "a/b/c"} | {
        path.rsplit("/", 1)[0] for path in SPREAD if path[0] == "p"
    }
    expected = set(SPREAD) | folders | {f"p{i:02d}" for i in range(30)}
    assert {path for path, _, _ in walks["1"]} == expected
    if backend.name in ("s3", "adls"):
        assert walks["4"] == walks["1"] and walks["16"] == walks["1"]
        files = [path for path, is_dir, _ in walks["1"] if not is_dir]
        assert files == sorted(files)  # a flat listing's order: "a b/x.txt" before "a/x.txt"
    else:
        assert sorted(walks["4"]) == sorted(walks["1"]) == sorted(walks["16"])


def test_read_size_cap(backend: Backend) -> None:
    volume = open_volume(
        backend.make({"hundred.bin": bytes(range(100)), "empty.bin": b"", "d/x": b"x"})
    )

    assert volume.read("hundred.bin", 100) == bytes(range(100))
    assert volume.read("hundred.bin", 1000) == bytes(range(100))
    assert volume.read("empty.bin", 0) == b""
    # An empty file (an empty manifest) reads as no bytes, not a range error, whatever the cap.
    assert volume.read("empty.bin", 1000) == b""
    with pytest.raises(EntryTooLarge) as info:
        volume.read("hundred.bin", 99)
    assert (info.value.size, info.value.limit) == (100, 99)
    assert "hundred.bin" in str(info.value)
    with pytest.raises(NotAFile):
        volume.read("", 10)
    with pytest.raises(NotAFile):
        volume.read("d", 10)
    with pytest.raises(ValueError):
        volume.read("hundred.bin", -1)


def test_missing_paths(backend: Backend) -> None:
    url = backend.make({"d/f.txt": b"abc"})
    volume = open_volume(url)

    for call in (
        lambda: volume.stat("d/missing"),
        lambda: volume.read("d/missing", 10),
        lambda: volume.open("missing.parquet"),
        lambda: volume.read("nope/deeper/f.txt", 10),
    ):
        with pytest.raises(EntryNotFound):
            call()
    with pytest.raises(EntryNotFound, match="does not exist"):
        open_volume(volume.url_for("no-such-folder"))
    # A file is not a volume root.
    with pytest.raises(Exception, match="not a directory"):
        open_volume(volume.url_for("d/f.txt"))


def test_paths_outside_the_volume_are_refused(backend: Backend) -> None:
    volume = open_volume(backend.make({"inside/f.txt": b"f", "outside.txt": b"secret"}))
    inner = open_volume(volume.url_for("inside"))

    for bad in ("../outside.txt", "a/../../outside.txt", "/outside.txt", "/etc/passwd"):
        for call in (inner.read, inner.stat, inner.url_for, inner.open):
            with pytest.raises(PathOutsideVolume):
                call(bad, 100) if call == inner.read else call(bad)  # type: ignore[operator]
    assert inner.read("f.txt", 10) == b"f"


def test_write_bytes_replaces_a_file_whole(backend: Backend) -> None:
    url = backend.make({"d/f.txt": b"old", "d/other.txt": b"kept"})
    backend.grant_writes(url, ["", "d"])
    volume = open_volume(url)
    assert isinstance(volume, WritableVolume)

    volume.write_bytes("d/f.txt", b"new and longer")
    volume.write_bytes("top.txt", b"made")
    assert volume.read("d/f.txt", 100) == b"new and longer"
    assert volume.read("top.txt", 100) == b"made"
    assert volume.read("d/other.txt", 100) == b"kept"
    files = {path for path, entry in walk_all(volume)[0].items() if not entry.is_dir}
    assert files == {"d/f.txt", "d/other.txt", "top.txt"}  # no temporary file left behind
    with pytest.raises(NotAFile):
        volume.write_bytes("", b"x")
    inner = open_volume(volume.url_for("d"))
    assert isinstance(inner, WritableVolume)
    with pytest.raises(PathOutsideVolume):
        inner.write_bytes("../escaped.txt", b"x")


def _parquet_bytes(rows: int) -> bytes:
    import random

    rng = random.Random(7)
    table = pa.table(
        {
            "store_id": pa.array(range(rows), pa.int64()),
            "amount": [rng.random() for _ in range(rows)],
            "note": [f"n{rng.getrandbits(64):x}" for _ in range(rows)],
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="none")
    return sink.getvalue()


def test_open_reads_a_parquet_schema_from_the_footer_alone(backend: Backend) -> None:
    data = _parquet_bytes(150_000)
    assert len(data) > 3_000_000
    volume = open_volume(backend.make({"part-0.parquet": data}))

    with volume.open("part-0.parquet") as f:
        assert f.seekable()
        schema = pq.ParquetFile(f).schema_arrow
        fetched = getattr(f, "bytes_fetched", None)
        requests = getattr(f, "requests", None)
    assert schema.names == ["store_id", "amount", "note"]
    assert schema.field("amount").type == pa.float64()
    if backend.name != "local":
        # Ranged reads of the footer only: a few requests, a small fraction of the file.
        assert fetched is not None and requests is not None
        assert fetched <= 256 * 1024, fetched
        assert 1 <= requests <= 3, requests
    with volume.open("part-0.parquet") as f:
        f.seek(4)
        assert f.read(4) == data[4:8]
        assert f.seek(-4, io.SEEK_END) == len(data) - 4
        assert f.read() == b"PAR1"
        assert f.read(10) == b""


PERMISSION_CHECK = """
import json, sys
from connectors import AccessDenied, open_volume
volume = open_volume(sys.argv[1])
problems, entries = [], []
for entry in volume.walk(lambda p, r: problems.append([p, r])):
    entries.append(entry.path)
try:
    volume.read("secret.txt", 10)
    denied = "read"
except AccessDenied as exc:
    denied = str(exc)
print(json.dumps({"entries": entries, "problems": problems, "denied": denied}))
"""


def test_permission_errors_are_reported_not_raised(backend: Backend, tmp_path: Path) -> None:
    url = backend.make({"locked/f.txt": b"f", "open/g.txt": b"g", "secret.txt": b"s"})
    prefix, env = backend.restricted(url, "locked", "secret.txt")
    try:
        result = subprocess.run(
            [*prefix, sys.executable, "-c", PERMISSION_CHECK, url],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=cairn_env(tmp_path / "data", **env),
        )
    finally:
        if backend.name == "local":
            root = Path(url.removeprefix("file://"))
            (root / "locked").chmod(0o755)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["denied"] != "read" and "secret.txt" in seen["denied"]
    assert {"open", "open/g.txt", "secret.txt", "locked"} <= set(seen["entries"])
    if backend.per_path_permissions:
        assert "locked/f.txt" not in seen["entries"]
        ((path, reason),) = seen["problems"]
        assert path == "locked" and "permission denied" in reason.lower()
    else:
        assert seen["problems"] == []
    if backend.name == "local":
        shutil.rmtree(Path(url.removeprefix("file://")))


def test_volume_urls_round_trip_and_carry_no_credentials(backend: Backend) -> None:
    url = backend.make({"m/MANIFEST.yaml": b"name: x\ntype: dataset\n"})
    volume = open_volume(url)

    assert volume.url.split("://")[0] == volume.scheme == url.split("://")[0]
    again = open_volume(volume.url)
    assert again.url == volume.url
    assert again.read("m/MANIFEST.yaml", 100) == b"name: x\ntype: dataset\n"
    assert open_volume(volume.url_for("m")).url == volume.url_for("m")
    for name, secret in backend.env().items():
        if any(word in name for word in ("KEY", "SAS", "CONNECTION")):
            assert secret not in volume.url and secret not in volume.url_for("m/MANIFEST.yaml")


def test_open_with_the_listed_size_makes_one_request_per_read(backend: Backend) -> None:
    data = bytes(range(256)) * 400  # 100 KiB: more than one ranged read's block
    volume = open_volume(backend.make({"d/f.bin": data, "d/small.csv": b"a,b\n1,2\n"}))
    sizes = {e.path: e.size for e in walk_all(volume)[0].values() if not e.is_dir}

    before = backend.requests(volume)
    with volume.open("d/f.bin", sizes["d/f.bin"]) as f:
        f.seek(-8, io.SEEK_END)
        tail = f.read()
    with volume.open("d/small.csv", sizes["d/small.csv"]) as f:
        head = f.read(64 * 1024)
    after = backend.requests(volume)
    assert tail == data[-8:]
    assert head == b"a,b\n1,2\n"
    if before is not None and after is not None:
        # No call for the size (GETFILESTATUS, HEAD): one ranged read each.
        assert after - before == 2, after - before
    with volume.open("d/f.bin", sizes["d/f.bin"]) as f, volume.open("d/f.bin") as g:
        assert f.read() == g.read() == data

    # A size from a listing that no longer holds: the read fails, naming the path.
    for path, error in (("d/gone.bin", EntryNotFound), ("d", NotAFile)):
        with pytest.raises(error), volume.open(path, 10) as f:
            f.read(10)
    if backend.name != "local":
        with volume.open("d/small.csv", 1000) as f, pytest.raises(VolumeError, match="small"):
            f.read(1000)

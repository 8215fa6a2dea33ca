"""`cairn snapshot`: content hashes of a dataset's files recorded as manifest versions, on a
local folder, on S3 (a real SeaweedFS), on HDFS (the minicluster) and on ADLS (Azurite)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from connectors import open_volume
from crawler.manifest import parse_manifest
from tests.conftest import ProcessServer, cairn_env, run_cairn
from tests.servers.fixtures import TEST_USER, S3Server
from tests.test_crawl_e2e import crawl
from tests.test_crawl_remote import AdlsLake, HdfsLake, RemoteLake

MANIFEST = "name: sales\ntype: dataset\n# kept as written\ntags: [sales]\n"


def snapshot(url: str, env: dict[str, str], *extra: str) -> dict:
    result = run_cairn("snapshot", url, "--json", *extra, env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_local_snapshot_adds_a_version_per_change(tmp_path: Path) -> None:
    ds = tmp_path / "sales"
    (ds / "part").mkdir(parents=True)
    (ds / "MANIFEST.yaml").write_text(MANIFEST)
    (ds / "a.csv").write_bytes(b"id\n1\n")
    (ds / "part" / "b.csv").write_bytes(b"id\n2\n")
    (ds / "other").mkdir()  # another dataset below: not part of this one
    (ds / "other" / "MANIFEST.yaml").write_text("name: other\ntype: dataset\n")
    (ds / "other" / "c.csv").write_bytes(b"c")
    env = cairn_env(tmp_path / "data")

    first = snapshot(str(ds), env)
    assert (first["version"], first["added"], first["written"]) == ("v1", True, True)
    assert (first["files"], first["bytes"]) == (2, 10)
    text = (ds / "MANIFEST.yaml").read_text()
    assert text.startswith(MANIFEST)  # the rest of the manifest stays as written
    v1 = yaml.safe_load(text)["versions"]["v1"]
    assert v1["files"] == {"a.csv": sha(b"id\n1\n"), "part/b.csv": sha(b"id\n2\n")}
    assert v1["sha256"] == first["sha256"] and v1["bytes"] == 10

    again = snapshot(str(ds / "MANIFEST.yaml"), env)  # the manifest's own path works too
    assert (again["version"], again["added"]) == ("v1", False)
    assert (ds / "MANIFEST.yaml").read_text() == text

    (ds / "a.csv").write_bytes(b"id\n1\n3\n")
    second = snapshot(f"file://{ds}", env)
    assert (second["version"], second["added"]) == ("v2", True)
    versions = yaml.safe_load((ds / "MANIFEST.yaml").read_text())["versions"]
    assert list(versions) == ["v1", "v2"]
    assert versions["v1"] == v1  # earlier versions are kept unchanged
    assert versions["v2"]["files"]["a.csv"] == sha(b"id\n1\n3\n")

    # The crawler reads the versions like any manifest field.
    (doc,), problems = parse_manifest((ds / "MANIFEST.yaml").read_bytes(), "MANIFEST.yaml")
    assert problems == [] and set(doc.manifest.versions) == {"v1", "v2"}


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["no-bom", "bom"])
@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"], ids=["crlf", "lf", "cr"])
def test_snapshot_keeps_the_manifests_line_ends_and_bom(
    tmp_path: Path, newline: str, bom: bytes
) -> None:
    from crawler.snapshot import take_snapshot

    ds = tmp_path / "sales"
    ds.mkdir()
    path = ds / "MANIFEST.yaml"
    original = bom + MANIFEST.replace("\n", newline).encode()
    path.write_bytes(original)
    (ds / "a.csv").write_bytes(b"id\n1\n")
    take_snapshot(str(ds), ["MANIFEST.yaml"])  # appends a versions block
    (ds / "a.csv").write_bytes(b"id\n2\n")
    take_snapshot(str(ds), ["MANIFEST.yaml"])  # replaces it
    written = path.read_bytes()
    assert written.startswith(original)
    body = written[len(bom) :].decode()
    # Every line, old and new, ends the way the file's lines did; no other line end is left.
    assert body.count(newline) == len(body.splitlines()), body
    assert "\r" not in body.replace(newline, "") and "\n" not in body.replace(newline, ""), body
    (doc,), problems = parse_manifest(written, "MANIFEST.yaml")
    assert problems == [] and set(doc.manifest.versions) == {"v1", "v2"}


def test_snapshot_hashes_the_manifests_location_and_keeps_other_versions(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    (ds / "data").mkdir(parents=True)
    (ds / "data" / "x.parquet").write_bytes(b"PAR1")
    (ds / "notes.txt").write_text("not data")
    (ds / "MANIFEST.yaml").write_text(
        "name: t\ntype: dataset\nlocation: data\nversions:\n  legacy: s3://old/place\n"
        "owners: [ana@example.com]\n"
    )
    env = cairn_env(tmp_path / "data-dir")

    snap = snapshot(str(ds), env)
    assert snap["files"] == 1
    manifest = yaml.safe_load((ds / "MANIFEST.yaml").read_text())
    assert manifest["versions"]["legacy"] == "s3://old/place"
    assert manifest["versions"]["v1"]["files"] == {"data/x.parquet": sha(b"PAR1")}
    assert manifest["owners"] == ["ana@example.com"]

    # A glob location, as the example lake writes them: only the matching files count.
    (ds / "data" / "y.parquet").write_bytes(b"PAR2")
    (ds / "data" / "y.csv").write_bytes(b"not this")
    (ds / "MANIFEST.yaml").write_text("name: t\ntype: dataset\nlocation: ./data/*.parquet\n")
    globbed = snapshot(str(ds), env)
    files = yaml.safe_load((ds / "MANIFEST.yaml").read_text())["versions"]["v1"]["files"]
    assert globbed["files"] == 2
    assert files == {"data/x.parquet": sha(b"PAR1"), "data/y.parquet": sha(b"PAR2")}

    # A location given as a volume URL is hashed there (paths relative to that volume).
    (ds / "MANIFEST.yaml").write_text(f"name: t\ntype: dataset\nlocation: {ds.as_uri()}/data\n")
    by_url = snapshot(str(ds), env)
    files = yaml.safe_load((ds / "MANIFEST.yaml").read_text())["versions"]["v1"]["files"]
    assert by_url["files"] == 3 and set(files) == {"x.parquet", "y.parquet", "y.csv"}


def test_dry_run_and_errors(tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "MANIFEST.yaml").write_text(MANIFEST)
    (ds / "a.csv").write_bytes(b"1")
    env = cairn_env(tmp_path / "data")

    dry = snapshot(str(ds), env, "--dry-run")
    assert (dry["version"], dry["added"], dry["written"]) == ("v1", True, False)
    assert (ds / "MANIFEST.yaml").read_text() == MANIFEST

    empty = tmp_path / "empty"
    empty.mkdir()
    none = run_cairn("snapshot", str(empty), env=env)
    assert none.returncode == 1 and "no manifest in" in none.stderr
    (ds / "second.cairn.yaml").write_text("name: b\ntype: dataset\n")
    several = run_cairn("snapshot", str(ds), env=env)
    assert several.returncode == 1 and "several manifests" in several.stderr
    (ds / "second.cairn.yaml").write_text("name: b\ntype: dataset\n---\nname: c\ntype: table\n")
    multi = run_cairn("snapshot", str(ds / "second.cairn.yaml"), env=env)
    assert multi.returncode == 1 and "holds 2 manifests" in multi.stderr
    (ds / "second.cairn.yaml").unlink()
    (ds / "MANIFEST.yaml").write_text("name: sales\ntype: spaceship\n")
    bad = run_cairn("snapshot", str(ds), env=env)
    assert bad.returncode == 1 and "is not valid" in bad.stderr and "spaceship" in bad.stderr


def test_s3_snapshot_writes_the_manifest_back(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.fresh_bucket("snap")
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="lake/sales/MANIFEST.yaml", Body=MANIFEST.encode())
    client.put_object(Bucket=bucket, Key="lake/sales/a.csv", Body=b"id\n1\n")
    big = bytes(range(256)) * 40_000  # 10 MB: hashed over several ranged GETs
    client.put_object(Bucket=bucket, Key="lake/sales/part/big.bin", Body=big)
    env = cairn_env(tmp_path / "data", **s3_server.env())
    url = s3_server.url(bucket, "lake/sales")

    def manifest() -> str:
        got = client.get_object(Bucket=bucket, Key="lake/sales/MANIFEST.yaml")
        return str(got["Body"].read().decode())

    first = snapshot(url, env)
    assert (first["version"], first["added"], first["written"]) == ("v1", True, True)
    assert first["manifest"] == url + "/MANIFEST.yaml"
    assert manifest().startswith(MANIFEST)
    files = yaml.safe_load(manifest())["versions"]["v1"]["files"]
    assert files == {"a.csv": sha(b"id\n1\n"), "part/big.bin": sha(big)}

    assert snapshot(url, env)["added"] is False
    assert list(yaml.safe_load(manifest())["versions"]) == ["v1"]

    client.put_object(Bucket=bucket, Key="lake/sales/a.csv", Body=b"id\n2\n")
    second = snapshot(url + "/MANIFEST.yaml", env)
    assert (second["version"], second["added"]) == ("v2", True)
    assert list(yaml.safe_load(manifest())["versions"]) == ["v1", "v2"]


@pytest.fixture(params=["hdfs", "adls"])
def lake(request: pytest.FixtureRequest) -> Iterator[RemoteLake]:
    if request.param == "hdfs":
        yield HdfsLake(request.getfixturevalue("hdfs_server"))
    else:
        yield AdlsLake(request.getfixturevalue("azurite_server"))


def test_remote_snapshot_writes_the_manifest_back(
    lake: RemoteLake,
    tmp_path: Path,
    catalogue_process: ProcessServer,
    use_env: Callable[[dict[str, str]], None],
) -> None:
    lake.put("sales/MANIFEST.yaml", MANIFEST.encode())
    lake.put("sales/a.csv", b"id\n1\n")
    lake.put("sales/part/b.csv", b"id\n2\n")
    env = cairn_env(tmp_path / "data", **lake.settings)
    url = lake.url + "/sales"
    use_env(lake.settings)

    def manifest() -> bytes:
        with open_volume(lake.url) as volume:
            return volume.read("sales/MANIFEST.yaml", 1 << 20)

    def names() -> set[str]:
        with open_volume(lake.url) as volume:
            return {e.path for e in volume.walk() if not e.is_dir}

    dry = snapshot(url, env, "--dry-run")
    assert (dry["version"], dry["files"], dry["written"]) == ("v1", 2, False)
    assert manifest() == MANIFEST.encode()
    if isinstance(lake, HdfsLake):
        # The folder belongs to the superuser: the write is refused, nothing is left behind.
        refused = run_cairn("snapshot", url, env=env)
        assert refused.returncode == 1, refused.stdout
        assert "cannot write the manifest" in refused.stderr
        assert "permission denied" in refused.stderr
        assert manifest() == MANIFEST.encode()
        lake.server.admin.chown(f"{lake.root}/sales", TEST_USER)

    first = snapshot(url, env)
    assert (first["version"], first["added"], first["written"]) == ("v1", True, True)
    assert first["manifest"] == url + "/MANIFEST.yaml"
    text = manifest().decode()
    assert text.startswith(MANIFEST)  # the rest of the manifest stays as written
    v1 = yaml.safe_load(text)["versions"]["v1"]
    assert v1["files"] == {"a.csv": sha(b"id\n1\n"), "part/b.csv": sha(b"id\n2\n")}

    again = snapshot(url, env)
    assert (again["version"], again["added"], again["written"]) == ("v1", False, False)
    assert manifest().decode() == text

    lake.put("sales/a.csv", b"id\n1\n3\n")
    second = snapshot(url + "/MANIFEST.yaml", env)
    assert (second["version"], second["added"]) == ("v2", True)
    (doc,), problems = parse_manifest(manifest(), "MANIFEST.yaml")
    assert problems == [] and list(doc.manifest.versions) == ["v1", "v2"]
    assert doc.manifest.versions["v1"] == v1  # earlier versions are kept unchanged
    assert names() == {"sales/MANIFEST.yaml", "sales/a.csv", "sales/part/b.csv"}  # no part file

    code, report = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert code == 0 and report["errors"] == [], report
    asset = httpx.get(catalogue_process.url + "/api/v1/assets/by-name/sales").json()
    assert list(asset["versions"]) == ["v1", "v2"]
    assert asset["versions"]["v2"]["sha256"] == second["sha256"]
    assert asset["versions"]["v2"]["files"]["a.csv"] == sha(b"id\n1\n3\n")


def test_a_file_name_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    """A data file named in Latin-1 ended `cairn snapshot` in a UnicodeEncodeError: its name
    cannot be written in the manifest, so the snapshot refuses and names it (bytes escaped)."""
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "MANIFEST.yaml").write_text(MANIFEST)
    (ds / "a.csv").write_bytes(b"1")
    with open(os.fsencode(ds) + b"/caf\xe9.csv", "wb") as f:
        f.write(b"2")
    result = run_cairn("snapshot", str(ds), env=cairn_env(tmp_path / "data"))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "caf\\xe9.csv" in lines[0] and "UTF-8" in lines[0], lines
    assert (ds / "MANIFEST.yaml").read_text() == MANIFEST

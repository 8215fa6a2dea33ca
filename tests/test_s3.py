"""What only S3 volumes do, on a real SeaweedFS: ETag-keyed recrawls, an outage in the middle
of a crawl's listing, signed requests with the standard credential chain, and no credential in
any output. The Volume contract and the remote crawl run on S3 in test_volume_contract.py and
test_crawl_remote.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.settings import get_settings
from connectors import AccessDenied, Entry, VolumeError, open_volume
from connectors.flat import Listed
from connectors.s3 import S3Volume, make_client
from crawler.crawl import Crawler, CrawlFailed, fingerprint
from tests.conftest import ProcessServer, cairn_env, run_cairn
from tests.servers import seaweedfs
from tests.servers.fixtures import S3Server
from tests.servers.processes import ServerSetupError, untimed
from tests.servers.seaweedfs import SeaweedFS
from tests.test_crawl_e2e import crawl, make_volume
from tests.test_crawl_remote import S3Lake


def test_the_etag_joins_size_and_time_in_a_manifest_fingerprint() -> None:
    same = Entry("m/MANIFEST.yaml", 10, 1_700_000_000_000_000_000, False, "etag-1")
    rewritten = Entry("m/MANIFEST.yaml", 10, 1_700_000_000_000_000_000, False, "etag-2")
    untagged = Entry("m/MANIFEST.yaml", 10, 1_700_000_000_000_000_000, False)

    assert fingerprint(same, []) != fingerprint(rewritten, [])
    assert fingerprint(same, []) == fingerprint(Entry(*_fields(same), "etag-1"), [])
    # Volumes without tags keep the key they had, so upgrading re-pushes nothing.
    assert fingerprint(untagged, []) == fingerprint(Entry(*_fields(untagged)), [])
    assert fingerprint(untagged, []) != fingerprint(same, [])


def _fields(entry: Entry) -> tuple[str, int, int, bool]:
    return entry.path, entry.size, entry.mtime_ns, entry.is_dir


def test_the_signing_region_is_the_setting_else_the_aws_chains(
    tmp_path: Path, use_env: Callable[[dict[str, str]], None]
) -> None:
    # README (S3, configuration): CAIRN_S3_REGION, else AWS_DEFAULT_REGION, else the profile's
    # region, else us-east-1; boto3's own client, no request sent.
    config = tmp_path / "aws-config"
    config.write_text("[profile analytics]\nregion = ap-south-1\n")
    files = {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no")}

    def region(env: dict[str, str]) -> str:
        use_env({**files, **env})
        return str(make_client(get_settings()).meta.region_name)

    assert region({}) == "us-east-1"
    assert region({"AWS_PROFILE": "analytics"}) == "ap-south-1"
    assert region({"AWS_PROFILE": "analytics", "AWS_DEFAULT_REGION": "eu-central-1"}) == (
        "eu-central-1"
    )
    assert region({"AWS_DEFAULT_REGION": "eu-central-1", "CAIRN_S3_REGION": "sa-east-1"}) == (
        "sa-east-1"
    )


def test_walk_and_stat_carry_the_etag(
    s3_server: S3Server, use_env: Callable[[dict[str, str]], None]
) -> None:
    use_env(s3_server.env())
    bucket = s3_server.fresh_bucket()
    client = s3_server.client()
    put = client.put_object(Bucket=bucket, Key="d/MANIFEST.yaml", Body=b"name: a\ntype: dataset\n")
    volume = open_volume(s3_server.url(bucket))

    (walked,) = [e for e in volume.walk() if not e.is_dir]
    assert walked.tag == put["ETag"].strip('"') != ""
    assert volume.stat("d/MANIFEST.yaml").tag == walked.tag
    client.put_object(Bucket=bucket, Key="d/MANIFEST.yaml", Body=b"name: b\ntype: dataset\n")
    (again,) = [e for e in volume.walk() if not e.is_dir]
    assert again.size == walked.size and again.tag != walked.tag


def test_a_same_size_rewrite_is_recrawled(
    s3_server: S3Server, tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    lake = S3Lake(s3_server)
    lake.put("m/MANIFEST.yaml", b"name: etag_one\ntype: dataset\n")
    assert crawl(lake.url, catalogue_process, settings=lake.settings)[0] == 0

    lake.put("m/MANIFEST.yaml", b"name: etag_two\ntype: dataset\n")  # same size
    code, report = crawl(lake.url, catalogue_process, settings=lake.settings)

    assert code == 0, report
    assert report["updated"] == 1 and report["manifests_parsed"] == 1
    code, again = crawl(lake.url, catalogue_process, settings=lake.settings)
    assert again["manifests_parsed"] == 0 and again["unchanged"] == 1


def test_requests_are_signed_and_checked(
    s3_server: S3Server, use_env: Callable[[dict[str, str]], None]
) -> None:
    bucket = s3_server.fresh_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="f.txt", Body=b"x")

    use_env(s3_server.env(AWS_SECRET_ACCESS_KEY="not-the-secret-key-at-all"))
    with pytest.raises(AccessDenied, match="refused access"):
        open_volume(s3_server.url(bucket))
    use_env(s3_server.env(AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY=""))
    with pytest.raises(AccessDenied, match="no AWS credentials"):
        open_volume(s3_server.url(bucket))
    use_env(s3_server.env())
    assert open_volume(s3_server.url(bucket)).read("f.txt", 10) == b"x"


def test_an_endpoint_speaking_plain_http_to_https_names_the_setting(
    s3_server: S3Server, use_env: Callable[[dict[str, str]], None]
) -> None:
    bucket = s3_server.fresh_bucket()
    https = s3_server.endpoint.replace("http://", "https://")
    use_env(s3_server.env(CAIRN_S3_ENDPOINT=https, CAIRN_HTTP_RETRIES="1"))
    # Was "the volume: SSLError", naming neither the cause nor the setting.
    with pytest.raises(VolumeError, match="CAIRN_S3_ENDPOINT's scheme"):
        open_volume(s3_server.url(bucket))


def test_an_endpoint_that_is_no_s3_server_is_named(
    s3_server: S3Server,
    catalogue_process: ProcessServer,
    use_env: Callable[[dict[str, str]], None],
) -> None:
    # The catalogue answers /<bucket>?list-type=2 with a 404 of its own: that read as "the
    # volume does not exist (404)".
    use_env(s3_server.env(CAIRN_S3_ENDPOINT=catalogue_process.url, CAIRN_HTTP_RETRIES="1"))
    with pytest.raises(VolumeError, match="HTTP 404 and no S3 error") as info:
        open_volume("s3://some-bucket/lake")
    assert "CAIRN_S3_ENDPOINT" in str(info.value)
    # Virtual-hosted requests to a store that only knows path-style ones.
    host = s3_server.endpoint.replace("127.0.0.1", "localhost")
    use_env(s3_server.env(CAIRN_S3_ENDPOINT=host, CAIRN_S3_ADDRESSING_STYLE="virtual"))
    with pytest.raises(VolumeError, match="CAIRN_S3_ADDRESSING_STYLE=path"):
        open_volume(s3_server.url(s3_server.fresh_bucket()))


def test_s3_urls_are_checked(
    s3_server: S3Server, use_env: Callable[[dict[str, str]], None]
) -> None:
    use_env(s3_server.env())
    for url, message in [
        ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
        ("s3://key:secret@bucket/x", "credentials come from the AWS chain"),
        ("s3://bucket/x?X-Amz-Signature=abc", "takes no query string"),
        ("s3://bucket/../x", "climbs out"),
    ]:
        with pytest.raises(VolumeError, match=message) as info:
            open_volume(url)
        assert "secret" not in str(info.value) and "abc" not in str(info.value)
    with pytest.raises(VolumeError, match="bucket 'no-such-bucket-here' does not exist"):
        open_volume("s3://no-such-bucket-here/lake")


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[SeaweedFS]:
    """A SeaweedFS of this test's own, which it stops and starts again."""
    server = SeaweedFS(tmp_path / "seaweedfs")
    try:
        untimed(seaweedfs.install)  # built once, shared with the s3_server fixture
        server.start()
    except ServerSetupError as exc:
        pytest.fail(f"SeaweedFS (S3) could not be set up: {exc}", pytrace=False)
    yield server
    server.stop()


def test_an_outage_mid_walk_fails_the_crawl_and_keeps_earlier_assets(
    own_server: SeaweedFS,
    tmp_path: Path,
    catalogue_process: ProcessServer,
    use_env: Callable[[dict[str, str]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server is stopped after the walk's first listing page: the rest of the volume is
    unknown, so nothing may be soft-deleted. Pages are made small, and the stop is timed from
    inside the real listing loop; every request goes to the real server."""
    s3 = S3Server(own_server)
    lake = S3Lake(s3)
    make_volume(tmp_path / "lake")
    lake.upload(tmp_path / "lake")
    for i in range(250):  # listed before gold/, raw/ and ref/: the walk dies before those
        lake.put(f"bulk/f{i:03d}.txt", b"x")
    settings = s3.env(CAIRN_HTTP_RETRIES="2")
    code, first = crawl(lake.url, catalogue_process, settings=settings)
    assert code == 0 and first["created"] == 4, first

    use_env({**settings, "CAIRN_DATA_DIR": catalogue_process.env["CAIRN_DATA_DIR"]})
    monkeypatch.setattr("connectors.s3.PAGE_SIZE", 100)
    real_pages = S3Volume._pages

    def first_page_then_outage(
        self: S3Volume, prefix: str, *, limit: int | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        for n, page in enumerate(real_pages(self, prefix, limit=limit)):
            yield page
            if limit is None and n == 0:
                own_server.stop()

    monkeypatch.setattr(S3Volume, "_pages", first_page_then_outage)
    from cairn.settings import get_settings

    with pytest.raises(CrawlFailed, match="cannot reach the S3 endpoint"):
        Crawler(get_settings(), catalogue_url=catalogue_process.url).crawl(lake.url)
    monkeypatch.setattr(S3Volume, "_pages", real_pages)

    # The CLI says the same, with exit code 1, while the server is down.
    env = cairn_env(Path(catalogue_process.env["CAIRN_DATA_DIR"]), **settings)
    down = run_cairn("crawl", lake.url, "--catalogue", catalogue_process.url, env=env)
    assert down.returncode == 1 and "cannot reach the S3 endpoint" in " ".join(down.stderr.split())
    for name in ("sales_raw", "sales_daily", "stores", "regions"):
        asset = httpx.get(f"{catalogue_process.url}/api/v1/assets/by-name/{name}").json()
        assert asset["deleted"] is False, name

    own_server.start()  # same ports, same data
    code, after = crawl(lake.url, catalogue_process, settings=settings)
    assert code == 0, after
    assert after["unchanged"] == 4 and after["deleted"] == after["created"] == 0


def test_an_outage_after_the_walk_stops_the_crawl_instead_of_failing_every_manifest(
    own_server: SeaweedFS,
    tmp_path: Path,
    catalogue_process: ProcessServer,
    use_env: Callable[[dict[str, str]], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server stops once the whole listing is in: each changed manifest's read then
    waited out its retries and became that manifest's error (exit 2, the crawl "done"); the
    first read that cannot reach the server now fails the crawl, deleting nothing."""
    s3 = S3Server(own_server)
    lake = S3Lake(s3)
    for i in range(40):
        lake.put(f"m{i:02d}/MANIFEST.yaml", f"name: outage_{i}\ntype: dataset\n".encode())
    settings = s3.env(CAIRN_HTTP_RETRIES="2")
    code, first = crawl(lake.url, catalogue_process, settings=settings)
    assert code == 0 and first["created"] == 40, first
    for i in range(40):  # each changed, so each is read again
        lake.put(f"m{i:02d}/MANIFEST.yaml", f"name: outage_{i}\ntype: report\n".encode())

    use_env({**settings, "CAIRN_DATA_DIR": catalogue_process.env["CAIRN_DATA_DIR"]})
    real_listed = S3Volume._listed

    def listing_then_outage(self: S3Volume) -> Iterator[Listed]:
        # The whole volume's listing, however many listings run at once to make it.
        yield from real_listed(self)
        own_server.stop()

    monkeypatch.setattr(S3Volume, "_listed", listing_then_outage)
    with pytest.raises(CrawlFailed, match="stopped answering during the crawl") as info:
        Crawler(get_settings(), catalogue_url=catalogue_process.url).crawl(lake.url)
    assert "nothing was deleted" in str(info.value)
    monkeypatch.setattr(S3Volume, "_listed", real_listed)

    own_server.start()  # same ports, same data
    code, after = crawl(lake.url, catalogue_process, settings=settings)
    assert code == 0 and after["updated"] == 40 and after["deleted"] == 0, after
    found = httpx.get(f"{catalogue_process.url}/api/v1/assets/by-name/outage_7").json()
    assert found["type"] == "report" and found["deleted"] is False


def test_credentials_appear_nowhere(
    s3_server: S3Server, tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    """A crawl with debug logging, and one with a wrong secret: neither the secret key nor
    the wrong one shows up in output, reports, the catalogue or its log."""
    lake = S3Lake(s3_server)
    make_volume(tmp_path / "lake")
    lake.upload(tmp_path / "lake")
    wrong = "WrongSecretKeyForCairnTests0123456789abcd"
    texts = []
    for n, settings in enumerate([s3_server.env(), s3_server.env(AWS_SECRET_ACCESS_KEY=wrong)]):
        env = cairn_env(
            Path(catalogue_process.env["CAIRN_DATA_DIR"]), CAIRN_LOG_LEVEL="debug", **settings
        )
        for extra in ([], ["--json"]):
            result = run_cairn(
                "crawl", lake.url, "--catalogue", catalogue_process.url, *extra, env=env
            )
            assert result.returncode == n, result.stderr
            texts += [result.stdout, result.stderr]
    assert "refused access" in " ".join(" ".join(texts[-2:]).split())
    listing = httpx.get(catalogue_process.url + "/api/v1/assets", params={"limit": 100})
    assert listing.json()["total"] == 4
    texts += [listing.text, catalogue_process.logs()]
    for text in texts:
        assert s3_server.secret_key not in text and wrong not in text


def test_prefixes_listed_at_once_count_every_request(
    s3_server: S3Server, use_env: Callable[[dict[str, str]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """16 listings at once (CAIRN_CRAWL_LIST_CONCURRENCY) over many prefixes and pages: the
    keys come in the one flat listing's order, and ``requests`` counts each request sent from
    any of the listing threads."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr("connectors.s3.PAGE_SIZE", 2)
    bucket = s3_server.fresh_bucket("many")
    client = s3_server.client()
    keys = [f"lake/d{i:02d}/f{j}" for i in range(40) for j in range(5)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=bucket, Key=key, Body=b"x"), keys))
    use_env(s3_server.env(CAIRN_CRAWL_LIST_CONCURRENCY="16"))
    volume = open_volume(s3_server.url(bucket, "lake"))
    assert isinstance(volume, S3Volume)
    calls: list[str] = []
    real = volume._client.list_objects_v2

    def counted(**kwargs: Any) -> Any:
        calls.append(kwargs["Prefix"])  # list.append: one step, from any thread
        return real(**kwargs)

    monkeypatch.setattr(volume._client, "list_objects_v2", counted)
    before = volume.requests

    files = [e.path for e in volume.walk() if not e.is_dir]

    assert files == [key.removeprefix("lake/") for key in keys]
    assert volume.requests - before == len(calls) >= 20 + 40 * 3
    assert calls.count("lake/d07/") == 3  # each prefix's own flat listing, page by page

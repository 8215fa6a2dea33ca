"""The feature store on a remote blob store (CAIRN_BLOBS_URL): tables written to S3 (SeaweedFS),
ADLS (Azurite) or HDFS (a minicluster) and read back from there by every reader (the Arrow,
Parquet and JSON answers, online materialization, point-in-time joins) through the bounded read
cache; the orphan sweeper; and a failed version write that leaves no blob in the remote store.
Also, on the local store: a damaged table file, and a second process starting on the same data
folder while an upload is under way."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any, cast

import anyio.from_thread
import anyio.to_thread
import boto3
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.stub import Stubber

from cairn.errors import Conflict, Unavailable
from cairn.models import FeatureSetMeta
from cairn.settings import Settings
from featurestore_service.app import create_app
from featurestore_service.backends.base import StoredVersion
from featurestore_service.backends.sqlite import SQLiteFeatureStore
from featurestore_service.blobstore import BlobStore, TableBlobs, open_blob_store
from featurestore_service.blobstore.base import BlobError, blob_key, taken_key
from featurestore_service.blobstore.local import LocalBlobStore
from featurestore_service.blobstore.s3 import S3BlobStore
from featurestore_service.service import FeatureStore
from featurestore_service.table_limits import TableLimits
from featurestore_service.tables import DecodeSlots
from tests.conftest import ProcessServer, ThreadServer, backend_settings, cairn_env, refused_port
from tests.test_blob_store_contract import (
    AdlsBackend,
    Backend,
    HdfsBackend,
    LocalBackend,
    S3Backend,
)
from tests.test_featurestore_api import parquet_bytes, race, sample_table
from tests.test_online import columns, customers, lookup, put_table, wait_online

NOW = datetime.now(UTC).replace(microsecond=0)
ARROW = "application/vnd.apache.arrow.stream"
PARQUET = "application/vnd.apache.parquet"


def make_backend(request: pytest.FixtureRequest, name: str, tmp_path: Path) -> Backend:
    if name == "local":
        return LocalBackend(tmp_path / "local-store")
    if name == "hdfs":
        return HdfsBackend(request.getfixturevalue("hdfs_server"))
    if name == "adls":
        return AdlsBackend(request.getfixturevalue("azurite_server"))
    return S3Backend(request.getfixturevalue("s3_server"))


@pytest.fixture(params=["s3", "adls", "hdfs"])
def remote(
    request: pytest.FixtureRequest, use_env: Callable[[dict[str, str]], None]
) -> Iterator[tuple[Backend, str]]:
    backend = make_backend(request, request.param, Path())
    use_env(backend.env())
    yield backend, backend.url()


def fs_settings(tmp_path: Path, url: str, **extra: object) -> Settings:
    return Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        blobs_url=url,
        **extra,
    )


def stored(url: str) -> list[str]:
    store = open_blob_store(url)
    try:
        return sorted(b.key for b in store.list_blobs())
    finally:
        store.close()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout}s: {what}")


def test_every_reader_reads_tables_from_the_remote_store(
    remote: tuple[Backend, str], tmp_path: Path
) -> None:
    _, url = remote
    day = timedelta(days=1)
    rows = [("C1", NOW - 3 * day, 1.0, 1), ("C2", NOW - 2 * day, 20.0, 2)]
    rows += [("C1", NOW - day, 3.0, 3)] + [(f"X{i}", NOW - day, float(i), i) for i in range(30)]
    table = customers(rows)
    # A cache of one byte: every file is evicted as soon as its reader is done with it.
    settings = fs_settings(tmp_path, url, blobs_cache_bytes=1)
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        version = put_table(
            http, "customers", table, entities="customer_id", timestamp="feature_date"
        )
        doc = http.get("/api/v1/featuresets/customers").json()
        sha256 = doc["table"]["sha256"]

        # The file is in the remote store; locally at most a copy in the read cache (the
        # materializer may be reading it).
        assert stored(url) == [blob_key(sha256)]
        cache = settings.featurestore_blobs / "cache"
        local = [p for p in settings.featurestore_blobs.rglob("*") if p.is_file()]
        assert all(p.parent == cache for p in local), local

        base = f"/api/v1/featuresets/customers/versions/{version}"
        as_parquet = http.get(base, headers={"accept": PARQUET})
        assert as_parquet.status_code == 200, as_parquet.text
        assert pq.read_table(io.BytesIO(as_parquet.content)).equals(table)
        as_arrow = http.get(base, headers={"accept": ARROW})
        assert pa.ipc.open_stream(as_arrow.content).read_all().equals(table.combine_chunks())
        subset = http.get(
            base, params={"columns": "spend", "limit": 2}, headers={"accept": PARQUET}
        )
        assert pq.read_table(io.BytesIO(subset.content)).column("spend").to_pylist() == [1.0, 20.0]
        as_json = http.get(base, params={"limit": 3}).json()
        assert [(r["customer_id"], r["spend"]) for r in as_json["data"]["rows"]] == [
            ("C1", 1.0),
            ("C2", 20.0),
            ("C1", 3.0),
        ]

        state = wait_online(http, "customers", version)
        assert state["live_version"] == version
        answer = lookup(
            http,
            {"features": ["customers:spend"], "entities": {"customer_id": ["C1", "C2"]}},
        )
        assert columns(answer)["spend"]["values"] == [3.0, 20.0]

        frame = pa.table(
            {
                "customer_id": ["C1", "C1"],
                "event_timestamp": pa.array([NOW - 2 * day, NOW], pa.timestamp("us", "UTC")),
            }
        )
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, frame.schema) as writer:
            writer.write_table(frame)
        joined = http.post(
            "/api/v1/historical-features",
            params={"features": "customers:spend"},
            content=sink.getvalue(),
            headers={"content-type": ARROW, "accept": ARROW},
        )
        assert joined.status_code == 200, joined.text
        assert pa.ipc.open_stream(joined.content).read_all().column("spend").to_pylist() == [
            1.0,
            3.0,
        ]

        # Every reader released its copy and the one-byte cache let it go; the next read
        # fetches the file from the store again.
        wait_for(lambda: not any(cache.iterdir()), "the read cache emptied")
        again = http.get(base, headers={"accept": PARQUET})
        assert pq.read_table(io.BytesIO(again.content)).equals(table)


def test_a_table_whose_blob_is_gone_answers_503(
    remote: tuple[Backend, str], tmp_path: Path
) -> None:
    _, url = remote
    # No background profile: it reads the blob into the cache too, and a copy it holds open at
    # the GET would (rightly) be served.
    settings = fs_settings(tmp_path, url, blobs_cache_bytes=1, metrics_profiling=False)
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as http,
    ):
        answer = http.post(
            "/featuresets/gone/versions",
            content=parquet_bytes(sample_table(10)),
            headers={"content-type": PARQUET},
        )
        sha256 = answer.json()["table"]["sha256"]
        wait_for(lambda: not any((settings.featurestore_blobs / "cache").iterdir()), "cache empty")
        store = open_blob_store(url)
        store.delete(blob_key(sha256))
        store.close()

        response = http.get("/featuresets/gone", headers={"accept": PARQUET})

        assert response.status_code == 503
        assert "missing from the blob store" in response.json()["detail"]


def test_a_failed_version_write_leaves_no_blob_in_the_remote_store(
    remote: tuple[Backend, str], tmp_path: Path
) -> None:
    _, url = remote
    settings = fs_settings(tmp_path, url)
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as fs,
    ):
        first = parquet_bytes(sample_table(10))
        kept = race(fs, settings, parquet_bytes(sample_table(50)), first, version=1)

        assert stored(url) == [blob_key(kept)]


def _upload_kept(fs: httpx.Client) -> str:
    """Uploads a version of the set "kept"; the key of the blob that version names."""
    answer = fs.post(
        "/featuresets/kept/versions",
        content=parquet_bytes(sample_table(10)),
        headers={"content-type": PARQUET},
    )
    assert answer.status_code == 201, answer.text
    return blob_key(answer.json()["table"]["sha256"])


def _put_orphan(store: BlobStore) -> str:
    """Puts a whole table blob that no version names (what a killed upload leaves); its key."""
    data = parquet_bytes(sample_table(30))
    key = blob_key(hashlib.sha256(data).hexdigest())
    store.put(key, io.BytesIO(data))
    return key


@pytest.mark.parametrize("kind", ["local", "s3", "adls", "hdfs"])
def test_the_sweeper_removes_what_a_killed_upload_left(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_env: Callable[[dict[str, str]], None],
) -> None:
    """kill -9 between a blob's put and its version row leaves a blob no version names; the
    next start (and every sweep interval after) removes it once the grace period is over."""
    backend = make_backend(request, kind, tmp_path)
    use_env(backend.env())
    url = backend.url()
    settings = fs_settings(tmp_path, url)
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as fs,
    ):
        named = _upload_kept(fs)
    # What the killed process left: a whole blob in the store, no version naming it.
    store: BlobStore = open_blob_store(url)
    orphan = _put_orphan(store)
    assert stored(url) == sorted([named, orphan])

    # Within the grace period the orphan stays (it could be an upload about to be named).
    app = create_app(settings)
    blobs = app.state.featurestore.blobs
    with ThreadServer(app):
        wait_for(lambda: blobs.last_sweep is not None, "the start-up sweep")
    assert blobs.last_sweep.removed == 0
    assert stored(url) == sorted([named, orphan])

    app = create_app(fs_settings(tmp_path, url, blobs_sweep_grace=0))
    blobs = app.state.featurestore.blobs
    with (
        ThreadServer(app) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as fs,
    ):
        wait_for(lambda: blobs.last_sweep is not None, "the start-up sweep")
        assert (blobs.last_sweep.checked, blobs.last_sweep.removed) == (2, 1)
        assert stored(url) == [named]
        still = fs.get("/featuresets/kept", headers={"accept": PARQUET})
        assert still.status_code == 200
    store.close()


def test_the_sweeper_runs_again_every_sweep_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: besides the start-up sweep, one runs every CAIRN_BLOBS_SWEEP_INTERVAL seconds:
    an orphan left while the service runs is removed without a restart; a named blob stays."""
    monkeypatch.setenv("CAIRN_BLOBS_SWEEP_INTERVAL", "0.2")
    monkeypatch.setenv("CAIRN_BLOBS_SWEEP_GRACE", "0")
    url = str(tmp_path / "blobs")
    settings = fs_settings(tmp_path, url)
    assert settings.blobs_sweep_interval == 0.2
    app = create_app(settings)
    blobs = app.state.featurestore.blobs
    with (
        ThreadServer(app) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as fs,
    ):
        wait_for(lambda: blobs.last_sweep is not None, "the start-up sweep")
        named = _upload_kept(fs)
        store: BlobStore = open_blob_store(url)
        try:
            orphan = _put_orphan(store)
            wait_for(lambda: orphan not in stored(url), "a sweep after the start-up one")
        finally:
            store.close()
        assert stored(url) == [named]
        assert fs.get("/featuresets/kept", headers={"accept": PARQUET}).status_code == 200
    monkeypatch.setenv("CAIRN_BLOBS_SWEEP_INTERVAL", "0")
    with pytest.raises(ValueError, match="blobs_sweep_interval"):
        fs_settings(tmp_path, url)


@pytest.mark.parametrize("backend", ["sqlite", "mongo"])
def test_the_sweeper_keeps_blobs_of_deleted_versions(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A soft-deleted version stays readable by number, so its file is no orphan: the database
    is asked about deleted versions too (on MongoDB they live in a collection of their own)."""
    fields = {"data_dir": tmp_path / "fs", "catalogue_url": f"http://127.0.0.1:{refused_port()}"}
    settings = backend_settings(request, backend, **fields)
    url = str(settings.featurestore_blobs)
    shas = []
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as fs,
    ):
        for rows in (10, 20):
            answer = fs.post(
                "/featuresets/swept/versions",
                content=parquet_bytes(sample_table(rows)),
                headers={"content-type": PARQUET},
            )
            assert answer.status_code == 201, answer.text
            shas.append(answer.json()["table"]["sha256"])
        assert fs.delete("/featuresets/swept/versions/1").status_code == 200
    orphan_bytes = parquet_bytes(sample_table(30))
    orphan = blob_key(hashlib.sha256(orphan_bytes).hexdigest())
    store = open_blob_store(url)
    store.put(orphan, io.BytesIO(orphan_bytes))
    store.close()

    app = create_app(settings.model_copy(update={"blobs_sweep_grace": 0}))
    blobs = app.state.featurestore.blobs
    with (
        ThreadServer(app) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as fs,
    ):
        wait_for(lambda: blobs.last_sweep is not None, "the start-up sweep")

        assert (blobs.last_sweep.checked, blobs.last_sweep.removed) == (3, 1)
        assert stored(url) == sorted(blob_key(s) for s in shas)
        old = fs.get("/featuresets/swept/versions/1", headers={"accept": PARQUET})
        assert old.status_code == 200
        assert old.content == parquet_bytes(sample_table(10))


class Process:
    """What one feature-store process holds: its database connection, its TableBlobs (with its
    own uploads in flight) and the service over them. Two of them on one data folder, or on
    two sharing the database file and the blob store, are two servers, as the README allows."""

    def __init__(self, settings: Settings, db: Path | None = None) -> None:
        self.store = SQLiteFeatureStore(db or settings.featurestore_db)
        self.blobs = TableBlobs.from_settings(settings)
        self.service = FeatureStore(self.store, self.blobs, settings)

    async def __aenter__(self) -> Process:
        await self.store.open()
        await anyio.to_thread.run_sync(self.blobs.open)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.store.close()
        await anyio.to_thread.run_sync(self.blobs.close)

    async def read(self, stored: StoredVersion) -> pa.Table:
        """The version's table, as a reader gets it (503 when its blob is gone)."""
        lease = await self.service.checkout(stored)
        try:
            return pq.read_table(lease.path)
        finally:
            lease.release()

    async def stalled_upload(
        self, name: str, data: bytes
    ) -> tuple[asyncio.Task[StoredVersion], asyncio.Event]:
        """Starts an upload of ``data`` as a new table ``name`` and returns once its blob is
        stored, before its version row: the row is written when the event returned is set."""
        stored_blob, row_may_go = asyncio.Event(), asyncio.Event()

        async def stall(name: str, path: Path, checks: object) -> None:
            stored_blob.set()
            await row_may_go.wait()

        self.service.before_table = stall
        meta = FeatureSetMeta(name=name)  # type: ignore[call-arg]
        upload = asyncio.create_task(self.service.create_table(meta, one_chunk(data)))
        await stored_blob.wait()
        return upload, row_may_go


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


RACED_KINDS = ["local", "s3", "adls", "hdfs"]


@pytest.mark.parametrize("kind", RACED_KINDS)
def test_a_sweep_keeps_an_orphan_that_an_upload_names_while_the_sweep_runs(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_env: Callable[[dict[str, str]], None],
) -> None:
    """The review's schedule (a lost acknowledged version), across two processes: an orphan
    older than the grace (what a kill -9 between an upload's blob put and its version row
    leaves); process A's sweep asks the database which blobs are named; before it deletes,
    process B stores the same bytes as a version and would answer 201. The version stays
    readable: B's put refreshed the orphan's write time and the sweep checks it at the take."""
    backend = make_backend(request, kind, tmp_path)
    use_env(backend.env())
    settings = fs_settings(tmp_path, backend.url())
    table = sample_table(40)
    data = parquet_bytes(table)
    key = blob_key(hashlib.sha256(data).hexdigest())
    grace = 1.0

    async def run() -> None:
        async with Process(settings) as a, Process(settings) as b:
            assert await anyio.to_thread.run_sync(a.blobs.store.put, key, io.BytesIO(data))
            await asyncio.sleep(grace + 0.2)  # the orphan is older than the grace now
            acknowledged: list[StoredVersion] = []

            async def named(hashes: list[str]) -> set[str]:
                found = await a.store.named_blobs(hashes)
                if not acknowledged:  # between the sweep's question and what it does next
                    meta = FeatureSetMeta(name="retry")  # type: ignore[call-arg]
                    await b.service.create_table(meta, one_chunk(data))
                    stored = await b.store.latest("retry")
                    assert stored is not None
                    acknowledged.append(stored)
                    assert await anyio.to_thread.run_sync(b.blobs.store.exists, key)
                return found

            report = await a.blobs.sweep(named, grace)

            assert acknowledged and acknowledged[0].blob is not None
            assert blob_key(acknowledged[0].blob) == key
            for process in (a, b):
                assert (await process.read(acknowledged[0])).equals(table)
            assert report.removed == 0
            assert [info.key for info in a.blobs.store.list_blobs()] == [key]

    asyncio.run(run())


@pytest.mark.parametrize("kind", RACED_KINDS)
def test_a_sweep_puts_back_a_blob_whose_version_was_written_after_its_question(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_env: Callable[[dict[str, str]], None],
) -> None:
    """Neither the grace nor a refreshed write time protects an upload that stalls between
    its blob put and its version row for longer than the grace (0 here): process A's sweep
    lists B's new blob as an old orphan and asks the database before B's row is written;
    then B writes the row, finds its blob in place and would answer 201; only then does the
    sweep take the blob. The sweep asks the database again after the take, sees the row and
    puts the blob back."""
    backend = make_backend(request, kind, tmp_path)
    use_env(backend.env())
    settings = fs_settings(tmp_path, backend.url())
    table = sample_table(60)
    data = parquet_bytes(table)
    key = blob_key(hashlib.sha256(data).hexdigest())

    async def run() -> None:
        async with Process(settings) as a, Process(settings) as b:
            upload, row_may_go = await b.stalled_upload("slow", data)
            # Past the second the blob was written in (S3 and ADLS keep whole seconds).
            await asyncio.sleep(1.1)
            acknowledged: list[StoredVersion] = []

            async def named(hashes: list[str]) -> set[str]:
                found = await a.store.named_blobs(hashes)
                if not acknowledged:
                    row_may_go.set()
                    acknowledged.append(await upload)
                    assert await anyio.to_thread.run_sync(b.blobs.store.exists, key)
                return found

            report = await a.blobs.sweep(named, grace=0)

            assert acknowledged and acknowledged[0].blob is not None
            assert blob_key(acknowledged[0].blob) == key
            for process in (a, b):
                assert (await process.read(acknowledged[0])).equals(table)
            assert report.removed == 0
            assert [info.key for info in a.blobs.store.list_blobs()] == [key]
            assert list(a.blobs.store.list_taken()) == []

    asyncio.run(run())


@pytest.mark.parametrize("kind", RACED_KINDS)
def test_an_upload_whose_blob_a_sweep_deleted_before_its_row_stores_it_again(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_env: Callable[[dict[str, str]], None],
) -> None:
    """The other order: process B's upload stalls past the grace (0 here) between its blob
    put and its version row, and process A's sweep takes the blob, asks the database (no row
    yet) and deletes it. B writes its row after that, so its check finds the blob gone, and it
    stores the bytes again before it answers. Each process has its own data folder (the copy
    of an upload in flight lives there), sharing the database file and the blob store."""
    backend = make_backend(request, kind, tmp_path)
    use_env(backend.env())
    url = backend.url()
    db = tmp_path / "shared.db"
    table = sample_table(80)
    data = parquet_bytes(table)
    key = blob_key(hashlib.sha256(data).hexdigest())

    async def run() -> None:
        async with (
            Process(fs_settings(tmp_path / "a", url), db) as a,
            Process(fs_settings(tmp_path / "b", url), db) as b,
        ):
            upload, row_may_go = await b.stalled_upload("late", data)
            await asyncio.sleep(1.1)  # past the second the blob was written in
            report = await a.blobs.sweep(a.store.named_blobs, grace=0)
            assert report.removed == 1
            assert not await anyio.to_thread.run_sync(b.blobs.store.exists, key)

            row_may_go.set()
            stored = await upload

            assert stored.blob is not None and blob_key(stored.blob) == key
            for process in (a, b):
                assert (await process.read(stored)).equals(table)

    asyncio.run(run())


def test_an_upload_whose_blob_and_copy_were_swept_answers_503_not_201(tmp_path: Path) -> None:
    """As above on the default layout, two processes on one data folder: the blob store is
    that folder, and so is the upload's copy in flight, which process A's sweep (grace 0)
    removes with the blob as a crash's leftover. B's version row is written, but its check
    finds neither the blob nor a copy to store again: B must not answer 201."""
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data", catalogue_url=f"http://127.0.0.1:{refused_port()}"
    )
    data = parquet_bytes(sample_table(90))

    async def run() -> None:
        async with Process(settings) as a, Process(settings) as b:
            upload, row_may_go = await b.stalled_upload("lost", data)
            await asyncio.sleep(0.05)
            report = await a.blobs.sweep(a.store.named_blobs, grace=0)
            assert report.removed == 1

            row_may_go.set()
            with pytest.raises(Unavailable) as refused:
                await upload
            # The version is stored: the client is told which, and not to send it again (a
            # new version, or a 409 with a pinned one), but what puts its file back.
            message = str(refused.value)
            assert "Version 1 of 'lost' was stored" in message
            assert "could not be confirmed in the blob store" in message
            assert "no need to send it again" in message
            assert "uploading the same file" in message

    asyncio.run(run())


@pytest.mark.parametrize("kind", RACED_KINDS)
def test_a_failed_upload_keeps_its_blob_when_another_process_stored_a_version_of_it(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_env: Callable[[dict[str, str]], None],
) -> None:
    """Process A puts a blob for version 1 of "raced", and its row is refused (409: another
    writer stored version 1 meanwhile). Before A cleans up, process B stores the same bytes as
    a version of "other": its put finds the blob, its row is written, it would answer 201.
    A's clean-up asks the database after taking the blob, and puts it back."""
    backend = make_backend(request, kind, tmp_path)
    use_env(backend.env())
    settings = fs_settings(tmp_path, backend.url())
    table = sample_table(70)
    data = parquet_bytes(table)
    key = blob_key(hashlib.sha256(data).hexdigest())

    async def run() -> None:
        async with Process(settings) as a, Process(settings) as b:
            acknowledged: list[StoredVersion] = []

            async def meanwhile(name: str, path: Path, checks: object) -> None:
                first = FeatureSetMeta(name="raced")  # type: ignore[call-arg]
                await b.service.create_table(first, one_chunk(parquet_bytes(sample_table(5))))
                other = FeatureSetMeta(name="other")  # type: ignore[call-arg]
                acknowledged.append(await b.service.create_table(other, one_chunk(data)))
                assert await anyio.to_thread.run_sync(b.blobs.store.exists, key)

            a.service.before_table = meanwhile
            with pytest.raises(Conflict):
                meta = FeatureSetMeta(name="raced", version=1)  # type: ignore[call-arg]
                await a.service.create_table(meta, one_chunk(data))

            assert acknowledged and acknowledged[0].blob is not None
            assert blob_key(acknowledged[0].blob) == key
            for process in (a, b):
                assert (await process.read(acknowledged[0])).equals(table)
            assert await anyio.to_thread.run_sync(a.blobs.store.exists, key)
            assert list(a.blobs.store.list_taken()) == []

    asyncio.run(run())


def test_a_sweep_leaves_alone_another_s3_sweeps_take_between_its_copy_and_its_delete(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_env: Callable[[dict[str, str]], None],
) -> None:
    """On S3 a take is a copy aside, then the delete of the blob. Process A's sweep has copied
    an old orphan aside and not yet deleted it; process B's sweep lists the copy among the
    leftovers of sweeps, and an upload in B stores the same bytes as a version (its put finds
    the blob and refreshes it, its row is written, its check finds the blob: a 201). Then A
    deletes the blob, asks the database, which names it now, and puts it back from its copy:
    so the copy must still be there, which it is not if B's sweep settled it (no version named
    it when B asked) as a leftover."""
    backend = make_backend(request, "s3", tmp_path)
    use_env(backend.env())
    settings = fs_settings(tmp_path, backend.url())
    table = sample_table(100)
    data = parquet_bytes(table)
    key = blob_key(hashlib.sha256(data).hexdigest())
    grace = 1.0

    async def run() -> None:
        async with Process(settings) as a, Process(settings) as b:
            assert await anyio.to_thread.run_sync(a.blobs.store.put, key, io.BytesIO(data))
            await asyncio.sleep(grace + 1.2)  # older than the grace, in whole seconds too
            acknowledged: list[StoredVersion] = []
            s3 = cast(Any, a.blobs.store)
            delete = s3._delete

            async def meanwhile() -> None:
                assert len(list(b.blobs.store.list_taken())) == 1  # A's copy aside
                await b.blobs.sweep(b.store.named_blobs, grace=3600)
                meta = FeatureSetMeta(name="again")  # type: ignore[call-arg]
                acknowledged.append(await b.service.create_table(meta, one_chunk(data)))

            def stalled_delete(name: str, blob: str) -> None:
                if name == s3._rel(key) and not acknowledged:  # the take's delete, in a thread
                    anyio.from_thread.run(meanwhile)
                delete(name, blob)

            s3._delete = stalled_delete
            report = await a.blobs.sweep(a.store.named_blobs, grace)

            assert acknowledged and acknowledged[0].blob is not None
            assert blob_key(acknowledged[0].blob) == key
            assert report.removed == 0
            for process in (a, b):
                assert (await process.read(acknowledged[0])).equals(table)
            assert list(a.blobs.store.list_taken()) == []

    asyncio.run(run())


def test_an_s3_restore_that_finds_neither_copy_nor_blob_says_so(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_env: Callable[[dict[str, str]], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A blob taken, then settled by another sweeper that deleted it, and now to be put back
    (a version names it): nothing is left to put back, and that is an error, not a no-op."""
    backend = make_backend(request, "s3", tmp_path)
    use_env(backend.env())
    store = open_blob_store(backend.url())
    try:
        key = _put_orphan(store)
        taken = store.take(key, None)
        assert taken is not None
        assert store.discard(taken)
        caplog.clear()

        store.restore(taken)

        assert not store.exists(key)
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and key in errors[0] and "cannot be put back" in errors[0]
    finally:
        store.close()


def test_an_s3_store_makes_its_bucket_when_missing(
    request: pytest.FixtureRequest, use_env: Callable[[dict[str, str]], None]
) -> None:
    server = request.getfixturevalue("s3_server")
    use_env(server.env())
    bucket = f"new-{time.time_ns()}"
    admin = server.client()
    assert bucket not in {b["Name"] for b in admin.list_buckets()["Buckets"]}

    store = open_blob_store(f"s3://{bucket}/feature-store")
    key, data = blob_key("d" * 64), b"PAR1 made in a new bucket"
    assert store.put(key, io.BytesIO(data))
    store.close()

    assert bucket in {b["Name"] for b in admin.list_buckets()["Buckets"]}
    stored_object = admin.get_object(Bucket=bucket, Key=f"feature-store/{key}")
    assert stored_object["Body"].read() == data


def test_an_upload_while_the_store_is_down_answers_503_and_keeps_nothing(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    use_env: Callable[[dict[str, str]], None],
) -> None:
    s3 = request.getfixturevalue("s3_server")
    use_env({**s3.env(), "CAIRN_HTTP_RETRIES": "2"})
    url = s3.url(s3.fresh_bucket("down"), "blobs")
    settings = fs_settings(tmp_path, url)
    body = parquet_bytes(sample_table(10))
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=120) as fs,
    ):
        s3.server.stop()
        try:
            answer = fs.post(
                "/featuresets/down/versions", content=body, headers={"content-type": PARQUET}
            )
        finally:
            s3.server.start()

        assert answer.status_code == 503, answer.text
        assert "blob store" in answer.json()["detail"]
        assert fs.get("/featuresets/down").status_code == 404
        assert stored(url) == []
        assert list((settings.featurestore_blobs / "tmp").iterdir()) == []
        # Once the store is back, the same upload goes through.
        again = fs.post(
            "/featuresets/down/versions", content=body, headers={"content-type": PARQUET}
        )
        assert again.status_code == 201, again.text
        assert again.json()["version"] == 1


def test_a_damaged_table_file_answers_503_never_a_broken_200(tmp_path: Path) -> None:
    # No background profile: it would read the file before it is damaged.
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        metrics_profiling=False,
    )
    table = sample_table(200)
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as http,
    ):
        answer = http.post(
            "/featuresets/hurt/versions",
            params={"entities": "customer_id", "timestamp": "seen_at"},
            content=parquet_bytes(table),
            headers={"content-type": PARQUET},
        )
        sha256 = answer.json()["table"]["sha256"]
        blob = settings.featurestore_blobs / sha256[:2] / f"{sha256}.parquet"
        whole = blob.read_bytes()

        blob.write_bytes(whole[: len(whole) // 2])  # a copy or restore cut short
        for accept in (PARQUET, ARROW, "application/json"):
            response = http.get("/featuresets/hurt", headers={"accept": accept})
            assert response.status_code == 503, (accept, response.text)
            detail = response.json()["detail"]
            assert "is damaged" in detail and f"{len(whole)} were stored" in detail
        assert http.post("/featuresets/hurt/materialize").status_code == 503

        # Same size, damaged inside: what is decoded before the answer starts says so too.
        flipped = bytearray(whole)
        for i in range(8, len(flipped) // 2, 7):
            flipped[i] ^= 0xFF
        blob.write_bytes(bytes(flipped))
        for params in ({"format": "json"}, {"format": "parquet", "columns": "spend"}):
            response = http.get("/featuresets/hurt", params=params)
            assert response.status_code == 503, (params, response.text)
            assert "is damaged" in response.json()["detail"]
        materialized = http.post("/featuresets/hurt/materialize")
        assert materialized.status_code == 503, materialized.text
        frame = pa.table({"customer_id": ["c00001"], "event_timestamp": [NOW]})
        joined = http.post(
            "/historical-features",
            params={"features": "hurt:spend"},
            content=parquet_bytes(frame),
            headers={"content-type": PARQUET, "accept": PARQUET},
        )
        assert joined.status_code == 503, joined.text
        assert "is damaged" in joined.json()["detail"]

        blob.write_bytes(whole)  # restored from a backup
        response = http.get("/featuresets/hurt", headers={"accept": PARQUET})
        assert response.status_code == 200
        assert pq.read_table(io.BytesIO(response.content)).equals(table)


def test_a_second_process_starting_on_the_data_folder_keeps_uploads_in_flight(
    tmp_path: Path,
) -> None:
    env = cairn_env(tmp_path / "data", CAIRN_CATALOGUE_URL=f"http://127.0.0.1:{refused_port()}")
    spools = tmp_path / "data" / "featurestore-blobs" / "tmp"
    first = ProcessServer("featurestore", env, tmp_path / "first.log").start()
    second = ProcessServer("featurestore", env, tmp_path / "second.log")
    table = sample_table(5000)
    data = parquet_bytes(table)
    rest = threading.Event()
    answers: list[httpx.Response] = []

    def body() -> Iterator[bytes]:
        yield data[:1000]
        rest.wait(60)
        yield data[1000:]

    def upload() -> None:
        answers.append(
            httpx.post(
                first.url + "/api/v1/featuresets/inflight/versions",
                content=body(),
                headers={"content-type": PARQUET},
                timeout=60,
            )
        )

    try:
        # A crash's leftover from long ago, beside the upload under way.
        stale = spools / "crashed.part"
        uploading = threading.Thread(target=upload)
        uploading.start()
        try:
            wait_for(lambda: any(spools.glob("*.part")), "the upload's spool")
            stale.write_bytes(b"PAR1 half")
            os.utime(stale, (time.time() - 7200, time.time() - 7200))
            second.start()
        finally:
            rest.set()
            uploading.join(timeout=60)
        assert answers[0].status_code == 201, answers[0].text
        assert not stale.exists()
        got = httpx.get(
            second.url + "/api/v1/featuresets/inflight", headers={"accept": PARQUET}, timeout=60
        )
        assert pq.read_table(io.BytesIO(got.content)).equals(table)
    finally:
        second.stop()
        first.stop()


def test_a_read_cache_copy_removed_behind_its_back_is_fetched_again(
    request: pytest.FixtureRequest, tmp_path: Path, use_env: Callable[[dict[str, str]], None]
) -> None:
    """An operator emptying the cache folder to free space (or another process on the same
    data folder evicting): the next read fetches the blob again rather than failing until a
    restart."""
    backend = make_backend(request, "s3", tmp_path)
    use_env(backend.env())
    settings = fs_settings(tmp_path, backend.url(), metrics_profiling=False)
    table = sample_table(50)
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=60) as http,
    ):
        answer = http.post(
            "/featuresets/cached/versions",
            content=parquet_bytes(table),
            headers={"content-type": PARQUET},
        )
        assert answer.status_code == 201, answer.text
        assert http.get("/featuresets/cached", headers={"accept": PARQUET}).status_code == 200
        cache = settings.featurestore_blobs / "cache"
        for copy in cache.iterdir():
            copy.unlink()

        for accept in (PARQUET, ARROW, "application/json"):
            response = http.get("/featuresets/cached", headers={"accept": accept})
            assert response.status_code == 200, (accept, response.text)
        again = http.get("/featuresets/cached", headers={"accept": PARQUET})
        assert pq.read_table(io.BytesIO(again.content)).equals(table)


def test_an_s3_put_finding_a_blob_too_large_to_copy_keeps_it_unrefreshed() -> None:
    """CopyObject refuses sources over 5 GiB (400 InvalidRequest), so a put that finds so large
    a blob cannot refresh its write time in place; it finds it all the same. Real objects that
    large are out of reach here: the client's answers are stubbed, as S3 gives them."""
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    key = blob_key("e" * 64)
    with Stubber(client) as stub:
        stub.add_client_error(
            "copy_object",
            service_error_code="InvalidRequest",
            service_message="The specified copy source is larger than the maximum allowable "
            "size for a copy source: 5368709120",
            http_status_code=400,
        )
        stub.add_response("head_object", {"ContentLength": 6 * 1024**3})
        store = S3BlobStore(SimpleNamespace(requests=0), client, "bucket", "blobs")  # type: ignore[arg-type]

        assert store.put(key, io.BytesIO(b"PAR1 the bytes stored already")) is False
        stub.assert_no_pending_responses()


class Refusing(LocalBlobStore):
    """A local store that refuses to take, delete or put back the blobs in ``refused``: an
    AccessDenied on one object, say."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.refused: set[str] = set()

    def _check(self, key: str) -> None:
        if key in self.refused:
            raise BlobError(f"{self.url}: {key}: S3 error AccessDenied")

    def take(self, key: str, written_before: float | None) -> str | None:
        self._check(key)
        return super().take(key, written_before)

    def restore(self, taken: str) -> None:
        self._check(taken_key(taken))
        super().restore(taken)

    def discard(self, taken: str) -> bool:
        self._check(taken_key(taken))
        return super().discard(taken)


def test_a_blob_the_store_refuses_is_left_and_the_others_are_swept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Leftovers of a sweep cut short, one the store will not delete and one (named) it will
    not put back, and an orphan it will not take: each is logged and left for the next sweep,
    and the other leftover and orphan are settled all the same, now and at every sweep."""
    store = Refusing(tmp_path / "store")
    blobs = TableBlobs(store, tmp_path / "work", TableLimits(1, 1, 1), DecodeSlots(1), 1 << 20)
    keys: dict[str, str] = {}
    for name, size in (("stuck", 10), ("named", 20), ("leftover", 30), ("fixed", 40), ("free", 50)):
        keys[name] = _put_orphan_of(store, size)
    for name in ("stuck", "named", "leftover"):  # what a sweeper killed after its takes leaves
        assert store.take(keys[name], None) is not None
    store.refused = {keys["stuck"], keys["named"], keys["fixed"]}

    async def named(hashes: list[str]) -> set[str]:
        return {h for h in hashes if blob_key(h) == keys["named"]}

    for removed in (2, 0):  # and again at the next sweep, where only the refused ones are left
        report = asyncio.run(blobs.sweep(named, grace=0))

        assert report.removed == removed
        assert {info.key for info in store.list_blobs()} == {keys["fixed"]}
        assert len(list(store.list_taken())) == 2  # "stuck" and "named", for a later sweep
    refusals = [r for r in caplog.records if "AccessDenied" in r.getMessage()]
    assert len(refusals) == 6  # the take, the delete and the restore, at each sweep
    assert [r.levelname for r in refusals if "could not put back" in r.getMessage()] == [
        "ERROR",
        "ERROR",
    ]

    store.refused = set()
    report = asyncio.run(blobs.sweep(named, grace=0))

    assert report.removed == 2  # "stuck" and "fixed"
    assert {info.key for info in store.list_blobs()} == {keys["named"]}
    assert list(store.list_taken()) == []


def _put_orphan_of(store: BlobStore, rows: int) -> str:
    data = parquet_bytes(sample_table(rows))
    key = blob_key(hashlib.sha256(data).hexdigest())
    store.put(key, io.BytesIO(data))
    return key

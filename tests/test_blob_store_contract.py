"""One contract for every BlobStore: the same tests on a local folder, on S3 (a real SeaweedFS),
on ADLS Gen2's Blob API (a real Azurite) and on HDFS (a real minicluster over WebHDFS).

Each backend makes a fresh, empty store and says how to leave what a crashed upload leaves;
the tests only use the protocol, the registry and TableBlobs (the sweeper).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest

from featurestore_service.blobstore import BlobError, BlobMissing, BlobStore, open_blob_store
from featurestore_service.blobstore.base import blob_key
from featurestore_service.blobstore.tables import TableBlobs
from featurestore_service.table_limits import TableLimits
from featurestore_service.tables import DecodeSlots
from tests.servers.fixtures import TEST_USER, AzuriteServer, HdfsServer


class Backend(ABC):
    name: str

    @abstractmethod
    def url(self) -> str:
        """A fresh, empty store."""

    def env(self) -> dict[str, str]:
        return {}

    @abstractmethod
    def leave_partial(self, store: BlobStore) -> None:
        """Leaves what an upload killed half-way leaves in this kind of store."""

    def requests(self, store: BlobStore) -> int | None:
        volume = getattr(store, "volume", None)
        return getattr(volume, "requests", None)


class LocalBackend(Backend):
    name = "local"

    def __init__(self, base: Path) -> None:
        self.base = base

    def url(self) -> str:
        return str(self.base / uuid.uuid4().hex[:8])

    def leave_partial(self, store: BlobStore) -> None:
        part = Path(store.url) / "tmp" / "crashed.part"
        part.write_bytes(b"PAR1 half")
        os.utime(part, (time.time() - 60, time.time() - 60))


class HdfsBackend(Backend):
    name = "hdfs"

    def __init__(self, server: HdfsServer) -> None:
        self.server = server

    def url(self) -> str:
        # A folder the test user may write in, and a store folder that does not exist yet:
        # the store makes it.
        folder = self.server.fresh_dir("blobs")
        self.server.admin.chmod(folder, "777")
        return self.server.url(folder + "/store")

    def env(self) -> dict[str, str]:
        return {"CAIRN_HDFS_USER": TEST_USER}

    def leave_partial(self, store: BlobStore) -> None:
        volume = store.volume  # type: ignore[attr-defined]
        volume.client.write(volume.absolute(".tmp/crashed.part"), data=b"PAR1 half")


class AdlsBackend(Backend):
    name = "adls"

    def __init__(self, server: AzuriteServer) -> None:
        self.server = server

    def url(self) -> str:
        return self.server.url(self.server.fresh_container(), "feature-store/blobs")

    def env(self) -> dict[str, str]:
        return self.server.env()

    def leave_partial(self, store: BlobStore) -> None:
        # Staged, never committed: what a process killed before its commit leaves.
        blob = store.volume.container.get_blob_client(  # type: ignore[attr-defined]
            "feature-store/blobs/" + blob_key("c" * 64)
        )
        blob.stage_block("MDAwMDAwMDA=", b"PAR1 half")


class S3Backend(Backend):
    name = "s3"

    def __init__(self, server: Any) -> None:
        self.server = server  # tests.servers.fixtures.S3Server

    def url(self) -> str:
        return self.server.url(self.server.fresh_bucket("blobs"), "feature-store/blobs")

    def env(self) -> dict[str, str]:
        return dict(self.server.env())

    def leave_partial(self, store: BlobStore) -> None:
        # Started, never completed nor aborted: what a process killed mid-upload leaves.
        s3 = cast(Any, store)
        s3.client.create_multipart_upload(
            Bucket=s3.bucket, Key="feature-store/blobs/" + blob_key("c" * 64)
        )


@pytest.fixture(params=["local", "s3", "adls", "hdfs"])
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


@pytest.fixture
def store(backend: Backend) -> Iterator[BlobStore]:
    opened = open_blob_store(backend.url())
    try:
        yield opened
    finally:
        opened.close()


def blob(size: int, seed: int = 0) -> tuple[str, bytes]:
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    data = data[:size]
    return blob_key(hashlib.sha256(data).hexdigest()), data


class Breaks(io.RawIOBase):
    """A source that gives ``first`` bytes, then fails: a disk or a client gone mid-upload."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        self.reads = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads == 1:
            return self.first
        raise OSError("the source broke off mid-upload")

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def test_put_then_get_round_trips(store: BlobStore) -> None:
    key, data = blob(3 * 1024 * 1024 + 17)

    assert store.put(key, io.BytesIO(data)) is True

    assert store.exists(key)
    with store.open(key) as handle:
        assert handle.read() == data


def test_put_of_existing_blob_keeps_it(store: BlobStore) -> None:
    key, data = blob(1000)
    assert store.put(key, io.BytesIO(data)) is True

    assert store.put(key, io.BytesIO(b"other bytes under the same key")) is False

    with store.open(key) as handle:
        assert handle.read() == data


def test_ranged_read_fetches_only_the_footer(backend: Backend, store: BlobStore) -> None:
    key, data = blob(4 * 1024 * 1024, seed=1)
    store.put(key, io.BytesIO(data))
    before = backend.requests(store)

    with store.open(key) as handle:
        assert handle.seekable()
        handle.seek(-8, io.SEEK_END)
        assert handle.read(8) == data[-8:]
        handle.seek(1000)
        assert handle.read(10) == data[1000:1010]
        fetched = getattr(handle, "bytes_fetched", None)

    if before is not None:  # a remote store: ranged requests, not the whole blob
        assert fetched is not None and fetched < len(data) // 4
        assert backend.requests(store) - before <= 4  # type: ignore[operator]


def test_missing_blob(store: BlobStore) -> None:
    key, _ = blob(10, seed=2)

    assert not store.exists(key)
    with pytest.raises(BlobMissing):
        store.open(key)
    store.delete(key)  # nothing there: no error


def test_delete(store: BlobStore) -> None:
    key, data = blob(2000, seed=3)
    other, other_data = blob(2000, seed=4)
    store.put(key, io.BytesIO(data))
    store.put(other, io.BytesIO(other_data))

    store.delete(key)

    assert not store.exists(key)
    assert store.exists(other)
    store.delete(key)


def test_list_names_every_blob_with_size_and_time(store: BlobStore) -> None:
    assert list(store.list_blobs()) == []
    started = time.time()
    made = dict(blob(500 + n, seed=10 + n) for n in range(5))
    for key, data in made.items():
        store.put(key, io.BytesIO(data))

    listed = {b.key: b for b in store.list_blobs()}

    assert set(listed) == set(made)
    assert all(listed[k].size == len(made[k]) for k in made)
    # Clocks of a server on this machine: the write time is today's, not zero or a year off.
    assert all(abs(b.modified - started) < 600 for b in listed.values())


def test_keys_are_content_addresses_only(store: BlobStore) -> None:
    for bad in ("../x.parquet", "a.parquet", "0" * 64, "../" + blob_key("0" * 64)):
        with pytest.raises(BlobError):
            store.put(bad, io.BytesIO(b"x"))
        with pytest.raises(BlobError):
            store.exists(bad)


def test_failure_mid_upload_leaves_nothing(store: BlobStore) -> None:
    key, data = blob(2 * 1024 * 1024, seed=5)

    with pytest.raises(Exception, match=r"broke off|mid-upload|cannot write"):
        store.put(key, Breaks(data[: 1024 * 1024]))  # type: ignore[arg-type]

    assert not store.exists(key)
    assert list(store.list_blobs()) == []
    # Nothing half-written waits for a sweeper either.
    assert store.remove_partial(time.time() + 3600) == 0
    # And the same bytes can be stored afterwards.
    assert store.put(key, io.BytesIO(data)) is True


def test_sweeper_removes_orphans_after_the_grace_period(
    backend: Backend, store: BlobStore, tmp_path: Path
) -> None:
    named_key, named_data = blob(1000, seed=6)
    orphan_key, orphan_data = blob(1000, seed=7)
    store.put(named_key, io.BytesIO(named_data))
    store.put(orphan_key, io.BytesIO(orphan_data))
    backend.leave_partial(store)
    blobs = TableBlobs(store, tmp_path / "work", TableLimits(1, 1, 1), DecodeSlots(1), 1 << 20)
    asked: list[list[str]] = []

    async def named(hashes: list[str]) -> set[str]:
        asked.append(hashes)
        return {h for h in hashes if blob_key(h) == named_key}

    young = asyncio.run(blobs.sweep(named, grace=3600))

    assert (young.checked, young.removed) == (2, 0)
    assert asked == []  # nothing old enough to ask the database about
    assert store.exists(orphan_key)

    report = asyncio.run(blobs.sweep(named, grace=0))

    assert (report.checked, report.removed) == (2, 1)
    assert store.exists(named_key)
    assert not store.exists(orphan_key)
    assert [b.key for b in store.list_blobs()] == [named_key]
    # What the crashed upload left is gone too (ADLS: uncommitted blocks are no blob at all).
    assert report.partial == (0 if backend.name == "adls" else 1)
    assert store.remove_partial(time.time() + 3600) == 0


def test_put_of_a_stored_blob_refreshes_its_write_time(store: BlobStore) -> None:
    """The sweeper's grace runs from a blob's write time: an upload that finds its bytes stored
    already (an orphan a crashed upload left, say) counts as a new write."""
    key, data = blob(1000, seed=20)
    assert store.put(key, io.BytesIO(data)) is True
    first = {b.key: b.modified for b in store.list_blobs()}[key]
    time.sleep(1.1)  # S3 and ADLS keep whole seconds

    assert store.put(key, io.BytesIO(data)) is False

    again = {b.key: b.modified for b in store.list_blobs()}[key]
    assert again >= first + 1
    with store.open(key) as handle:
        assert handle.read() == data


def test_an_adls_put_finding_its_blob_keeps_the_blobs_other_metadata(
    azurite_server: AzuriteServer, use_env: Callable[[dict[str, str]], None]
) -> None:
    """The refresh of a found blob wrote empty metadata, and a metadata write replaces all of
    it: whatever else the blob carried (an owner's or a retention tool's) was wiped."""
    from featurestore_service.blobstore.adls import REFRESHED

    backend = AdlsBackend(azurite_server)
    use_env(backend.env())
    store = open_blob_store(backend.url())
    try:
        key, data = blob(1000, seed=22)
        assert store.put(key, io.BytesIO(data)) is True
        client = store.volume.container.get_blob_client(  # type: ignore[attr-defined]
            "feature-store/blobs/" + key
        )
        client.set_blob_metadata({"owner": "ml-platform", "retention": "keep"})

        assert store.put(key, io.BytesIO(data)) is False

        metadata = client.get_blob_properties().metadata
        refreshed = metadata.pop(REFRESHED, "")
        assert metadata == {"owner": "ml-platform", "retention": "keep"}
        assert refreshed.isdigit(), refreshed
        with store.open(key) as handle:
            assert handle.read() == data
    finally:
        store.close()


def test_an_s3_take_past_the_copy_threshold_is_a_multipart_copy(
    s3_server: Any, use_env: Callable[[dict[str, str]], None]
) -> None:
    """CopyObject refuses sources over 5 GiB, so so large an orphan could never be copied
    aside, nor swept. A take's (and a restore's) copy from ``copy_threshold`` on is a
    multipart copy (UploadPartCopy); the threshold is lowered here to reach that path with a
    small blob on the real server, a 5 GiB object being out of reach."""
    from featurestore_service.blobstore.s3 import S3BlobStore

    backend = S3Backend(s3_server)
    use_env(backend.env())
    store = open_blob_store(backend.url())
    try:
        assert isinstance(store, S3BlobStore)
        store.copy_threshold = store.copy_part = 5 * 1024**2  # S3's smallest part
        key, data = blob(11 * 1024**2 + 7, seed=23)
        assert store.put(key, io.BytesIO(data)) is True
        calls: list[str] = []
        store.client.meta.events.register(
            "before-call.s3.*", lambda model, **_: calls.append(model.name)
        )

        assert store.take(key, time.time() - 3600) is None  # written since: not copied
        taken = store.take(key, time.time() + 60)
        assert taken is not None and not store.exists(key)
        assert list(store.list_taken()) == [taken]
        store.restore(taken)

        with store.open(key) as handle:
            assert handle.read() == data
        assert list(store.list_taken()) == []
        assert calls.count("UploadPartCopy") == 6, calls  # three parts aside, three back
        assert "CopyObject" not in calls, calls
        assert not store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads")
    finally:
        store.close()


def test_a_taken_blob_is_out_of_reach_until_restored_or_discarded(
    backend: Backend, store: BlobStore
) -> None:
    key, data = blob(1500, seed=21)
    assert store.take(key, None) is None  # nothing to take
    store.put(key, io.BytesIO(data))
    assert store.take(key, time.time() - 3600) is None  # written since
    assert store.exists(key)

    taken = store.take(key, time.time() + 60)

    assert taken is not None
    assert not store.exists(key)
    assert list(store.list_blobs()) == []
    assert store.take(key, None) is None  # one sweeper at a time
    # ADLS moves nothing (a lease), so nothing is left for a later sweep to settle.
    assert list(store.list_taken()) == ([] if backend.name == "adls" else [taken])
    # A take of a moment ago may be one under way: on S3 (a copy, then a delete) it is left
    # out when only takes older than that are asked for; a rename is never half done.
    hour_ago = time.time() - 3600
    assert list(store.list_taken(hour_ago)) == ([] if backend.name in ("adls", "s3") else [taken])

    store.restore(taken)

    assert store.exists(key)
    with store.open(key) as handle:
        assert handle.read() == data
    assert [b.key for b in store.list_blobs()] == [key]
    store.restore(taken)  # settled already: nothing happens

    taken = store.take(key, None)
    assert taken is not None
    assert store.discard(taken) is True
    assert not store.exists(key)
    assert store.discard(taken) is False
    assert list(store.list_blobs()) == []
    assert list(store.list_taken()) == []


@pytest.mark.parametrize("settle", ["restore", "discard"])
def test_a_put_while_its_blob_is_taken_leaves_it_stored(store: BlobStore, settle: str) -> None:
    """Whatever a sweeper then does with what it took, an upload that comes in meanwhile ends
    with its blob stored: its put stores the bytes afresh (on ADLS, waits for the lease)."""
    key, data = blob(1200, seed=22)
    store.put(key, io.BytesIO(data))
    taken = store.take(key, None)
    assert taken is not None

    with ThreadPoolExecutor(1) as pool:
        putting = pool.submit(store.put, key, io.BytesIO(data))
        time.sleep(0.5)
        getattr(store, settle)(taken)
        putting.result(timeout=120)

    assert store.exists(key)
    with store.open(key) as handle:
        assert handle.read() == data
    assert [b.key for b in store.list_blobs()] == [key]
    assert list(store.list_taken()) == []


def test_the_sweeper_settles_what_a_sweep_cut_short_left_taken(
    backend: Backend, store: BlobStore, tmp_path: Path
) -> None:
    named_key, named_data = blob(1000, seed=23)
    orphan_key, orphan_data = blob(1000, seed=24)
    store.put(named_key, io.BytesIO(named_data))
    store.put(orphan_key, io.BytesIO(orphan_data))
    # What a sweeper killed between its takes and its last question leaves.
    assert store.take(named_key, None) is not None
    assert store.take(orphan_key, None) is not None
    blobs = TableBlobs(store, tmp_path / "work", TableLimits(1, 1, 1), DecodeSlots(1), 1 << 20)

    async def named(hashes: list[str]) -> set[str]:
        return {h for h in hashes if blob_key(h) == named_key}

    if backend.name == "s3":
        # Taken a moment ago: as far as S3 can tell, takes under way, left alone for now.
        report = asyncio.run(blobs.sweep(named, grace=3600))
        assert report.removed == 0
        assert len(list(store.list_taken())) == 2
        blobs.taken_grace = 0  # as if TAKEN_GRACE had passed

    report = asyncio.run(blobs.sweep(named, grace=3600))

    if backend.name == "adls":
        # Held by leases that end by themselves (60 s), and still in place meanwhile.
        assert report.removed == 0
        for key, data in ((named_key, named_data), (orphan_key, orphan_data)):
            with store.open(key) as handle:
                assert handle.read() == data
        return
    assert report.removed == 1
    assert store.exists(named_key)
    assert not store.exists(orphan_key)
    assert [b.key for b in store.list_blobs()] == [named_key]
    assert list(store.list_taken()) == []

"""The feature store's read cache keeps its books on its loop's thread, whoever lets go."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from featurestore_service.blobstore.cache import ReadCache

KEY_A = "a" * 64 + ".parquet"
KEY_B = "b" * 64 + ".parquet"


def source(data: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(data)


def test_a_lease_released_in_another_thread_is_let_go_on_the_loop(tmp_path: Path) -> None:
    # Starlette runs a FileResponse's background release in a worker thread.
    cache = ReadCache(tmp_path, limit=1)
    cache.open()
    threads: list[int] = []
    release = cache._release

    def recorded(key: str) -> None:
        threads.append(threading.get_ident())
        release(key)

    cache._release = recorded  # type: ignore[method-assign]

    async def run() -> int:
        lease = await cache.checkout(KEY_A, source(b"x" * 100))
        assert lease.path.read_bytes() == b"x" * 100
        await asyncio.to_thread(lease.release)
        for _ in range(5):
            await asyncio.sleep(0)
        return threading.get_ident()

    loop_thread = asyncio.run(run())
    assert threads == [loop_thread]  # not the worker thread's: handed back to the loop
    # Released, so the one-byte cache let the copy go.
    assert cache.total == 0 and not (tmp_path / KEY_A).exists()


def test_a_lease_released_on_the_loop_is_let_go_at_once(tmp_path: Path) -> None:
    cache = ReadCache(tmp_path, limit=1)
    cache.open()

    async def run() -> None:
        lease = await cache.checkout(KEY_A, source(b"y" * 10))
        lease.release()
        # At once: the store's size check forgets a damaged copy right after releasing it.
        assert cache.total == 0 and not lease.path.exists()

    asyncio.run(run())


def test_a_lease_collected_after_the_loop_closed_raises_nothing(tmp_path: Path) -> None:
    cache = ReadCache(tmp_path, limit=1 << 20)
    cache.open()
    kept = []

    async def run() -> None:
        kept.append(await cache.checkout(KEY_B, source(b"z" * 10)))

    asyncio.run(run())
    errors: list[BaseException] = []

    def release_elsewhere() -> None:
        try:
            kept.pop().release()
            gc.collect()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=release_elsewhere)
    thread.start()
    thread.join()
    assert errors == []
    assert (tmp_path / KEY_B).exists()  # the process is ending: the copy stays for the next


def test_a_cache_used_again_on_a_new_loop_releases_on_that_loop(tmp_path: Path) -> None:
    # The feature store's blobs outlive a lifespan: an app started again (a test client in
    # a new thread) keeps the same cache, whose releases must reach the loop now running.
    cache = ReadCache(tmp_path, limit=1)
    cache.open()

    async def first() -> None:
        (await cache.checkout(KEY_A, source(b"a" * 10))).release()

    asyncio.run(first())

    async def second() -> None:
        lease = await cache.checkout(KEY_B, source(b"b" * 10))
        await asyncio.to_thread(lease.release)
        for _ in range(5):
            await asyncio.sleep(0)

    thread = threading.Thread(target=asyncio.run, args=(second(),))
    thread.start()
    thread.join()
    assert cache.total == 0 and not (tmp_path / KEY_B).exists()


def test_a_fetched_copy_is_on_disk_before_its_key_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetch renamed its file into place unsynced: a power loss could leave the key
    naming a file of the right size without its bytes, served until evicted. Now the file is
    fsynced before the rename and the folder after it. (A power loss cannot be staged here:
    the test watches the order of the calls; a fetch a crash cut short is never served.)"""
    cut_short = tmp_path / f"{'c' * 32}.part"
    cut_short.write_bytes(b"half a blob")
    cache = ReadCache(tmp_path, limit=1 << 20)
    cache.open()
    assert not cut_short.exists() and cache.total == 0
    calls: list[tuple[str, ...]] = []
    fsync, replace = os.fsync, os.replace

    def synced(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def replaced(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(("replace", os.fspath(src), os.fspath(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", replaced)
    data = bytes(range(256)) * 1000

    async def run() -> bytes:
        lease = await cache.checkout(KEY_A, source(data))
        try:
            return lease.path.read_bytes()
        finally:
            lease.release()

    assert asyncio.run(run()) == data
    folder = str(tmp_path.resolve())
    assert len(calls) == 3, calls
    part = calls[0][1]
    assert part.startswith(folder + "/") and part.endswith(".part"), calls
    assert calls == [
        ("fsync", part),
        ("replace", part, str(tmp_path / KEY_A)),
        ("fsync", folder),
    ]

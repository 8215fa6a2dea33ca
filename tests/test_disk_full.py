"""A full disk under the embedded (SQLite) store: writes answer 507 and say why, reads go on,
and writes work again once space is freed. The data folder is a real 2 MiB tmpfs."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cairn.settings import Settings
from tests.conftest import ThreadServer


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(f"this test mounts a 2 MiB tmpfs and needs root: {done.stderr}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Writes ``path`` until the file system has no byte left."""
    chunk = b"\0" * 65536
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                if len(chunk) == 1:
                    return
                chunk = chunk[: len(chunk) // 2]


def big(name: str) -> dict:
    return {"name": name, "type": "dataset", "description": name * (60_000 // len(name))}


def test_full_disk_is_507_and_writes_resume_after_space_is_freed(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(backend="sqlite", data_dir=small_disk / "data")
    from catalogue_service.app import create_app

    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=30) as api,
    ):
        assert api.put("/assets/seed", json=big("seed")).status_code == 201
        filler = small_disk / "filler"
        fill(filler)
        refused = None
        for n in range(50):  # the WAL may still hold free pages: write until it runs out
            response = api.put(f"/assets/big-{n}", json=big(f"big{n}"))
            if response.status_code != 201:
                refused = (n, response)
                break
        assert refused is not None, "the disk never filled up"
        n, response = refused
        assert response.status_code == 507, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["title"] == "Insufficient storage" and "disk" in problem["detail"]
        assert "is full" in problem["detail"]
        # The same keep-alive connection goes on serving, reads work, nothing half-written.
        assert api.get("/assets/seed").json()["name"] == "seed"
        assert api.get(f"/assets/big-{n}").status_code == 404
        assert api.get("/assets", params={"q": "seed"}).json()["total"] == 1
        again = api.post("/assets/bulk", json=[big("more")])
        assert again.status_code == 507, again.text

        filler.unlink()
        retry = api.put(f"/assets/big-{n}", json=big(f"big{n}"))
        assert retry.status_code == 201, retry.text
        assert api.get(f"/assets/big-{n}").json()["revision"] == 1
        assert api.post("/assets/bulk", json=[big("more")]).json()["created"] == 1
    log = caplog.text
    assert "cannot rollback" not in log and "unhandled error" not in log
    assert "the disk is full" in log


def test_feature_store_answers_507_on_a_full_disk(small_disk: Path) -> None:
    settings = Settings(backend="sqlite", data_dir=small_disk / "data")
    from featurestore_service.app import create_app

    def version(n: int) -> dict:
        values = [{"name": f"f{i}", "dtype": "string", "value": "x" * 2000} for i in range(30)]
        return {"name": "churn", "description": str(n), "features": values}

    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=30) as api,
    ):
        assert api.post("/featuresets", json=version(0)).status_code == 201
        filler = small_disk / "filler"
        fill(filler)
        statuses = [api.post("/featuresets", json=version(n)).status_code for n in range(1, 40)]
        assert 507 in statuses and set(statuses) <= {201, 507}, statuses
        assert api.get("/featuresets/churn").status_code == 200
        filler.unlink()
        assert api.post("/featuresets", json=version(99)).status_code == 201

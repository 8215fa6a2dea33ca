"""End to end on both backends: an ``id:`` in a manifest names the asset it declares, and
never takes over (or later soft-deletes) an asset that belongs to someone else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ProcessServer, cairn_env
from tests.test_crawl_e2e import crawl, write


@pytest.fixture
def served(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[ProcessServer]:
    """``cairn serve catalogue`` on ``backend``, with a fresh store."""
    extra = request.getfixturevalue("production_servers").env() if backend == "mongo" else {}
    env = cairn_env(tmp_path / "data", **extra)
    server = ProcessServer("catalogue", env, tmp_path / "catalogue.log").start(timeout=60)
    yield server
    server.stop()


@pytest.fixture
def api(served: ProcessServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url + "/api/v1", timeout=30) as client:
        yield client


def test_manifest_id_cannot_steal_assets(
    tmp_path: Path, served: ProcessServer, api: httpx.Client
) -> None:
    assert api.put("/assets/sales-api", json={"name": "sales_api", "type": "dataset"}).is_success
    entry = {"name": "featureset:churn", "type": "featureset", "labels": {"version": 1}}
    assert api.put("/assets/featureset:churn", json=entry).is_success
    other = tmp_path / "other"
    write(other / "owned/MANIFEST.yaml", "id: owned-1\nname: owned\ntype: dataset\n")
    code, report = crawl(other, served)
    assert code == 0 and report["created"] == 1, report
    victims = ("sales-api", "featureset:churn", "owned-1")
    before = {i: api.get(f"/assets/{i}").json() for i in victims}

    lake = tmp_path / "lake"
    thieves = {
        "t1/MANIFEST.yaml": "sales-api",
        "t2/MANIFEST.yaml": "featureset:churn",
        "t3/MANIFEST.yaml": "owned-1",
    }
    for n, (path, victim) in enumerate(sorted(thieves.items())):
        write(lake / path, f"name: thief{n}\ntype: dataset\nid: {victim}\n")
    write(lake / "ok/MANIFEST.yaml", "name: ok\ntype: dataset\nid: ok-1\n")
    code, report = crawl(lake, served)
    assert code == 2 and report["created"] == 1, report
    assert not [w for w in report["warnings"] if w.get("field") == "id"], report["warnings"]
    errors = {e["path"]: e for e in report["errors"]}
    assert set(errors) == set(thieves)
    # Both places: the manifest to fix (path, and the line of its id) and the asset's owner.
    assert (errors["t1/MANIFEST.yaml"]["line"], errors["t1/MANIFEST.yaml"]["field"]) == (3, "id")
    assert "a writer of the API" in errors["t1/MANIFEST.yaml"]["reason"]
    assert "a writer of the API" in errors["t2/MANIFEST.yaml"]["reason"]
    assert f"owned/MANIFEST.yaml on {other.as_uri()}" in errors["t3/MANIFEST.yaml"]["reason"]
    assert {i: api.get(f"/assets/{i}").json() for i in victims} == before
    assert api.get("/assets/ok-1").json()["manifest_path"] == "ok/MANIFEST.yaml"

    # The thieves' manifests go away: the next crawl soft-deletes nothing of the victims.
    for path in thieves:
        (lake / path).unlink()
    code, report = crawl(lake, served)
    assert code == 0 and report["deleted"] == 0 and report["errors"] == [], report
    assert {i: api.get(f"/assets/{i}").json() for i in victims} == before
    assert api.get("/assets/ok-1").json()["deleted"] is False


def test_a_manifest_moved_with_its_id_keeps_the_asset(
    tmp_path: Path, served: ProcessServer, api: httpx.Client
) -> None:
    lake = tmp_path / "lake"
    write(lake / "a/MANIFEST.yaml", "id: kept-1\nname: kept\ntype: dataset\ntags: [x]\n")
    write(lake / "stay/MANIFEST.yaml", "name: stay\ntype: dataset\n")
    code, report = crawl(lake, served)
    assert code == 0 and report["created"] == 2, report
    (lake / "b").mkdir()
    (lake / "a/MANIFEST.yaml").rename(lake / "b/MANIFEST.yaml")
    code, report = crawl(lake, served)
    assert code == 0 and report["errors"] == [], report
    moved = api.get("/assets/kept-1").json()
    assert moved["manifest_path"] == "b/MANIFEST.yaml" and moved["deleted"] is False, moved
    assert moved["location"].endswith("/b") and moved["tags"] == ["x"]
    assert api.get("/assets/by-name/kept").json()["id"] == "kept-1"
    # Nothing is left behind: a third crawl changes nothing and deletes nothing.
    code, report = crawl(lake, served)
    assert code == 0 and report["deleted"] == 0 and report["updated"] == 0, report
    assert api.get("/assets/kept-1").json()["deleted"] is False

"""End to end on both backends: an ``id:`` in a manifest names the asset it declares, and
never takes over (or later soft-deletes) an asset that belongs to someone else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ProcessServer
from tests.test_crawl_e2e import crawl, write


@pytest.fixture
def served(catalogue_process_on_backend: ProcessServer) -> ProcessServer:
    return catalogue_process_on_backend


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


@pytest.mark.parametrize("owner", ["api", "other volume", "same volume"])
def test_an_id_changed_to_one_another_owns_keeps_the_earlier_asset(
    tmp_path: Path, served: ProcessServer, api: httpx.Client, owner: str
) -> None:
    lake = tmp_path / "lake"
    if owner == "api":
        assert api.put("/assets/taken-1", json={"name": "owned", "type": "dataset"}).is_success
        place = "a writer of the API"
    else:
        home = lake if owner == "same volume" else tmp_path / "other"
        write(home / "o/MANIFEST.yaml", "id: taken-1\nname: owned\ntype: dataset\n")
        assert crawl(home, served)[0] == 0
        place = f"o/MANIFEST.yaml on {home.as_uri()}"
    write(lake / "m/MANIFEST.yaml", "name: mine\ntype: dataset\nid: mine-1\n")
    code, report = crawl(lake, served)
    assert code == 0 and report["created"] == 1, report
    mine = api.get("/assets/mine-1").json()
    taken = api.get("/assets/taken-1").json()

    # The id changes to one another asset holds: refused at its line, as the catalogue
    # would, and the manifest's earlier asset stays until the manifest is fixed.
    write(lake / "m/MANIFEST.yaml", "name: mine\ntype: dataset\nid: taken-1\n")
    for _ in range(2):  # and again, unchanged: read again, nothing deleted
        code, report = crawl(lake, served)
        assert code == 2 and report["deleted"] == 0 and report["created"] == 0, report
        (error,) = report["errors"]
        assert (error["path"], error["line"], error["field"]) == ("m/MANIFEST.yaml", 3, "id")
        assert "'taken-1' already belongs to asset 'owned'" in error["reason"], error
        assert place in error["reason"], error
        assert api.get("/assets/mine-1").json() == mine
        assert api.get("/assets/taken-1").json() == taken

    # Fixed: the asset moves to its new id in one crawl, its name kept (freed by the deletion
    # of the earlier id, sent in a request before the new one's write).
    write(lake / "m/MANIFEST.yaml", "name: mine\ntype: dataset\nid: mine-2\n")
    code, report = crawl(lake, served)
    assert code == 0 and report["created"] == 1 and report["deleted"] == 1, report["errors"]
    assert api.get("/assets/mine-1").json()["deleted"] is True
    assert api.get("/assets/by-name/mine").json()["id"] == "mine-2"


@pytest.mark.parametrize("owner", ["a", "o"])  # read before m, after it
def test_an_id_another_changed_manifest_holds_or_lets_go_of_in_the_same_crawl(
    tmp_path: Path, served: ProcessServer, api: httpx.Client, owner: str
) -> None:
    lake = tmp_path / "lake"
    write(lake / "m/MANIFEST.yaml", "name: mine\ntype: dataset\nid: mine-1\n")
    write(lake / f"{owner}/MANIFEST.yaml", "name: owned\ntype: dataset\nid: taken-1\n")
    assert crawl(lake, served)[1]["created"] == 2
    mine = api.get("/assets/mine-1").json()

    # The owner changes too but keeps the id: m's new id is refused, its asset stays.
    write(lake / "m/MANIFEST.yaml", "name: mine\ntype: dataset\nid: taken-1\n")
    write(lake / f"{owner}/MANIFEST.yaml", "name: owned\ntype: dataset\nid: taken-1\ntags: [x]\n")
    code, report = crawl(lake, served)
    assert code == 2 and report["deleted"] == 0, report
    assert [(e["path"], e["line"]) for e in report["errors"]] == [("m/MANIFEST.yaml", 3)]
    assert api.get("/assets/mine-1").json() == mine
    assert api.get("/assets/taken-1").json()["tags"] == ["x"]

    # The owner gives the id up while m takes it: deleted first, then taken, in one crawl.
    write(lake / f"{owner}/MANIFEST.yaml", "name: owned\ntype: dataset\nid: owned-2\n")
    code, report = crawl(lake, served)
    assert code == 0 and report["errors"] == [], report["errors"]
    taken = api.get("/assets/taken-1").json()
    assert (taken["name"], taken["manifest_path"]) == ("mine", "m/MANIFEST.yaml")
    assert api.get("/assets/owned-2").json()["name"] == "owned"
    assert api.get("/assets/mine-1").json()["deleted"] is True

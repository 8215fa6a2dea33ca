"""Drift flags of crawled datasets in the catalogue, once per backend: set beside an asset
without a new revision, kept across rewrites, a search filter (drifted=) and a facet."""

from __future__ import annotations

import httpx

from tests.test_catalogue_api import asset, seed

CRAWLED = {"volume": "file:///lake", "manifest_path": "MANIFEST.yaml"}


def flag(drifted: bool, version: int = 2, columns: tuple[str, ...] = ()) -> dict:
    return {
        "drifted": drifted,
        "columns": list(columns),
        "profile_version": version,
        "against": version - 1 if version > 1 else None,
    }


def test_drift_flag_is_a_filter_and_a_facet(api: httpx.Client) -> None:
    seed(
        api,
        [
            asset("sales", id="sales-1", tags=["sales"], **CRAWLED),
            asset("stores", id="stores-1", tags=["sales"], **CRAWLED),
            asset("orders", id="orders-1", tags=["sales"], **CRAWLED),
        ],
    )
    set_one = api.put("/assets/sales-1/drift", json=flag(True, 3, ("amount",)))
    assert set_one.status_code == 200, set_one.text
    body = set_one.json()
    assert body["revision"] == 1 and body["drift"]["columns"] == ["amount"]
    assert api.put("/assets/stores-1/drift", json=flag(False)).status_code == 200

    drifted = api.get("/assets", params={"drifted": "true"}).json()
    assert [a["name"] for a in drifted["items"]] == ["sales"]
    assert drifted["items"][0]["drift"] == flag(True, 3, ("amount",))
    stable = api.get("/assets", params={"drifted": "false", "tag": "sales"}).json()
    assert [a["name"] for a in stable["items"]] == ["stores"]
    assert stable["total"] == 1 and stable["facets"]["drift"] == {"stable": 1}
    everything = api.get("/assets", params={"tag": "sales"}).json()
    assert everything["total"] == 3
    assert everything["facets"]["drift"] == {"drifted": 1, "stable": 1}
    assert api.get("/assets", params={"name": "sal"}).json()["facets"]["drift"] == {"drifted": 1}

    # A manifest rewrite (new revision) keeps the verdict: it describes the data.
    rewritten = api.put(
        "/assets/sales-1", json=asset("sales", description="new words", tags=["sales"], **CRAWLED)
    )
    assert rewritten.status_code == 200 and rewritten.json()["revision"] == 2
    got = api.get("/assets/sales-1").json()
    assert got["description"] == "new words" and got["drift"]["drifted"] is True
    still = api.get("/assets", params={"drifted": "true"}).json()
    assert [a["description"] for a in still["items"]] == ["new words"]

    # The next profile says otherwise: the flag follows it.
    assert api.put("/assets/sales-1/drift", json=flag(False, 4)).status_code == 200
    assert api.get("/assets", params={"drifted": "true"}).json()["total"] == 0
    after = api.get("/assets", params={"tag": "sales"}).json()["facets"]["drift"]
    assert after == {"stable": 2}


def test_drift_flag_refuses_bad_input(api: httpx.Client) -> None:
    seed(api, [asset("sales", id="sales-1")])
    missing = api.put("/assets/nope/drift", json=flag(True))
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    bad = api.put("/assets/sales-1/drift", json={"drifted": "maybe", "profile_version": 0})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} >= {"drifted", "profile_version"}
    extra = api.put("/assets/sales-1/drift", json={**flag(True), "colour": "red"})
    assert extra.status_code == 422
    wrong = api.get("/assets", params={"drifted": "sometimes"})
    assert wrong.status_code == 422 and "drifted" in wrong.text
    # A writer cannot forge the verdict through the asset body: it lands in extra.
    api.put("/assets/sales-1", json=asset("sales", drift={"drifted": True}))
    assert api.get("/assets", params={"drifted": "true"}).json()["total"] == 0

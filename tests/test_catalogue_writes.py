"""Catalogue write paths on both backends: who may change an asset, what a writer is told it
wrote, concurrent writers on one asset, and values no store can keep."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from cairn.errors import InvalidRequest
from cairn.models import MAX_EXTRA_DEPTH, Asset, AssetWrite
from cairn.settings import Settings
from catalogue_service.backends.base import PreparedWrite, SearchQuery
from catalogue_service.backends.sqlite import SQLiteStore
from catalogue_service.service import Catalogue
from tests.conftest import ThreadServer, hit_ids


def asset(name: str, **fields: object) -> dict:
    return {"name": name, "type": fields.pop("type", "dataset"), **fields}


def crawled(name: str, volume: str, path: str, **fields: object) -> dict:
    return asset(name, volume=volume, manifest_path=path, **fields)


def nested(depth: int) -> dict:
    """A value with ``depth`` levels of maps (``{"k": {"k": ... 1}}``)."""
    value: object = 1
    for _ in range(depth):
        value = {"k": value}
    assert isinstance(value, dict)
    return value


# --- a crawled write may only change its own manifest's assets (H1) ----------------------------


def test_crawled_writes_cannot_take_over_other_assets(api: httpx.Client) -> None:
    lake, other = "file:///lake", "file:///other"
    api_asset = api.put("/assets/sales-api", json=asset("sales_api", description="by hand"))
    feature_entry = api.put("/assets/featureset:churn", json=asset("featureset:churn"))
    owned = api.put("/assets/owned-1", json=crawled("owned", lake, "a/MANIFEST.yaml"))
    assert {api_asset.status_code, feature_entry.status_code, owned.status_code} == {201}
    before = {i: api.get(f"/assets/{i}").json() for i in ("sales-api", "featureset:churn")}
    before["owned-1"] = api.get("/assets/owned-1").json()

    thief = "b/MANIFEST.yaml"
    body = api.post(
        "/assets/bulk",
        json=[
            crawled("stolen1", lake, thief, id="sales-api"),
            crawled("stolen2", lake, thief, id="featureset:churn"),
            crawled("stolen3", other, "a/MANIFEST.yaml", id="owned-1"),  # same path, other volume
            crawled("fine", lake, thief, id="fine-1"),
        ],
    ).json()
    # A crawl's delete, when the thief's manifest is gone.
    body2 = api.post(
        "/assets/bulk", json=[crawled("stolen4", lake, thief, id="owned-1", deleted=True)]
    ).json()
    results = body["results"] + body2["results"]
    assert [r["status"] for r in results] == ["error"] * 3 + ["created", "error"], results
    assert [r["conflict"] for r in results] == ["owner"] * 3 + [None, "owner"]
    assert body["failed"] == 3 and body["created"] == 1
    # The error names both places: the owner's and the manifest to fix.
    assert "a writer of the API" in results[0]["error"] and thief in results[0]["error"]
    assert "a/MANIFEST.yaml on file:///lake" in results[2]["error"]
    assert "a/MANIFEST.yaml on file:///lake" in results[4]["error"] and thief in results[4]["error"]
    for asset_id, was in before.items():
        assert api.get(f"/assets/{asset_id}").json() == was, asset_id

    # One PUT is refused the same way, with a 409 problem.
    put = api.put("/assets/owned-1", json=crawled("owned", lake, thief))
    assert put.status_code == 409 and put.json()["status"] == 409
    assert "a/MANIFEST.yaml" in put.json()["detail"]

    # The owner itself may change and delete its asset; an API writer may change anything.
    changed = api.put("/assets/owned-1", json=crawled("owned", lake, "a/MANIFEST.yaml", tags=["x"]))
    assert changed.status_code == 200 and changed.json()["revision"] == 2
    assert api.put("/assets/owned-1", json=asset("owned", tags=["by-hand"])).status_code == 200
    # A soft-deleted asset of the same volume is free for another manifest (a moved id).
    api.put("/assets/gone-1", json=crawled("gone", lake, "c/MANIFEST.yaml", deleted=True))
    moved = api.put("/assets/gone-1", json=crawled("gone", lake, "d/MANIFEST.yaml"))
    assert moved.status_code == 200 and moved.json()["manifest_path"] == "d/MANIFEST.yaml"


# --- a write answers with what it wrote (M6) -------------------------------------------------


def test_put_and_delete_answer_with_what_they_wrote(api: httpx.Client) -> None:
    first = api.put("/assets/w-1", json=asset("w", description="one")).json()
    assert (first["revision"], first["description"]) == (1, "one")
    deleted = api.delete("/assets/w-1").json()
    assert (deleted["revision"], deleted["deleted"], deleted["description"]) == (2, True, "one")
    again = api.delete("/assets/w-1").json()  # already deleted: nothing written
    assert again["revision"] == 2
    back = api.put("/assets/w-1", json=asset("w", description="two")).json()
    assert (back["revision"], back["deleted"], back["description"]) == (3, False, "two")


@dataclass
class Ack:
    kind: str  # "put" or "delete"
    revision: int
    description: str
    sent: str | None  # what a PUT sent


async def _race(base: str, asset_id: str, writers: int, rounds: int) -> list[Ack]:
    """``writers`` clients each send ``rounds`` PUTs (each with its own content) and DELETEs
    to one asset, in random order; returns every acknowledged write."""
    acks: list[Ack] = []

    async def writer(number: int, client: httpx.AsyncClient) -> None:
        rng = random.Random(number)
        for i in range(rounds):
            if rng.random() < 0.4:
                response = await client.delete(f"/assets/{asset_id}")
                if response.status_code == 200:
                    body = response.json()
                    acks.append(Ack("delete", body["revision"], body["description"], None))
                else:
                    assert response.status_code == 409, response.text  # kept losing: said so
            else:
                text = f"writer {number} round {i}"
                response = await client.put(
                    f"/assets/{asset_id}", json=asset("raced", description=text)
                )
                if response.status_code in (200, 201):
                    body = response.json()
                    acks.append(Ack("put", body["revision"], body["description"], text))
                else:
                    assert response.status_code == 409, response.text

    limits = httpx.Limits(max_connections=writers)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        first = await client.put(f"/assets/{asset_id}", json=asset("raced", description="seed"))
        assert first.status_code == 201
        acks.append(Ack("put", 1, "seed", "seed"))
        await asyncio.gather(*(writer(n, client) for n in range(writers)))
    return acks


def _texts(acks: list[Ack]) -> set[str]:
    return {a.description for a in acks}


def check_history(acks: list[Ack], final: dict, *, atomic: bool) -> None:
    """What concurrent writers were told must be one consistent history:

    - each PUT was told it wrote its own content (M6);
    - no two acknowledged writes got the same revision, except DELETEs of an asset that was
      already deleted (they write nothing and answer with the delete before them);
    - a DELETE deleted the revision just before its own, with that revision's content: it
      never wrote back an older copy over an acknowledged PUT (H2);
    - the final state is the acknowledged write with the highest revision.

    ``atomic=False`` is for FerretDB, whose conditional update is a query and then an update
    (not one atomic step, unlike MongoDB's): two writers computed from the same revision may
    both be acknowledged with the next one, and only one of them stays; and the slower of the
    two may land after a third writer moved the asset on from the other's revision, so the
    final state may be a write below the highest acknowledged revision. What still holds
    there: no writer is told another's content, a DELETE only ever writes the content of a
    revision just before its own, and the final state is an acknowledged write, whole.
    """
    puts = [a for a in acks if a.kind == "put"]
    wrong = [a for a in puts if a.description != a.sent]
    assert not wrong, f"{len(wrong)} PUTs were answered with another writer's content: {wrong[:3]}"
    by_revision: dict[int, list[Ack]] = {}
    for ack in sorted(acks, key=lambda a: (a.revision, a.kind != "put")):
        same = by_revision.setdefault(ack.revision, [])
        if same and atomic:
            seen = same[0]
            assert ack.kind == seen.kind == "delete" and ack.description == seen.description, (
                f"two writes were acknowledged with revision {ack.revision}: {seen} and {ack}"
            )
        same.append(ack)
    lost = []
    for revision, same in by_revision.items():
        for ack in same:
            before = by_revision.get(revision - 1, [])
            if ack.kind == "delete" and before and ack.description not in _texts(before):
                lost.append((before[0], ack))
    assert not lost, (
        f"{len(lost)} DELETEs wrote back a stale copy over an acknowledged PUT, e.g. {lost[0]}"
    )
    last = by_revision[max(by_revision)]
    if not atomic:
        written = {(a.revision, a.description, a.kind == "delete") for a in acks}
        assert (final["revision"], final["description"], final["deleted"]) in written, final
        return
    assert final["revision"] == last[0].revision
    assert (final["description"], final["deleted"]) in {
        (a.description, a.kind == "delete") for a in last
    }


def test_concurrent_puts_and_deletes_keep_every_acknowledged_write(
    catalogue: ThreadServer, api: httpx.Client, backend: str
) -> None:
    acks = asyncio.run(_race(catalogue.url + "/api/v1", "raced-1", writers=12, rounds=25))
    check_history(acks, api.get("/assets/raced-1").json(), atomic=backend == "sqlite")


# --- values no store can keep are refused per item (M4) ----------------------------------------


def test_deep_extra_is_refused_per_item(api: httpx.Client) -> None:
    deep = asset("deep", extra=nested(255))
    single = api.put("/assets/deep-1", json=deep)
    assert single.status_code == 422, single.text
    assert single.headers["content-type"].startswith("application/problem+json")
    assert f"more than {MAX_EXTRA_DEPTH} levels" in single.json()["detail"]
    assert single.json()["errors"][0]["field"] == "extra"

    body = api.post(
        "/assets/bulk",
        json=[
            asset("before"),
            deep,
            asset("edge", extra=nested(MAX_EXTRA_DEPTH)),  # extra itself is the first level
            asset("past_edge", extra=nested(MAX_EXTRA_DEPTH + 1)),
            asset("after"),
        ],
    )
    assert body.status_code == 200, body.text
    statuses = [r["status"] for r in body.json()["results"]]
    assert statuses == ["created", "error", "created", "error", "created"]
    assert "nested more than" in body.json()["results"][1]["error"]
    assert api.get("/assets/by-name/after").status_code == 200
    # An integer JSON can carry but no store can (past 64 bits) is refused the same way.
    huge = api.put("/assets/huge-1", json=asset("huge", extra={"n": 2**70}))
    assert huge.status_code == 422 and "64-bit" in huge.json()["detail"]
    # The bulk route (parsed by orjson, which would round it to a float) refuses it too, and
    # a long run of digits inside a string is only text.
    mixed = api.post(
        "/assets/bulk",
        json=[asset("huge", labels={"n": 2**70}), asset("digits", description="1" * 40)],
    )
    assert [r["status"] for r in mixed.json()["results"]] == ["error", "created"], mixed.text
    assert "64-bit" in mixed.json()["results"][0]["error"]
    assert api.get("/assets/by-name/digits").json()["description"] == "1" * 40


# --- one bulk request mixing new assets, renames and conflicts among its own items ------------


def test_a_batch_sees_its_own_new_assets(api: httpx.Client, backend: str) -> None:
    """New assets of a batch are stored together at its end (sqlite): an item that conflicts
    with one of them, a rename that frees a name a later new asset takes, and the search
    index and tag counts must all see them as if each were written in turn."""
    lake = "file:///lake"
    assert api.put("/assets/old-1", json=asset("old_name", tags=["batch-t"])).status_code == 201
    taker = asset("old_name", id="new-3", tags=["batch-t"], description="zebrafinch words")
    items = [
        crawled("fresh", lake, "x/MANIFEST.yaml", id="new-1", tags=["batch-t"]),
        asset("fresh", id="new-2"),  # the name is held by new-1, from this same batch
        asset("renamed", id="old-1", tags=["batch-t", "other-t"]),  # frees old_name
    ]
    # The mongo store checks names against what was stored before the batch, so there a
    # name freed by an item is free for the next request only.
    same_batch = backend == "sqlite"
    body = api.post("/assets/bulk", json=[*items, taker] if same_batch else items).json()
    if not same_batch:
        assert api.post("/assets/bulk", json=[taker]).json()["created"] == 1
    statuses = [r["status"] for r in body["results"]]
    assert statuses[:3] == ["created", "error", "updated"], body
    assert statuses[3:] == (["created"] if same_batch else [])
    assert body["results"][1]["conflict"] == "name"
    assert "new-1" in body["results"][1]["error"]
    # The holder's manifest, though it was written in this same batch.
    assert "x/MANIFEST.yaml" in body["results"][1]["error"]
    assert api.get("/assets/by-name/old_name").json()["id"] == "new-3"
    assert api.get("/assets/by-name/renamed").json()["id"] == "old-1"
    assert api.get("/assets/new-2").status_code == 404
    found = api.get("/assets", params={"q": "zebrafinch"}).json()
    assert [i["id"] for i in found["items"]] == ["new-3"]
    tagged = api.get("/assets", params={"tag": "batch-t"}).json()
    assert tagged["total"] == 3
    assert tagged["facets"]["tags"] == {"batch-t": 3, "other-t": 1}
    # A later batch's new assets come after this one's (no row number is given twice).
    more = api.post("/assets/bulk", json=[asset(f"later_{i}", tags=["batch-t"]) for i in range(3)])
    assert more.json()["created"] == 3
    assert api.get("/assets", params={"tag": "batch-t"}).json()["total"] == 6


# --- assets stored before a write rule was tightened ---------------------------------------------


def test_an_asset_stored_before_a_write_rule_is_read_and_deleted(tmp_path: Path) -> None:
    # Write rules tighten (a password in location, ids '.' and '..', characters an id may
    # hold, the types CAIRN_EXTRA_TYPES allows): an asset stored before one is read back as
    # stored and can still be soft-deleted, never a 500. Written into the store directly, as
    # an older Cairn (or configuration) let them in.
    legacy = [
        asset("old_dots", id=".."),
        asset("old_pw", id="old-pw", location="postgres://etl:s3cret@db/x"),
        asset("old_space", id="old id"),
        # A type CAIRN_EXTRA_TYPES allowed once, and no longer.
        asset("old_kind", id="old-kind", type="notebook_v0"),
    ]

    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "catalogue.db")
        await store.open()
        try:
            await store.upsert(
                [
                    PreparedWrite(n, AssetWrite.model_construct(), doc, f"hash-{n}")
                    for n, doc in enumerate(legacy)
                ],
                datetime.now(UTC),
            )
            catalogue = Catalogue(store, Settings(data_dir=tmp_path))
            # Its type is still searchable (the type facets list it), though no longer
            # one a write may have; a type no asset has is refused.
            kept = await catalogue.search(SearchQuery(type="notebook_v0"))
            assert hit_ids(kept) == ["old-kind"]
            with pytest.raises(InvalidRequest, match="type 'notebook_v1' is not one of"):
                await catalogue.search(SearchQuery(type="notebook_v1"))
            for doc in legacy:
                assert (await catalogue.get(doc["id"])).name == doc["name"]
                deleted = await catalogue.delete(doc["id"])
                assert deleted.deleted and deleted.revision == 2, deleted
                assert deleted.location == doc.get("location")
                assert (await catalogue.get(doc["id"])).deleted
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_reader_takes_an_asset_of_a_type_only_the_writer_allows() -> None:
    # The UI and the clients read assets as Asset models, with their own settings: an asset
    # of a type the catalogue's CAIRN_EXTRA_TYPES allows made the UI without that setting say
    # "Catalogue unavailable" for its page and every search that listed it.
    stored = asset("board", id="d1", type="dashboard", revision=1)
    assert Asset.model_validate(stored).type == "dashboard"
    with pytest.raises(ValidationError, match="type 'dashboard' is not one of"):
        AssetWrite.model_validate(stored)

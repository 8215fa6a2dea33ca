"""A name prefix, type, tags, labels and owner together: every combination finds what a plain
reading of the filters finds, in name order across pages, with the same total and facets, on
both backends.

The embedded store picks how to walk each search (a short name prefix from the name index
with the other filters checked per asset, a common tag from the name index, a rare one from
its list of assets, a long prefix left to SQLite) and counts the total and facets in one
statement; the catalogue here is big enough that each way is taken, and the reference below
knows nothing of them."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import httpx

DOMAINS = ("sales", "supply", "support", "stores", "ops")  # four in five names start with "s"
ENTITIES = ("orders", "items", "users")
TAGS = tuple(f"t{i}" for i in range(8))
OWNERS = tuple(f"o{i}@example.com" for i in range(4))
TYPES = (("dataset", 6), ("table", 3), ("report", 1))
COUNT = 3_000  # "s" then holds 2,400 names: more than a prefix the store walks itself
DELETED = 40


def _assets() -> list[dict[str, Any]]:
    rng = random.Random(3)
    types = [kind for kind, weight in TYPES for _ in range(weight)]
    assets = []
    for i in range(COUNT):
        tags = {TAGS[min(int(rng.expovariate(0.6)), len(TAGS) - 1)] for _ in range(3)}
        assets.append(
            {
                "id": f"a{i:04d}",
                "name": f"{rng.choice(DOMAINS)}_{rng.choice(ENTITIES)}_{i:04d}",
                "type": rng.choice(types),
                "tags": sorted(tags),
                "owners": [rng.choice(OWNERS)],
                "labels": {"tier": rng.choice(("gold", "silver", "bronze"))},
            }
        )
    return assets


def _matches(asset: dict[str, Any], params: list[tuple[str, str]]) -> bool:
    for key, value in params:
        if key == "name" and not asset["name"].lower().startswith(value.lower()):
            return False
        if key == "type" and asset["type"] != value:
            return False
        if key == "tag" and value not in asset["tags"]:
            return False
        if key == "owner" and value not in asset["owners"]:
            return False
        if key == "label":
            label, wanted = value.split(":", 1)
            if asset["labels"].get(label) != wanted:
                return False
        if key == "drifted":
            return False  # nothing here was ever profiled
    return ("include_deleted", "true") in params or not asset.get("deleted")


def _ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))


COMBINATIONS = [
    [("name", "sales_orders_"), ("type", "table")],
    [("name", "SALES_orders_"), ("tag", "t2")],
    [("name", "sa"), ("tag", "t1")],
    [("name", "s"), ("type", "report")],
    [("name", "s"), ("tag", "t3"), ("tag", "t1")],
    [("name", "sup"), ("label", "tier:gold")],
    [("name", "st"), ("owner", "o2@example.com")],
    [("name", "s"), ("owner", "o1@example.com"), ("type", "dataset")],
    [("name", "supp"), ("tag", "t0"), ("label", "tier:silver"), ("owner", "o3@example.com")],
    [("tag", "t0"), ("type", "dataset")],
    [("tag", "t0"), ("label", "tier:silver")],
    [("tag", "t6"), ("type", "table")],
    [("name", "sales_"), ("type", "table"), ("include_deleted", "true")],
    [("name", "sa"), ("drifted", "true")],
]


def _load(api: httpx.Client) -> list[dict[str, Any]]:
    assets = _assets()
    for start in range(0, COUNT, 1_000):
        answer = api.post("/assets/bulk", json=assets[start : start + 1_000])
        assert answer.status_code == 200, answer.text
    for asset in random.Random(5).sample(assets, DELETED):
        assert api.delete(f"/assets/{asset['id']}").status_code == 200
        asset["deleted"] = True
    return assets


def _listed(api: httpx.Client, params: list[tuple[str, str]]) -> list[str]:
    """Ids of every page, following the cursors."""
    listed: list[str] = []
    cursor = None
    while True:
        page = [*params, ("limit", "400"), ("facets", "false")]
        answer = api.get("/assets", params=page + ([("cursor", cursor)] if cursor else []))
        assert answer.status_code == 200, answer.text
        listed += [item["id"] for item in answer.json()["items"]]
        cursor = answer.json()["next_cursor"]
        if not cursor:
            return listed


def test_filters_together_find_what_each_finds(api: httpx.Client) -> None:
    # One catalogue for every combination: loading it is most of the time.
    loaded = _load(api)
    for params in COMBINATIONS:
        asked = "&".join(f"{k}={v}" for k, v in params)
        expected = sorted(
            (a for a in loaded if _matches(a, params)), key=lambda a: a["name"].lower()
        )
        first = api.get("/assets", params=[*params, ("limit", "20")])
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["total"] == len(expected), asked
        types = Counter(a["type"] for a in expected)
        assert list(body["facets"]["types"].items()) == _ranked(types), asked
        tags = Counter(tag for a in expected for tag in a["tags"])
        assert list(body["facets"]["tags"].items()) == _ranked(tags), asked
        assert body["facets"]["drift"] == {}, asked
        # Every page, in name order, each match once.
        assert _listed(api, params) == [a["id"] for a in expected], asked

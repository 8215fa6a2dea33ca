"""Judged queries: what a search should find first, typos included, on every backend.

Part of the catalogue contract suite (the ``api`` fixture runs each test on sqlite and on
MongoDB + Elasticsearch). Each judgement names the asset(s) a query must rank first, so a
change of ranking or of the typo fallback shows up here as a failed judgement.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import httpx
import pytest

from cairn.settings import Settings
from catalogue_service.backends.base import SearchQuery
from tests.conftest import ThreadServer, backend_settings


def asset(name: str, **fields: object) -> dict:
    return {"name": name, "type": fields.pop("type", "dataset"), **fields}


# Twelve assets about sales (so "sales" is a popular word), and a few others.
CORPUS = [
    asset(
        "sales_daily",
        description="Daily sales per store, deduplicated.",
        tags=["sales", "daily", "gold"],
        schema=[{"name": "store_id", "type": "int64"}, {"name": "amount", "type": "double"}],
    ),
    asset("sales_raw", description="Raw sales events from the tills.", tags=["sales", "raw"]),
    asset("sales_weekly", description="Weekly sales rollup.", tags=["sales", "weekly"]),
    *[
        asset(f"region_{r}_sales", description=f"Sales of the {r} region.", tags=["sales"])
        for r in ("north", "south", "east", "west", "central", "islands", "alpine", "coast")
    ],
    asset("sales_forecast", type="model", description="Sales forecast.", tags=["sales", "ml"]),
    asset("churn_model", type="model", description="Predicts customer churn.", tags=["ml", "gold"]),
    asset("customers", type="table", description="Customer master data.", tags=["reference"]),
    asset("weekly_report", type="report", description="Weekly revenue report.", tags=["finance"]),
    asset("inventory_snapshot", description="Stock levels per warehouse.", tags=["logistics"]),
    # A typo that made it into one description: the word is known, but rare.
    asset("returns_log", description="Returns and salse adjustments.", tags=["finance"]),
]


@dataclass(frozen=True)
class Judgement:
    params: dict[str, str]
    first: list[str]  # the names the first results must be, in this order
    contains: set[str] = field(default_factory=set)  # and these anywhere on the first page
    did_you_mean: str | None = None
    fuzzy: bool = False


JUDGEMENTS = [
    # Exact name, and its prefix: the exact name ranks first.
    Judgement({"q": "sales_daily"}, ["sales_daily"]),
    Judgement({"q": "customers"}, ["customers"]),
    Judgement({"q": "inven"}, ["inventory_snapshot"]),
    Judgement({"name": "sales_"}, ["sales_daily", "sales_forecast", "sales_raw", "sales_weekly"]),
    # Several words, in any order; words of descriptions and columns count.
    Judgement({"q": "daily sales"}, ["sales_daily"]),
    Judgement({"q": "store amount"}, ["sales_daily"]),
    Judgement({"q": "weekly revenue"}, ["weekly_report"]),
    # Tags (filters: AND), with and without words.
    Judgement({"tag": "gold"}, ["churn_model", "sales_daily"]),
    Judgement({"q": "churn", "tag": "ml"}, ["churn_model"]),
    # Typos: a swap, a missing letter, an extra letter, a wrong first letter, two words.
    Judgement({"q": "salse daily"}, ["sales_daily"], did_you_mean="sales daily", fuzzy=True),
    Judgement({"q": "churn modle"}, ["churn_model"], did_you_mean="churn model", fuzzy=True),
    Judgement({"q": "weekly reprot"}, ["weekly_report"], did_you_mean="weekly report", fuzzy=True),
    Judgement({"q": "custmers"}, ["customers"], did_you_mean="customers", fuzzy=True),
    Judgement({"q": "inventoryy"}, ["inventory_snapshot"], did_you_mean="inventory", fuzzy=True),
    Judgement({"q": "wustomer"}, ["customers"], did_you_mean="customer", fuzzy=True),
    Judgement({"q": "forcast"}, ["sales_forecast"], did_you_mean="forecast", fuzzy=True),
    # The corrected last word still matches as a prefix: "customer" finds customers.
    Judgement({"q": "custmer"}, [], {"customers"}, did_you_mean="customer", fuzzy=True),
    # A typo with a tag filter: the filter still applies to the corrected query.
    Judgement({"q": "slaes", "tag": "gold"}, ["sales_daily"], did_you_mean="sales", fuzzy=True),
    # A rare word with a popular neighbour: its one asset is the answer, "sales" is offered.
    Judgement({"q": "salse"}, ["returns_log"], did_you_mean="sales"),
    # Spelt right and found: nothing to suggest.
    Judgement({"q": "returns"}, ["returns_log"]),
    Judgement({"q": "salse adjustments"}, ["returns_log"]),
]


def _check(api: httpx.Client, judgement: Judgement) -> None:
    response = api.get("/assets", params=judgement.params)
    assert response.status_code == 200, response.text
    body = response.json()
    found = [item["name"] for item in body["items"]]
    assert found[: len(judgement.first)] == judgement.first, (judgement.params, found)
    assert judgement.contains <= set(found), (judgement.params, found)
    assert body["did_you_mean"] == judgement.did_you_mean, (judgement.params, body)
    assert body["fuzzy"] is judgement.fuzzy, (judgement.params, body)


def test_judged_queries(api: httpx.Client) -> None:
    seeded = api.post("/assets/bulk", json=CORPUS).json()
    assert seeded["failed"] == 0, seeded
    failures = []
    for judgement in JUDGEMENTS:
        try:
            _check(api, judgement)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


def test_unknown_words_get_no_suggestion(api: httpx.Client) -> None:
    api.post("/assets/bulk", json=CORPUS).raise_for_status()
    for q in ["xyzzy", "qqqqqq plugh", "zq", "2024"]:
        body = api.get("/assets", params={"q": q}).json()
        assert body["items"] == [] and body["total"] == 0, (q, body)
        assert body["did_you_mean"] is None and body["fuzzy"] is False, (q, body)


def test_fuzzy_results_page_with_cursors(api: httpx.Client) -> None:
    api.post("/assets/bulk", json=CORPUS).raise_for_status()
    exact = api.get("/assets", params={"q": "region sales", "limit": 100}).json()
    assert exact["total"] == 8
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"q": "regoin sales", "limit": "3", **({"cursor": cursor} if cursor else {})}
        body = api.get("/assets", params=params).json()
        assert body["fuzzy"] is True and body["did_you_mean"] == "region sales", body
        assert body["total"] == 8
        seen += [item["name"] for item in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    # The typed query's pages are the corrected query's pages, in the same order.
    assert seen == [item["name"] for item in exact["items"]]


def test_words_that_left_the_index_are_not_suggested(api: httpx.Client) -> None:
    api.put("/assets/q1", json=asset("quarterly_totals")).raise_for_status()
    body = api.get("/assets", params={"q": "quartrly"}).json()
    assert [i["name"] for i in body["items"]] == ["quarterly_totals"] and body["fuzzy"] is True
    # Renamed: no asset holds "quarterly" any more, so nothing is offered for its typo.
    api.put("/assets/q1", json=asset("annual_totals")).raise_for_status()
    body = api.get("/assets", params={"q": "quartrly"}).json()
    assert body["items"] == [] and body["did_you_mean"] is None, body
    assert api.get("/assets", params={"q": "anual"}).json()["did_you_mean"] == "annual"


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_typo_tolerance_can_be_turned_off(
    request: pytest.FixtureRequest, backend: str, tmp_path
) -> None:
    settings = backend_settings(request, backend, data_dir=tmp_path, search_typo_below=0)
    assert isinstance(settings, Settings)
    from catalogue_service.app import create_app

    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url + "/api/v1") as client,
    ):
        client.post("/assets/bulk", json=CORPUS).raise_for_status()
        body = client.get("/assets", params={"q": "salse daily"}).json()
        assert body["items"] == [] and body["did_you_mean"] is None and body["fuzzy"] is False


def test_sqlite_vocabulary_is_built_for_a_file_that_predates_it(tmp_path: Path) -> None:
    """A catalogue file written before the vocabulary existed gets it built on open."""
    from catalogue_service.backends.sqlite import SQLiteStore
    from catalogue_service.service import Catalogue

    path = tmp_path / "catalogue.db"

    async def write_and_ask(seed: bool) -> list[str | None]:
        store = SQLiteStore(path)
        await store.open()
        catalogue = Catalogue(store, Settings(data_dir=tmp_path))
        try:
            if seed:
                await catalogue.bulk(CORPUS)
            answers = []
            for q in ("salse daily", "churn modle"):
                hits = await catalogue.search(SearchQuery(q=q), typos=True)
                answers.append(hits.did_you_mean)
            return answers
        finally:
            await store.close()

    def vocabulary() -> list[tuple[str, int]]:
        with sqlite3.connect(path) as conn:
            return conn.execute("SELECT term, uses FROM search_terms ORDER BY term").fetchall()

    assert anyio.run(write_and_ask, True) == ["sales daily", "churn model"]
    kept_on_writes = vocabulary()
    assert ("sales", 36) in kept_on_writes  # 12 assets, each in its name, tags and description
    with sqlite3.connect(path) as conn:  # as an older Cairn left it
        conn.execute("DROP TABLE search_terms")
        conn.execute("DELETE FROM meta WHERE key = 'vocabulary_version'")
    assert anyio.run(write_and_ask, False) == ["sales daily", "churn model"]
    assert vocabulary() == kept_on_writes


# Whole words that begin longer ones ("sales" in "salesforce"): the longer word's asset says
# it more often, in more fields, so a prefix match alone ranked it first.
BEGINS_CORPUS = [
    asset(
        "salesforce_accounts",
        description="Salesforce accounts, synced from Salesforce by the Salesforce connector.",
        tags=["salesforce", "salesforce-sync", "crm"],
    ),
    asset("store_sales", description="Sales per store.", tags=["retail"]),
    asset("sales_daily", description="Daily totals per store.", tags=["sales"]),
    asset(
        "customers_raw",
        description="Customers as the CRM exports them: customers, customers' addresses.",
        tags=["customers", "raw"],
    ),
    asset("customer_360", description="One row per shopper.", tags=["gold"]),
]


@pytest.mark.parametrize(
    ("q", "whole", "longer"),
    [
        ("sales", {"store_sales", "sales_daily"}, "salesforce_accounts"),
        ("customer", {"customer_360"}, "customers_raw"),
    ],
)
def test_a_whole_word_ranks_above_longer_words_it_begins(
    api: httpx.Client, q: str, whole: set[str], longer: str
) -> None:
    assert api.post("/assets/bulk", json=BEGINS_CORPUS).json()["failed"] == 0
    found = [item["name"] for item in api.get("/assets", params={"q": q}).json()["items"]]
    # The longer word still matches (search as you type), after every whole-word match.
    assert set(found[: len(whole)]) == whole and longer in found[len(whole) :], (q, found)


@pytest.mark.parametrize("q", ["sales _", "_ sales", "sales __ daily", "sales-_"])
def test_a_run_of_underscores_in_a_query_changes_nothing(api: httpx.Client, q: str) -> None:
    # Underscores alone hold no word on either backend; on SQLite that empty phrase, joined
    # with AND to the others, matched nothing.
    api.post("/assets/bulk", json=CORPUS).raise_for_status()
    plain = " ".join(w for w in q.replace("-", " ").split() if w.strip("_"))
    expected = {item["name"] for item in api.get("/assets", params={"q": plain}).json()["items"]}
    found = {item["name"] for item in api.get("/assets", params={"q": q}).json()["items"]}
    assert expected and found == expected, (q, found, expected)

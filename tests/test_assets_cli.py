"""``cairn assets``: search, get, lineage, tags and delete against a real catalogue, on both
backends (in-process with CliRunner; one run through the installed entry point)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from cairn.cli import app
from cairn.client import CatalogueClient
from cairn.settings import Settings
from tests.conftest import ThreadServer, cairn_env, run_cairn

ASSETS = [
    {
        "id": "raw-orders",
        "name": "orders_raw",
        "type": "dataset",
        "tags": ["sales", "raw"],
        "owners": ["ana@example.com"],
        "location": "file:///lake/raw/orders",
        "format": "parquet",
        "schema": [
            {"name": "order_id", "type": "int64", "nullable": False},
            {"name": "amount", "type": "double", "description": "in euros"},
        ],
        "labels": {"tier": "bronze"},
        "volume": "file:///lake",
        "manifest_path": "raw/orders/MANIFEST.yaml",
    },
    {
        "id": "daily",
        "name": "sales_daily",
        "type": "table",
        "description": "Revenue per shop and day",
        "tags": ["sales", "gold"],
        "depends_on": ["orders_raw", "shops_raw"],
    },
    {
        "id": "report",
        "name": "weekly_report",
        "type": "report",
        "tags": ["sales", "report", "a-tag-that-is-long", "another-long-tag-name"],
        "depends_on": ["sales_daily", "orders_raw"],
    },
]


def _run(catalogue: ThreadServer, *args: str) -> Result:
    return CliRunner().invoke(app, ["assets", args[0], "--url", catalogue.url, *args[1:]])


@pytest.fixture
def seeded(catalogue: ThreadServer) -> ThreadServer:
    """The catalogue holding ``ASSETS``."""
    with CatalogueClient(catalogue.url) as client:
        answer = client.bulk(ASSETS)  # type: ignore[arg-type]
    assert answer.created == len(ASSETS), answer
    return catalogue


def test_search_lists_matches_with_a_total_and_says_when_there_are_more(
    seeded: ThreadServer,
) -> None:
    found = _run(seeded, "search", "sales")
    assert found.exit_code == 0, found.output
    lines = found.output.splitlines()
    assert lines[0].split() == ["name", "type", "tags", "updated"]
    assert {line.split()[0] for line in lines[1:4]} == {
        "orders_raw",
        "sales_daily",
        "weekly_report",
    }
    assert lines[-1] == "3 assets"
    # Columns line up under the header whatever the names' lengths.
    column = lines[0].index("type")
    assert all(line[column - 2 : column] == "  " for line in lines[1:4]), lines
    # Tags past the column's width end in "...": `get` shows them all.
    report = next(line for line in lines if line.startswith("weekly_report"))
    assert "sales, report, a-tag-that-is-long, an..." in report
    # Drift filters reach the API: nothing here was ever profiled.
    assert _run(seeded, "search", "sales", "--drifted").output == "No asset matches.\n"
    assert _run(seeded, "search", "sales", "--stable").output == "No asset matches.\n"
    gold = _run(seeded, "search", "--tag", "sales", "--tag", "gold", "--type", "table")
    assert [line.split()[0] for line in gold.output.splitlines()[1:-1]] == ["sales_daily"]
    assert gold.output.splitlines()[-1] == "1 asset"
    owned = _run(seeded, "search", "--owner", "ana@example.com", "--label", "tier:bronze")
    assert [line.split()[0] for line in owned.output.splitlines()[1:-1]] == ["orders_raw"]
    none = _run(seeded, "search", "--tag", "nothing-carries-this")
    assert none.exit_code == 0 and none.output == "No asset matches.\n"
    as_json = orjson.loads(_run(seeded, "search", "--name", "week", "--json").output)
    assert [item["name"] for item in as_json["items"]] == ["weekly_report"]
    assert as_json["total"] == 1


@pytest.mark.parametrize("words", [["sales"], ["--tag", "sales"], ["salse"]])
def test_search_pages_on_with_the_cursor_each_page_prints(
    seeded: ThreadServer, words: list[str]
) -> None:
    # By score, by name, and a misspelt query read as another: each page's footer gives the
    # cursor of the next one, and following them lists every match once.
    names: list[str] = []
    footers: list[str] = []
    cursor: list[str] = []
    for _ in range(5):
        page = _run(seeded, "search", *words, "--limit", "1", *cursor)
        assert page.exit_code == 0, page.output
        lines = page.output.splitlines()
        footers.append(lines[-1])
        names.append(lines[-2].split()[0])
        if "--cursor" not in lines[-1]:
            break
        cursor = ["--cursor", lines[-1].rsplit(" ", 1)[1]]
    assert sorted(names) == ["orders_raw", "sales_daily", "weekly_report"], footers
    assert footers[0].startswith("3 assets; the first 1 shown, the next with --cursor ")
    assert footers[1].startswith("3 assets; these 1 shown, the next with --cursor ")
    assert footers[2] == "3 assets; the last 1 shown"
    broken = _run(seeded, "search", *words, "--cursor", "not-a-cursor")
    assert broken.exit_code == 1 and "cursor" in broken.output.lower(), broken.output


def test_search_says_what_a_misspelt_query_was_read_as(seeded: ThreadServer) -> None:
    typo = _run(seeded, "search", "revanue")
    assert typo.exit_code == 0, typo.output
    lines = typo.output.splitlines()
    assert lines[0] == "Nothing matches 'revanue'; these match 'revenue':", lines
    assert lines[2].split()[0] == "sales_daily"


def test_get_shows_an_asset_by_id_or_by_name(seeded: ThreadServer) -> None:
    by_id = _run(seeded, "get", "raw-orders")
    by_name = _run(seeded, "get", "orders_raw")
    assert by_id.exit_code == by_name.exit_code == 0, by_id.output
    assert by_id.output == by_name.output
    lines = by_id.output.splitlines()
    assert lines[0] == "orders_raw (dataset, revision 1)"
    fields = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in lines[1:9]}
    assert fields["id"] == "raw-orders"
    assert fields["location"] == "file:///lake/raw/orders (parquet)"
    assert fields["owners"] == "ana@example.com"
    assert fields["label tier"] == "bronze"
    assert fields["manifest"] == "raw/orders/MANIFEST.yaml in file:///lake"
    assert "  schema, 2 columns:" in lines
    assert lines[-2].split() == ["order_id", "int64", "not", "null"]
    assert lines[-1].split() == ["amount", "double", "in", "euros"]
    daily = _run(seeded, "get", "sales_daily").output
    assert "depends on:  orders_raw, shops_raw" in daily
    assert "description: Revenue per shop and day" in daily
    as_json = orjson.loads(_run(seeded, "get", "daily", "--json").output)
    assert as_json["name"] == "sales_daily" and as_json["depends_on"] == ["orders_raw", "shops_raw"]
    missing = _run(seeded, "get", "Orders_Raw")
    assert missing.exit_code == 1
    assert "No asset has id or name 'Orders_Raw' (names are case-sensitive)" in missing.output
    assert "cairn assets search Orders_Raw" in missing.output


def test_lineage_is_two_trees_each_asset_listed_once(seeded: ThreadServer) -> None:
    up = _run(seeded, "lineage", "weekly_report")
    assert up.exit_code == 0, up.output
    # weekly_report is made from sales_daily and orders_raw; sales_daily from orders_raw too
    # and from shops_raw, which the catalogue does not hold. orders_raw is listed where it is
    # nearest the root, and as a reference under sales_daily.
    assert up.output.splitlines() == [
        "weekly_report (report)",
        "  made from:",
        "    orders_raw (dataset)",
        "    sales_daily (table)",
        "      orders_raw (dataset)  (listed on its own line)",
        "      shops_raw, not in the catalogue",
        "  used by: nothing",
    ]
    down = _run(seeded, "lineage", "raw-orders", "--direction", "down", "--depth", "1")
    assert down.output.splitlines() == [
        "orders_raw (dataset)",
        "  used by:",
        "    sales_daily (table)",
        "    weekly_report (report)",
    ]
    wrong = _run(seeded, "lineage", "daily", "--direction", "sideways")
    assert wrong.exit_code == 2 and "'sideways' is not one of 'up', 'down', 'both'" in wrong.output
    graph = orjson.loads(_run(seeded, "lineage", "daily", "--json").output)
    assert graph["root"] == "daily" and len(graph["edges"]) == 3


def test_tags_lists_counts_most_used_first(seeded: ThreadServer) -> None:
    listed = _run(seeded, "tags", "--limit", "2")
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == ["tag", "assets"]
    assert lines[1].split() == ["sales", "3"]
    assert len(lines) == 3


def test_delete_soft_deletes_and_says_a_crawled_asset_comes_back_with_its_manifest(
    seeded: ThreadServer,
) -> None:
    crawled = _run(seeded, "delete", "raw-orders")
    assert crawled.exit_code == 0, crawled.output
    assert crawled.output.splitlines() == [
        "orders_raw (id raw-orders) deleted, revision 2",
        "It was crawled from raw/orders/MANIFEST.yaml in file:///lake: a crawl brings it back "
        "when that manifest changes; remove the manifest to keep it gone.",
    ]
    written = _run(seeded, "delete", "report")
    assert written.output == "weekly_report (id report) deleted, revision 2\n"
    left = _run(seeded, "search", "sales")
    assert [line.split()[0] for line in left.output.splitlines()[1:-1]] == ["sales_daily"]
    everything = _run(seeded, "search", "sales", "--include-deleted").output
    assert "orders_raw (deleted)" in everything
    assert _run(seeded, "get", "raw-orders").output.startswith(
        "orders_raw (dataset, revision 2, DELETED)"
    )
    assert "No asset has id 'nope'" in _run(seeded, "delete", "nope").output


def test_assets_commands_pointed_at_another_service_say_to_give_the_catalogues_url(
    tmp_path: Path,
) -> None:
    """Run through the real entry point, as a user's shell does."""
    from featurestore_service.app import create_app as create_featurestore
    from ui.app import create_app as create_ui

    with (
        ThreadServer(create_featurestore(Settings(data_dir=tmp_path / "fs"))) as featurestore,
        ThreadServer(create_ui(Settings(data_dir=tmp_path / "ui"))) as ui,
    ):
        env = cairn_env(tmp_path / "cli")
        for url in (featurestore.url, ui.url):
            for args in (("search", "x"), ("get", "x"), ("lineage", "x"), ("tags",)):
                result = run_cairn("assets", *args, "--url", url, env=env)
                assert result.returncode == 1, (args, result.stderr)
                lines = result.stderr.strip().splitlines()
                assert len(lines) == 1, result.stderr
                assert lines[0].startswith(f"error: {url} does not answer as a catalogue")
                assert "--url or CAIRN_CATALOGUE_URL" in lines[0]

"""The SQLite catalogue's maintained tag facets: after any mix of writes they equal a recount,
and a version-1 file (no facet tables) gets them built when it is opened."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import orjson

from cairn.models import AssetWrite, Facets
from catalogue_service.backends.base import PreparedWrite, SearchQuery, decode_cursor
from catalogue_service.backends.sqlite import FACET_LIMIT, SCHEMA_VERSION, SQLiteStore
from catalogue_service.backends.tag_facets import PAIRED_TAGS
from tests.conftest import write_assets

TAGS = [f"t{i}" for i in range(12)]
TYPES = ["dataset", "table", "model"]


def _recount(store: SQLiteStore, tag: str) -> tuple[int, Facets]:
    conn = store.db._writer
    assert conn is not None
    matched = (
        "SELECT a.seq FROM assets a WHERE a.deleted = 0"
        " AND a.seq IN (SELECT seq FROM asset_tags WHERE tag = ?)"
    )
    return store._counted(conn, matched, [tag])


def _search(store: SQLiteStore, tag: str) -> tuple[int, Facets]:
    hits = asyncio.run(store.search(SearchQuery(tags=[tag], limit=5)))
    return hits.total, hits.facets


def _pages(store: SQLiteStore, tag: str) -> list[str]:
    """Ids of every page of a one-tag search (limit 5), following the cursors."""
    ids: list[str] = []
    cursor = None
    while True:
        hits = asyncio.run(store.search(SearchQuery(tags=[tag], limit=5, cursor=cursor)))
        ids += [orjson.loads(doc)["id"] for doc in hits.docs]
        if hits.next_cursor is None:
            return ids
        cursor = decode_cursor(hits.next_cursor)


def _in_order(store: SQLiteStore, tag: str) -> list[str]:
    """Live assets carrying ``tag`` in the search's order, straight from the assets table."""
    conn = store.db._writer
    assert conn is not None
    rows = conn.execute(
        "SELECT id FROM assets WHERE deleted = 0 AND seq IN"
        " (SELECT seq FROM asset_tags WHERE tag = ?) ORDER BY name_lc, seq",
        [tag],
    )
    return [r[0] for r in rows]


def _random_batch(rng: random.Random, count: int) -> list[dict]:
    items = []
    for _ in range(count):
        n = rng.randrange(40)
        wide = rng.random() < 0.05  # more tags than are paired: counted per search instead
        tags = rng.sample(TAGS, rng.randint(0, 4)) + (
            [f"w{j}" for j in range(PAIRED_TAGS + 1)] if wide else []
        )
        items.append(
            {
                "id": f"a{n}",
                "name": f"asset_{n}_{rng.randrange(3)}",
                "type": rng.choice(TYPES),
                "tags": tags,
                "deleted": rng.random() < 0.15,
            }
        )
    # One write per id in a batch, as the bulk route sends them.
    return list({item["id"]: item for item in items}.values())


def test_facets_follow_every_write(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db")
    asyncio.run(store.open())
    rng = random.Random(3)
    try:
        for _ in range(30):
            batch = _random_batch(rng, 25)
            # Names must stay unique among live assets: drop clashes within the batch.
            seen: set[str] = set()
            batch = [
                x for x in batch if x["deleted"] or not (x["name"] in seen or seen.add(x["name"]))
            ]
            writes = [
                PreparedWrite.of(i, AssetWrite.model_validate(x)) for i, x in enumerate(batch)
            ]
            asyncio.run(store.upsert(writes, datetime.now(UTC)))
            for tag in [*TAGS, "w0"]:
                assert _search(store, tag) == _recount(store, tag), tag
                # The page comes from tag_names: renames, retags and deletes must show.
                assert _pages(store, tag) == _in_order(store, tag), tag
    finally:
        asyncio.run(store.close())


def test_version_one_file_gets_its_facets_on_open(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = SQLiteStore(path)
    asyncio.run(store.open())
    write_assets(
        store,
        [
            {"name": f"x{i}", "type": TYPES[i % 3], "tags": TAGS[i % 5 : i % 5 + 3]}
            for i in range(60)
        ],
    )
    asyncio.run(store.close())
    # What a file written before the facet tables looks like.
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM tag_pairs")
    conn.execute("DELETE FROM tag_types")
    conn.execute("DELETE FROM tag_names")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    store = SQLiteStore(path)
    asyncio.run(store.open())
    try:
        for tag in TAGS[:7]:
            total, facets = _search(store, tag)
            assert (total, facets) == _recount(store, tag)
            assert total > 0 and len(facets.tags) <= FACET_LIMIT
            assert _pages(store, tag) == _in_order(store, tag) != []
        version = store.db._writer.execute(  # type: ignore[union-attr]
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone()[0]
        assert int(version) == SCHEMA_VERSION
    finally:
        asyncio.run(store.close())


def test_a_version_four_file_gets_its_tags_in_lower_case_on_open(tmp_path: Path) -> None:
    """A file from before schema 5 kept tags as written: opened, its tags are folded to lower
    case (one per asset) and its facets counted again, so ``Sales`` finds ``sales`` too."""
    from catalogue_service.backends.tag_facets import TagFacets

    path = tmp_path / "c.db"
    store = SQLiteStore(path)
    asyncio.run(store.open())
    write_assets(
        store,
        [
            {"name": "a", "type": "table", "tags": ["sales", "gold"]},
            {"name": "b", "type": "table", "tags": ["Sales", "Gold"]},
            {"name": "c", "type": "dataset", "tags": ["SALES", "sales"]},
        ],
    )
    asyncio.run(store.close())
    # What a schema-4 file looks like: the tags as the documents spell them.
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM asset_tags")
    for seq, doc in conn.execute("SELECT seq, doc FROM assets").fetchall():
        for tag in orjson.loads(doc)["tags"]:
            conn.execute("INSERT INTO asset_tags(tag, seq) VALUES (?, ?)", (tag, seq))
    TagFacets.rebuild(conn)
    conn.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    conn.commit()
    assert conn.execute("SELECT count(*) FROM asset_tags WHERE tag = 'Sales'").fetchone() == (1,)
    conn.close()

    store = SQLiteStore(path)
    asyncio.run(store.open())
    try:
        for tag in ("sales", "Sales", "SALES"):
            total, facets = _search(store, tag)
            assert total == 3 and facets.tags == {"sales": 3, "gold": 2}, (tag, facets)
            assert (total, facets) == _recount(store, "sales")
            assert _pages(store, tag) == _in_order(store, "sales")
        assert asyncio.run(store.tag_counts(10)) == {"sales": 3, "gold": 2}
    finally:
        asyncio.run(store.close())

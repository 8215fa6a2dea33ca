"""Tag facets kept current by every write of the SQLite catalogue, not counted per search.

Counting the facets of a popular tag means visiting every asset that carries it (tens of
milliseconds at 100k assets, a third of them). Instead two small tables hold, for live assets
only, how many carry each pair of tags (``tag_pairs``; the pair (t, t) is the tag's own count)
and each (tag, type) (``tag_types``). A write adds the new asset's pairs and takes away the old
one's, in the same transaction, so the tables are exact whenever a reader sees them.

An asset with more than ``PAIRED_TAGS`` tags would add its tag count squared of rows; its pairs
are not kept. Its tags are marked instead (the pair (t, "")), and a search for a marked tag
counts its facets the usual way. Tags are never empty, so "" names no tag.

A third table, ``tag_names``, lists each live asset under each of its tags in the search's
order (lower-cased name, then seq), so a one-tag search reads its page as a range of the index
instead of looking up every asset that carries the tag to sort them.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TypeVar

from cairn.models import Facets
from catalogue_service.backends.rows import insert_rows

PAIRED_TAGS = 32
WIDE = ""

K = TypeVar("K")


@dataclass(slots=True)
class _Keys:
    """Keys of the three tables, one entry per asset counted (in or out) under each."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    types: list[tuple[str, str]] = field(default_factory=list)
    names: list[tuple[str, str, int]] = field(default_factory=list)  # (tag, name_lc, seq)


def _net(added: list[K], removed: list[K]) -> Counter[K]:
    counts = Counter(added)
    counts.subtract(removed)
    return counts


class TagFacets:
    """The changes one write batch makes to the tables, applied with one statement each."""

    def __init__(self) -> None:
        # Listed as the batch goes and counted once in ``apply``: a bulk write counts every
        # new asset's keys, and counting one long list runs in C where a Counter update per
        # key does not.
        self.added = _Keys()
        self.removed = _Keys()

    def add(self, tags: list[str], asset_type: str, sign: int, seq: int, name: str) -> None:
        """Counts a live asset in (``sign`` 1) or out (-1)."""
        keys = self.added if sign > 0 else self.removed
        name_lc = name.lower()
        keys.types += [(tag, asset_type) for tag in tags]
        keys.names += [(tag, name_lc, seq) for tag in tags]
        if len(tags) > PAIRED_TAGS:
            keys.pairs += [(tag, tag) for tag in tags]
            keys.pairs += [(tag, WIDE) for tag in tags]
        else:
            keys.pairs += [(tag, other) for tag in tags for other in tags]

    def apply(self, conn: sqlite3.Connection) -> None:
        for table, column, counts in (
            ("tag_pairs", "other", _net(self.added.pairs, self.removed.pairs)),
            ("tag_types", "type", _net(self.added.types, self.removed.types)),
        ):
            changed = [(a, b, n) for (a, b), n in counts.items() if n]
            # executemany: an upsert of many rows per statement cost more SQLite CPU a row.
            conn.executemany(
                f"INSERT INTO {table}(tag, {column}, n) VALUES (?, ?, ?)"
                f" ON CONFLICT(tag, {column}) DO UPDATE SET n = n + excluded.n",
                changed,
            )
            conn.executemany(
                f"DELETE FROM {table} WHERE tag = ? AND {column} = ? AND n <= 0",
                [(a, b) for a, b, n in changed if n < 0],
            )
        # An asset is listed under a tag at most once, so the net change is -1, 0 or 1; with
        # nothing taken out (a load of new assets) the keys added are the change.
        if self.removed.names:
            names = _net(self.added.names, self.removed.names)
            conn.executemany(
                "DELETE FROM tag_names WHERE tag = ? AND name_lc = ? AND seq = ?",
                [key for key, n in names.items() if n < 0],
            )
            listed = [key for key, n in names.items() if n > 0]
        else:
            listed = self.added.names
        # By tag, stably: the index is then walked one tag's range after another rather than
        # jumped about in (about 1 us less SQLite CPU per asset of a bulk load); sorting by
        # the whole key as well saved no more SQLite time than its sort cost in Python.
        listed.sort(key=itemgetter(0))
        insert_rows(conn, "INSERT OR IGNORE INTO tag_names(tag, name_lc, seq)", listed, 3)

    @staticmethod
    def rebuild(conn: sqlite3.Connection) -> None:
        """Counts both tables afresh from the side tables (a migration, a reindex)."""
        conn.execute("DELETE FROM tag_pairs")
        conn.execute("DELETE FROM tag_types")
        conn.execute("DELETE FROM tag_names")
        conn.execute(
            "INSERT INTO tag_names SELECT t.tag, a.name_lc, t.seq FROM asset_tags t"
            " JOIN assets a ON a.seq = t.seq WHERE a.deleted = 0"
        )
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS live_tags (seq INTEGER, tag TEXT, type TEXT,"
            " wide INTEGER)"
        )
        conn.execute("DELETE FROM live_tags")
        conn.execute(
            "INSERT INTO live_tags SELECT t.seq, t.tag, a.type, 0 FROM asset_tags t"
            " JOIN assets a ON a.seq = t.seq WHERE a.deleted = 0"
        )
        conn.execute(
            "UPDATE live_tags SET wide = 1 WHERE seq IN"
            " (SELECT seq FROM live_tags GROUP BY seq HAVING count(*) > ?)",
            (PAIRED_TAGS,),
        )
        conn.execute("CREATE INDEX IF NOT EXISTS temp.live_tags_seq ON live_tags(seq)")
        conn.execute(
            "INSERT INTO tag_types SELECT tag, type, count(*) FROM live_tags GROUP BY tag, type"
        )
        conn.execute(
            "INSERT INTO tag_pairs SELECT a.tag, b.tag, count(*) FROM live_tags a"
            " JOIN live_tags b ON b.seq = a.seq WHERE a.wide = 0 GROUP BY a.tag, b.tag"
        )
        conn.execute(
            "INSERT INTO tag_pairs SELECT tag, tag, count(*) FROM live_tags WHERE wide = 1"
            " GROUP BY tag ON CONFLICT(tag, other) DO UPDATE SET n = n + excluded.n"
        )
        conn.execute(
            "INSERT INTO tag_pairs SELECT tag, ?, count(*) FROM live_tags WHERE wide = 1"
            " GROUP BY tag",
            (WIDE,),
        )
        conn.execute("DROP TABLE live_tags")


def tag_count(conn: sqlite3.Connection, tag: str) -> int:
    """Live assets that carry ``tag``."""
    row = conn.execute("SELECT n FROM tag_pairs WHERE tag = ? AND other = ?", (tag, tag)).fetchone()
    return int(row[0]) if row else 0


def counted(conn: sqlite3.Connection, tag: str, limit: int) -> tuple[int, Facets] | None:
    """Total and facets of the live assets carrying ``tag``, or None when an asset with too
    many tags to pair carries it (the caller counts them)."""
    rows = conn.execute(
        "SELECT other, n FROM tag_pairs WHERE tag = ? ORDER BY n DESC, other", (tag,)
    ).fetchall()
    counts = dict(rows)
    if WIDE in counts:
        return None
    total = counts.get(tag, 0)
    types = conn.execute(
        "SELECT type, n FROM tag_types WHERE tag = ? ORDER BY n DESC, type", (tag,)
    ).fetchall()
    return total, Facets(tags=dict(rows[:limit]), types=dict(types))

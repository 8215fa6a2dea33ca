"""What the catalogue's full-text index costs, and what other FTS5 layouts would (issue 13).

Loads ``--assets`` generated assets into a fresh SQLite catalogue in this process (the bulk
path, as ``probe_ingest``), then:

- the parts of a selective text search's statement (``q=<code word>``, counts cached, so the
  page statement alone), each part added to the one before, replayed through a plain
  ``sqlite3`` connection with the reader's settings: the FTS match, bm25(), the sort, the
  deleted / exact-name subqueries, the page's documents; and the whole statement again with a
  page cache holding the whole file (what the reader's cache misses cost);
- per FTS5 layout, its rows copied from the catalogue's index into a file of their own, in
  transactions of 5,000 as a bulk request writes them: insert CPU per asset, the background
  merge's CPU per asset afterwards (until nothing is left to merge), the size on disk, a ranked
  code-word query (bm25 keys of a page) and search-as-you-type queries (matched, ranked, first
  page).

Every figure is thread CPU time, the best of three rounds, so other processes on the machine
count little; compare figures within one run. Run:
``python -m benchmarks.probe_fts [--assets N] [--layouts current,no-prefix,...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from benchmarks.bench_ingest import encode_batches
from benchmarks.bench_search import page_statements, raw_connection
from benchmarks.common import WORK_DIR
from benchmarks.gen_tree import CODE_WORDS, make_assets
from cairn.settings import Settings
from cairn.sqlite import fts_query
from catalogue_service.backends import sqlite as backend
from catalogue_service.backends.base import SearchQuery
from catalogue_service.service import Catalogue

TOKENIZE = 'tokenize = "unicode61 remove_diacritics 2"'
# name -> (extra FTS5 options, settings written into the index's _config)
LAYOUTS: dict[str, tuple[str, dict[str, int]]] = {
    "current": ("", {"usermerge": backend.FTS_USERMERGE}),
    # Prefix indexes (the layout before 2026-12-05 was prefix-2-3).
    "prefix-2": ("prefix = '2'", {"usermerge": backend.FTS_USERMERGE}),
    "prefix-2-3": ("prefix = '2 3'", {"usermerge": backend.FTS_USERMERGE}),
    "detail-column": ("detail = column", {"usermerge": backend.FTS_USERMERGE}),
    "contentless": ("content = ''", {"usermerge": backend.FTS_USERMERGE}),
    "hashsize-4M": ("", {"usermerge": backend.FTS_USERMERGE, "hashsize": 4 << 20}),
    "automerge-0": ("", {"usermerge": backend.FTS_USERMERGE, "automerge": 0}),
}
BATCH = 5000
WORDS = 100
# Typed a letter at a time: a selective word then a short last word (a prefix), or short alone.
TYPING = ("{w} sa", "{w} sal", "da", "dai", "customer or")
BM25 = "bm25(f, 10.0, 5.0, 1.0, 2.0)"
KEYS = f"SELECT rowid, {BM25} AS k FROM f WHERE f MATCH ? ORDER BY k, rowid LIMIT 21"


def cpu_ms(conn: sqlite3.Connection, sql: str, params: Sequence[Sequence[Any]]) -> float:
    """Thread CPU per statement, best of three rounds after one warming round."""
    for p in params:
        conn.execute(sql, p).fetchall()
    best = float("inf")
    for _ in range(3):
        start = time.thread_time()
        for p in params:
            conn.execute(sql, p).fetchall()
        best = min(best, (time.thread_time() - start) * 1000 / len(params))
    return best


def load(folder: Path, count: int) -> Path:
    """A catalogue of ``count`` generated assets, its index merged as after a pause."""
    path = folder / "catalogue.db"
    store = backend.SQLiteStore(path)
    store._open()
    catalogue = Catalogue(store, Settings(data_dir=folder))

    async def bulk() -> None:
        for body in encode_batches(make_assets(count)):
            await catalogue.bulk(orjson.loads(body))

    asyncio.run(bulk())
    with store.db.transaction() as conn:
        while backend._merge_fts_segments(conn):
            pass
    store.db.close()
    return path


def statement_parts(path: Path, words: list[str]) -> list[tuple[str, float]]:
    """CPU of the text statement built up part by part, then the store's own page statement."""
    conn = raw_connection(path)
    bm25 = backend.BM25
    match = [(fts_query(w),) for w in words]
    scored = f"SELECT rowid AS seq, {bm25} AS k1 FROM assets_fts a WHERE assets_fts MATCH ?"
    keys = (
        f"SELECT a.rowid AS seq, {bm25} - (CASE WHEN a.rowid IN ({backend.EXACT_SEQS})"
        f" THEN {backend.EXACT_NAME_BOOST} ELSE 0 END) AS k1 FROM assets_fts a"
        f" WHERE assets_fts MATCH ? AND a.rowid NOT IN ({backend.DELETED_SEQS})"
    )
    parts: list[tuple[str, str, Sequence[Sequence[Any]]]] = [
        ("FTS match, counted", "SELECT count(*) FROM assets_fts WHERE assets_fts MATCH ?", match),
        ("+ bm25 of each match", f"WITH s AS MATERIALIZED ({scored}) SELECT max(k1) FROM s", match),
        ("+ sort, first 21 keys", f"{scored} ORDER BY k1, seq LIMIT 21", match),
        (
            "+ deleted / exact-name subqueries",
            f"{keys} ORDER BY k1, seq LIMIT 21",
            [(w, fts_query(w)) for w in words],
        ),
    ]
    figures = [(name, cpu_ms(conn, sql, params)) for name, sql, params in parts]
    page = _page_statements(path, conn, words)
    figures.append(("+ the page's documents (the store's statement)", _replay(conn, page)))
    conn.execute("PRAGMA cache_size=-1048576")
    figures.append(("the same, every page in SQLite's cache", _replay(conn, page)))
    conn.close()
    return figures


def _page_statements(
    path: Path, conn: sqlite3.Connection, words: list[str]
) -> list[tuple[str, list[Any]]]:
    """The store's statements for each word with its counts cached (the page alone)."""
    return page_statements(path, conn, [SearchQuery(q=w, limit=20, facets=True) for w in words])


def _replay(conn: sqlite3.Connection, calls: list[tuple[str, list[Any]]]) -> float:
    by_sql: dict[str, list[list[Any]]] = {}
    for sql, params in calls:
        by_sql.setdefault(sql, []).append(params)
    return sum(cpu_ms(conn, sql, params) * len(params) for sql, params in by_sql.items()) / len(
        calls
    )


def layout(
    folder: Path, name: str, rows: list[tuple[Any, ...]], words: list[str]
) -> dict[str, float]:
    options, settings = LAYOUTS[name]
    path = folder / f"fts-{name}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    spec = ", ".join(filter(None, ["name, tags, description, columns", TOKENIZE, options]))
    conn.execute(f"CREATE VIRTUAL TABLE f USING fts5({spec})")
    for key, value in settings.items():
        conn.execute("INSERT INTO f(f, rank) VALUES (?, ?)", (key, value))
    n = len(rows)
    insert = _timed(lambda: _insert(conn, rows)) / n * 1e6
    merge = _timed(lambda: _merge(conn)) / n * 1e6
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    figures = {"insert_us": insert, "merge_us": merge, "mib": path.stat().st_size / 2**20}
    figures["word_ms"] = cpu_ms(conn, KEYS, [(fts_query(w),) for w in words])
    for typed in TYPING:
        params = [(fts_query(typed.format(w=w)),) for w in words[:5]]
        figures[typed] = cpu_ms(conn, KEYS, params)
    conn.close()
    return figures


def _timed(fn: Callable[[], None]) -> float:
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    for i in range(0, len(rows), BATCH):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO f(rowid, name, tags, description, columns) VALUES (?, ?, ?, ?, ?)",
            rows[i : i + BATCH],
        )
        conn.execute("COMMIT")


def _merge(conn: sqlite3.Connection) -> None:
    """Merge steps as the catalogue's background upkeep runs them, until none is left."""
    while True:
        before = conn.total_changes
        conn.execute("BEGIN")
        conn.execute("INSERT INTO f(f, rank) VALUES ('merge', ?)", (backend.FTS_MERGE_PAGES,))
        conn.execute("COMMIT")
        if conn.total_changes - before < 2:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    args = parser.parse_args()
    names = args.layouts.split(",")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    words = CODE_WORDS[:WORDS]
    with tempfile.TemporaryDirectory(dir=WORK_DIR) as tmp:
        folder = Path(tmp)
        path = load(folder, args.assets)
        print(f"text statement, ms CPU per request ({len(words)} code words, counts cached):")
        for name, ms in statement_parts(path, words):
            print(f"  {name:50s} {ms:.4f}")
        source = sqlite3.connect(path)
        rows = source.execute(
            "SELECT rowid, name, tags, description, columns FROM assets_fts ORDER BY rowid"
        ).fetchall()
        source.close()
        head = ["layout", "insert us", "merge us", "MiB", "word ms", *TYPING]
        print("FTS layouts (us per asset, ms per query; typed: '{w}' is a code word):")
        print("  " + " | ".join(head))
        for name in names:
            f = layout(folder, name, rows, words)
            cells = [f"{f['insert_us']:.2f}", f"{f['merge_us']:.2f}", f"{f['mib']:.1f}"]
            cells += [f"{f[k]:.3f}" for k in ("word_ms", *TYPING)]
            print("  " + " | ".join([name, *cells]), flush=True)


if __name__ == "__main__":
    main()

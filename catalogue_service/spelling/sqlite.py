"""The embedded store's spelling vocabulary: every indexed word with how often it occurs.

``search_terms`` lives in the catalogue's SQLite file and is kept by the store's own write
transactions (``count_in`` when FTS rows are added, ``count_out`` before one is removed), so
it is always the vocabulary of what FTS holds, in every process that opens the file. A
search that needs corrections reads it; nothing is rebuilt per query.

Near words are found with RapidFuzz (``process.extract`` with the OSA distance): C++ over a
list of the vocabulary's words, a few milliseconds for tens of thousands of words, in a
3 MB wheel with no dependencies. That list is kept in memory and read again only after a
write added a word (``meta.vocabulary_version`` counts those). Each query's lookup (about a
millisecond: the near words of every query word, then their counts) is kept too, until the
next commit to the file: a misspelt search asked again, or paged through, is not looked up
again.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from rapidfuzz import process
from rapidfuzz.distance import OSA

from cairn.sqlite import SQLiteFile
from catalogue_service.backends.generations import PerGeneration, kept_or_computed
from catalogue_service.backends.page_cache import ANSWERS
from catalogue_service.backends.words import words
from catalogue_service.spelling.base import WordInfo, correctable, is_term, max_edits, rank

SCHEMA = """
CREATE TABLE IF NOT EXISTS search_terms (
    term TEXT PRIMARY KEY, uses INTEGER NOT NULL) WITHOUT ROWID;
"""
VERSION_KEY = "vocabulary_version"
FILL_BATCH = 5000
# Near words fetched per query word before ranking; the ranking keeps a handful.
NEAREST = 50
# Lookups kept until the next commit (a few hundred bytes each): one per answer the store
# keeps, so a misspelt search whose corrected answer is kept is answered without SQLite.
KEPT_LOOKUPS = ANSWERS


def uses_of(texts: Iterable[str]) -> Counter[str]:
    """How often each vocabulary word occurs in ``texts``.

    This runs inside every write transaction, so the texts are tokenized in one call where
    they are plain ASCII (most catalogue text) rather than one call per asset.
    """
    plain: list[str] = []
    folded: list[str] = []
    for text in texts:
        (plain if text.isascii() else folded).append(text)
    found = Counter(words(" ".join(plain)))
    for text in folded:
        found.update(words(text))
    return Counter({w: n for w, n in found.items() if is_term(w)})


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, '1')"
        " ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (VERSION_KEY,),
    )


def count_in(conn: sqlite3.Connection, rows: Sequence[tuple[int, str, str, str, str]]) -> None:
    """Counts the words of FTS rows ``(rowid, name, tags, description, columns)`` being added."""
    counts = uses_of(text for row in rows for text in row[1:] if text)
    if not counts:
        return
    # Known words are counted with one statement each; only when some were missing does a
    # second pass add them (with their uses): a bulk write's words are mostly known already,
    # and inserting every one just to find the new ones cost a statement per word.
    before = conn.total_changes
    conn.executemany(
        "UPDATE search_terms SET uses = uses + ? WHERE term = ?",
        ((n, t) for t, n in counts.items()),
    )
    if conn.total_changes - before == len(counts):
        return
    before = conn.total_changes
    conn.executemany("INSERT OR IGNORE INTO search_terms(term, uses) VALUES (?, ?)", counts.items())
    if conn.total_changes != before:
        _bump(conn)  # a new word: readers must refresh their list of words


def count_out(conn: sqlite3.Connection, rowid: int) -> None:
    """Uncounts the words of the FTS row about to be removed."""
    row = conn.execute(
        "SELECT name, tags, description, columns FROM assets_fts WHERE rowid = ?", (rowid,)
    ).fetchone()
    if row is None:
        return
    gone = uses_of(text for text in row if text)
    conn.executemany(
        "UPDATE search_terms SET uses = uses - ? WHERE term = ?", ((n, t) for t, n in gone.items())
    )
    # A word no asset holds any more is dropped; readers' lists may keep it until the next
    # new word, and lookups skip it (its count is read from the table).
    conn.executemany("DELETE FROM search_terms WHERE term = ? AND uses <= 0", ((t,) for t in gone))


def clear(conn: sqlite3.Connection) -> None:
    """Empties the vocabulary before a rebuild of the FTS table refills it."""
    conn.execute("DELETE FROM search_terms")
    _bump(conn)


def fill_if_missing(conn: sqlite3.Connection) -> None:
    """Builds the vocabulary from the FTS table once, for a file made before it existed."""
    if conn.execute("SELECT 1 FROM meta WHERE key = ?", (VERSION_KEY,)).fetchone():
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Another process opening the same file may have built it while this one waited.
        if conn.execute("SELECT 1 FROM meta WHERE key = ?", (VERSION_KEY,)).fetchone():
            conn.execute("COMMIT")
            return
        conn.execute("DELETE FROM search_terms")
        rows = conn.execute("SELECT rowid, name, tags, description, columns FROM assets_fts")
        while batch := rows.fetchmany(FILL_BATCH):
            count_in(conn, batch)
        _bump(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SQLiteSpeller:
    """``generation``: the store's write generation (``SQLiteStore._generation``), under
    which each query's lookup is kept."""

    def __init__(self, db: SQLiteFile, generation: Callable[[], int], kept: int = KEPT_LOOKUPS):
        self.db = db
        self._generation = generation
        self._kept: PerGeneration[tuple[str, ...], list[WordInfo]] = PerGeneration(kept)
        self._lock = threading.Lock()
        self._version: str | None = None
        self._terms: list[str] = []

    async def lookup(self, typed: list[str]) -> list[WordInfo]:
        # Read before the lookup runs: a commit meanwhile leaves it under an older number.
        generation = self._generation()
        return await kept_or_computed(
            self._kept, tuple(typed), generation, lambda: self.db.read(self._lookup, typed)
        )

    def _vocabulary(self, conn: sqlite3.Connection) -> list[str]:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (VERSION_KEY,)).fetchone()
        version = row[0] if row else None
        with self._lock:
            if version != self._version:
                self._terms = [t for (t,) in conn.execute("SELECT term FROM search_terms")]
                self._version = version
            return self._terms

    def _lookup(self, conn: sqlite3.Connection, typed: list[str]) -> list[WordInfo]:
        terms = self._vocabulary(conn)
        found: list[WordInfo] = []
        for position, word in enumerate(typed):
            row = conn.execute("SELECT uses FROM search_terms WHERE term = ?", (word,)).fetchone()
            info = WordInfo(word, row[0] if row else 0)
            if position == len(typed) - 1 and not info.uses:
                info.prefix = (
                    conn.execute(
                        "SELECT 1 FROM search_terms WHERE term > ? AND term < ? LIMIT 1",
                        (word, word + "\U0010ffff"),
                    ).fetchone()
                    is not None
                )
            if correctable(word) and not info.prefix:
                near = process.extract(
                    word, terms, scorer=OSA.distance, score_cutoff=max_edits(word), limit=NEAREST
                )
                names = [term for term, _, _ in near if term != word]
                if names:
                    marks = ",".join("?" * len(names))
                    counts = conn.execute(
                        f"SELECT term, uses FROM search_terms WHERE term IN ({marks})", names
                    ).fetchall()
                    info.candidates = rank(word, counts)
            found.append(info)
        return found

"""The ``Speller`` protocol and the edit-distance rules both implementations share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from rapidfuzz.distance import OSA

# Vocabulary words are 2 to 40 characters without digits: ids, dates and versions are not
# words anybody misspells, and leaving them out keeps the vocabulary small.
MIN_TERM, MAX_TERM = 2, 40
# Closest indexed words kept per query word.
MAX_CANDIDATES = 5


def max_edits(word: str) -> int:
    """Edits a word may be away from its correction: Elasticsearch's ``fuzziness: AUTO``
    (none up to 2 characters, one up to 5, two beyond)."""
    if len(word) < 3:
        return 0
    return 1 if len(word) <= 5 else 2


def is_term(word: str) -> bool:
    """Whether a word belongs in the vocabulary (and so may be corrected or be a correction)."""
    return MIN_TERM <= len(word) <= MAX_TERM and word.isalpha()


def correctable(word: str) -> bool:
    return is_term(word) and max_edits(word) > 0


def distance(a: str, b: str) -> int:
    """Optimal string alignment distance: a swap of two neighbours ("modle") is one edit."""
    return int(OSA.distance(a, b))


@dataclass(frozen=True, slots=True)
class Candidate:
    term: str
    distance: int
    uses: int  # how common the word is in the index (see WordInfo.uses)


@dataclass(slots=True)
class WordInfo:
    """What the index knows of one word of a query."""

    word: str
    # How common the word is in the index, deleted assets included; 0 when it is unknown.
    # Assets holding it on Elasticsearch, occurrences on SQLite: only ever compared with
    # counts of the same backend.
    uses: int
    prefix: bool = False  # the query's last word, known as the start of longer words
    candidates: list[Candidate] = field(default_factory=list)  # best first, never the word


def rank(word: str, found: Iterable[tuple[str, int]]) -> list[Candidate]:
    """Indexed words within ``max_edits`` of ``word``, closest first, then the most used.

    ``found`` pairs each indexed word with how common it is, from whichever index was asked;
    the distance is always computed here, so both backends rank alike.
    """
    limit = max_edits(word)
    kept = []
    for term, uses in found:
        if term == word or uses <= 0 or not is_term(term):
            continue
        edits = distance(word, term)
        if edits <= limit:
            kept.append(Candidate(term, edits, uses))
    kept.sort(key=lambda c: (c.distance, -c.uses, c.term))
    return kept[:MAX_CANDIDATES]


class Speller(Protocol):
    async def lookup(self, words: list[str]) -> list[WordInfo]:
        """One ``WordInfo`` per word, in order; the last word is also looked up as a prefix
        (search-as-you-type), and a known prefix is never corrected. The answer may be one
        kept for an earlier identical lookup: the caller reads it and never changes it.

        Raises ``cairn.errors.Unavailable`` when the index cannot be asked.
        """
        ...

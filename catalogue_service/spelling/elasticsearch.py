"""Spelling suggestions from the catalogue's Elasticsearch index: no vocabulary of our own.

One request asks, for every word of the query, how many assets hold it (a ``filter``
aggregation per word, the last one also as a prefix) and which indexed words are near it
(Elasticsearch's ``term`` suggester, one per searchable field). Lucene's term dictionary is
the vocabulary, kept by indexing itself. The suggester's options are ranked by the same
distance rule as the embedded backend's (``base.rank``), so both offer the same corrections.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

from cairn.errors import Unavailable
from catalogue_service.backends.es_index import (
    WEIGHTS,
    ApiError,
    ConnectionTimeout,
    SearchIndex,
    TransportConnectionError,
    TransportError,
    unreachable,
)
from catalogue_service.backends.generations import PerGeneration, kept_or_computed
from catalogue_service.backends.page_cache import ANSWERS
from catalogue_service.spelling.base import MAX_CANDIDATES, WordInfo, correctable, rank

FIELDS = tuple(WEIGHTS)  # the analysed word fields: name, tags, columns, description


def _holds(word: str, kind: str) -> dict[str, Any]:
    return {"filter": {"dis_max": {"queries": [{kind: {f: word}} for f in FIELDS]}}}


def lookup_body(typed: list[str]) -> dict[str, Any]:
    """The request: counts per word (and the last word as a prefix), near words per field."""
    aggs = {f"w{i}": _holds(word, "term") for i, word in enumerate(typed)}
    aggs["prefix"] = _holds(typed[-1], "prefix")
    body: dict[str, Any] = {"size": 0, "track_total_hits": False, "aggs": aggs}
    wanted = [w for w in typed if correctable(w)]
    if wanted:
        suggest: dict[str, Any] = {"text": " ".join(wanted)}
        for n, field in enumerate(FIELDS):
            suggest[f"f{n}"] = {
                "term": {
                    "field": field,
                    # Known words too: one held by a single asset may be a typo of a word
                    # held by many (fallback.POPULAR).
                    "suggest_mode": "always",
                    "max_edits": 2,
                    "prefix_length": 0,  # a typo in the first letter is a typo too
                    "min_word_length": 3,
                    "size": MAX_CANDIDATES * 2,
                    "string_distance": "damerau_levenshtein",
                }
            }
        body["suggest"] = suggest
    return body


def read_lookup(typed: list[str], answer: dict[str, Any]) -> list[WordInfo]:
    aggs = answer.get("aggregations") or {}
    near: dict[str, Counter[str]] = {}
    for entries in (answer.get("suggest") or {}).values():
        for entry in entries:
            # Asset counts per field, added up: an upper bound on the assets that hold the
            # word, which only orders candidates of equal distance.
            found = near.setdefault(entry["text"], Counter())
            for option in entry["options"]:
                found[option["text"]] += option["freq"]
    infos = []
    for i, word in enumerate(typed):
        info = WordInfo(word, int(aggs.get(f"w{i}", {}).get("doc_count", 0)))
        if i == len(typed) - 1 and not info.uses:
            info.prefix = int(aggs.get("prefix", {}).get("doc_count", 0)) > 0
        if correctable(word) and not info.prefix:
            info.candidates = rank(word, (near.get(word) or Counter()).items())
        infos.append(info)
    return infos


class ElasticSpeller:
    """``generation``: the index's generation (``IndexGeneration.current``), under which each
    query's lookup is kept as the store keeps its answers; None keeps nothing."""

    def __init__(
        self,
        index: SearchIndex,
        generation: Callable[[], Hashable | None] = lambda: None,
        kept: int = ANSWERS,
    ):
        self.index = index
        self._generation = generation
        self._kept: PerGeneration[tuple[str, ...], list[WordInfo]] = PerGeneration(kept)

    async def lookup(self, typed: list[str]) -> list[WordInfo]:
        if not typed:
            return []
        # Read before the lookup runs: a change meanwhile leaves it under an older generation.
        generation = self._generation()
        return await kept_or_computed(
            self._kept, tuple(typed), generation, lambda: self._lookup(typed)
        )

    async def _lookup(self, typed: list[str]) -> list[WordInfo]:
        try:
            answer = await self.index.es.search(index=self.index.alias, **lookup_body(typed))
        except (TransportConnectionError, ConnectionTimeout) as exc:
            raise unreachable(exc) from exc
        except (ApiError, TransportError) as exc:
            raise Unavailable(f"Elasticsearch did not answer a spelling lookup: {exc}") from exc
        return read_lookup(typed, dict(answer))

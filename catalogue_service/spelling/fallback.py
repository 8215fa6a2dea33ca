"""When a text search finds little: correct its words, and say so.

"Little" is fewer than ``CAIRN_SEARCH_TYPO_BELOW`` assets (3 by default; 0 turns this off):

- The query found nothing: the answer is the corrected query's (its items, total, facets and
  cursors), with ``did_you_mean`` set to it and ``fuzzy`` true. A page never mixes the two
  queries, so what was typed always ranks first when it matches anything at all. A later page
  sends the same ``q`` with the corrected query's cursor; the typed query still finds nothing,
  so the same correction answers it.
- The query found a few assets: they stay the answer, and ``did_you_mean`` offers the
  corrected query when it finds more.

A word is corrected when the index does not hold it, or holds it far less often
(``POPULAR`` times) than a word within reach (a typo that made it into one description should
not hide the hundred assets spelt right). The last word of a query is matched as a prefix,
so it is corrected only when no indexed word starts with it.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging

from cairn.errors import Unavailable
from catalogue_service.backends.base import AssetStore, SearchHits, SearchQuery
from catalogue_service.backends.words import words
from catalogue_service.spelling.base import WordInfo, correctable

log = logging.getLogger("cairn.catalogue.spelling")

# A known word gives way to a neighbour this many times as common.
POPULAR = 10
# Corrected queries tried, best first, before giving up on a query that found nothing.
MAX_TRIES = 3
MAX_WORDS = 32  # as both backends' text queries


def _choices(info: WordInfo) -> list[str]:
    """The spellings of one word worth trying, best first."""
    if info.prefix or not info.candidates:
        return [info.word]
    if info.uses == 0:
        return [c.term for c in info.candidates[:2]]
    popular = [c.term for c in info.candidates if c.uses >= POPULAR * info.uses]
    return [*popular[:1], info.word]


def corrected_queries(infos: list[WordInfo], limit: int = MAX_TRIES) -> list[str]:
    """Corrected forms of a query, fewest edits first; empty when nothing needs correcting."""
    choices = [_choices(info) for info in infos]
    if all(c == [info.word] for c, info in zip(choices, infos, strict=True)):
        return []
    typed = [info.word for info in infos]
    combos = []
    for combo in itertools.product(*choices):
        if list(combo) == typed:
            continue
        # Rank: how far each alternative is down its word's list, then the words themselves.
        cost = sum(options.index(w) for options, w in zip(choices, combo, strict=True))
        combos.append((cost, " ".join(combo)))
        if len(combos) >= 64:  # 32 words of two choices each must not explode
            break
    combos.sort()
    return [text for _, text in combos[:limit]]


async def with_typo_fallback(
    store: AssetStore, query: SearchQuery, hits: SearchHits, below: int
) -> SearchHits:
    """``hits`` for ``query``, or what the corrected query finds (see the module's text)."""
    if below <= 0 or not query.q or hits.total >= below:
        return hits
    typed = words(query.q)[:MAX_WORDS]
    if not any(correctable(w) for w in typed):
        return hits
    try:
        infos = await store.speller.lookup(typed)
    except Unavailable as exc:
        # The search itself answered: a missing suggestion is no reason to fail it.
        log.warning("spelling suggestions unavailable: %s", exc.detail)
        return hits
    tries = corrected_queries(infos)
    if not tries:
        return hits
    if hits.total == 0:
        for corrected in tries:
            found = await store.search(dataclasses.replace(query, q=corrected))
            if found.total:
                found.did_you_mean, found.fuzzy = corrected, True
                return found
        return hits
    probe = dataclasses.replace(query, q=tries[0], limit=1, cursor=None, offset=0, facets=False)
    if (await store.search(probe)).total > hits.total:
        hits.did_you_mean = tries[0]
    return hits

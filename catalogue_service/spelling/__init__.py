"""Typo tolerance for the catalogue's text search.

When the words of a query (``q``) find little, each word the index does not hold (or holds in
far fewer assets than a close neighbour) is replaced by the closest indexed word, and the
corrected query is offered as ``did_you_mean``; when the query found nothing at all, the
answer is the corrected query's, marked ``fuzzy``.

    Speller (base.py, a protocol: what the index knows of each word of a query)
    ├── SQLiteSpeller   (sqlite.py: a vocabulary table the embedded store keeps on each write)
    └── ElasticSpeller  (elasticsearch.py: the index's term suggester)
    fallback.py         (the policy, written once over both)
"""

from __future__ import annotations

from catalogue_service.spelling.base import Candidate, Speller, WordInfo
from catalogue_service.spelling.fallback import corrected_queries, with_typo_fallback

__all__ = ["Candidate", "Speller", "WordInfo", "corrected_queries", "with_typo_fallback"]

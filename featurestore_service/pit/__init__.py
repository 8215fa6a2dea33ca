"""Point-in-time retrieval (DESIGN 9): training sets whose rows see only the past.

The room's protocol follows Feast's offline store: an engine takes an entity frame and the
feature tables to join, checks everything it can before any row is produced, and returns a
``RetrievalJob`` whose ``to_reader()`` streams the answer in the entity frame's order
(``to_arrow()`` collects it). ``base`` holds the protocol and the join's inputs,
``entity_frame`` reads and checks the frame a caller sent, ``sorted_search`` is the engine.

The engine was chosen by measurement (benchmarks/bench_historical.py compares it with DuckDB's
ASOF JOIN and polars' join_asof on the same files): it streams the entity frame batch by batch
and answers each batch with binary searches over a per-table index, so rows come out in order
without a sort, and memory holds the feature tables' selected columns plus one batch.
"""

from featurestore_service.pit.base import (
    ENTITY_TIMESTAMP,
    FeatureTable,
    OfflineStore,
    RetrievalJob,
)
from featurestore_service.pit.entity_frame import EntityFrame
from featurestore_service.pit.sorted_search import SortedSearchStore

__all__ = [
    "ENTITY_TIMESTAMP",
    "EntityFrame",
    "FeatureTable",
    "OfflineStore",
    "RetrievalJob",
    "SortedSearchStore",
]

"""The point-in-time room's protocol and the description of one table to join."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

if TYPE_CHECKING:
    from featurestore_service.pit.entity_frame import EntityFrame

# The entity frame's time column (Feast's name, so its users' frames work unchanged).
ENTITY_TIMESTAMP = "event_timestamp"


@dataclass(frozen=True, slots=True)
class FeatureTable:
    """One version of one feature table, with the columns a request wants from it."""

    name: str
    version: int
    path: Path  # the version's Parquet file
    sha256: str  # of that file: equal hashes mean equal rows
    entities: tuple[str, ...]
    timestamp: str
    created_timestamp: str | None
    ttl: int | None  # seconds; None means unlimited
    features: tuple[str, ...]  # columns of the file to fetch
    output_names: tuple[str, ...]  # their names in the answer, one per feature

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"


class RetrievalJob(Protocol):
    """An answer ready to stream: its schema is final and every check has passed."""

    @property
    def schema(self) -> pa.Schema: ...

    @property
    def num_rows(self) -> int: ...

    def to_reader(self) -> pa.RecordBatchReader:
        """The rows in the entity frame's order, one record batch at a time."""

    def to_arrow(self) -> pa.Table: ...


class OfflineStore(Protocol):
    def get_historical_features(
        self,
        entity_frame: EntityFrame,
        tables: list[FeatureTable],
        metadata: dict[str, str] | None = None,
    ) -> RetrievalJob:
        """Checks the frame against ``tables`` (4xx naming what to fix) and plans the join.

        ``metadata`` goes into the answer's Arrow schema (the versions used, for example).
        """

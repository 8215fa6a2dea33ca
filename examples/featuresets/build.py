"""Regenerates the Parquet versions of the example tabular feature sets from examples/lake.

    python examples/featuresets/build.py

customer_features: version 1 is the first 30 customers without the engagement columns,
version 2 all 40 customers with every column (a diff shows two columns and ten rows added).
store_demand_features: one version, the lake's table as it is.
customer_entities.parquet: an entity frame for the README's point-in-time examples: three
customers asked after their feature date and one before it (which gets nulls).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
LAKE = HERE.parent / "lake" / "ml" / "features"


def main() -> None:
    customers = pq.read_table(LAKE / "customer_features" / "customer_features.parquet")
    customers = customers.sort_by("customer_id")
    first = customers.slice(0, 30).drop_columns(["email_open_rate", "is_opted_in"])
    pq.write_table(first, HERE / "customer_features" / "v1.parquet")
    pq.write_table(customers, HERE / "customer_features" / "v2.parquet")
    stores = pq.read_table(LAKE / "store_demand_features" / "store_demand_features.parquet")
    order = pc.sort_indices(stores, [("store_id", "ascending"), ("feature_date", "ascending")])
    pq.write_table(stores.take(order), HERE / "store_demand_features" / "v1.parquet")
    asked = [datetime(2025, 6, 20, 9, 0, tzinfo=UTC)] * 3 + [datetime(2025, 6, 1, tzinfo=UTC)]
    entities = pa.table(
        {
            "customer_id": ["C00001", "C00002", "C00003", "C00001"],
            "event_timestamp": pa.array(asked, pa.timestamp("us", tz="UTC")),
            "label_churned": [False, True, False, False],
        }
    )
    pq.write_table(entities, HERE / "customer_entities.parquet")


if __name__ == "__main__":
    main()

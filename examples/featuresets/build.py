"""Regenerates the Parquet versions of the example tabular feature sets from examples/lake.

    python examples/featuresets/build.py

customer_features: version 1 is the first 30 customers without the engagement columns,
version 2 all 40 customers with every column (a diff shows two columns and ten rows added).
store_demand_features: one version, the lake's table as it is.
"""

from __future__ import annotations

from pathlib import Path

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


if __name__ == "__main__":
    main()

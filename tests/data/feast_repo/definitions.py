"""Feast definitions of the feature tables the test puts into Cairn (tests/test_feast_client.py).

Run by Feast, in its own venv: ``feast apply`` registers them, with the remote online store of
``feature_store.yaml`` pointing at Cairn. The file sources hold the same rows the test uploads to
Cairn; each view's name is the Cairn feature set's name, as the remote store sends
``view:feature`` references.
"""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource
from feast.types import Bool, Float64, Int32, Int64, String
from feast.value_type import ValueType

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)

driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(0),
    schema=[
        Field(name="conv_rate", dtype=Float64),
        Field(name="trips", dtype=Int32),
        Field(name="city", dtype=String),
        Field(name="active", dtype=Bool),
    ],
    source=FileSource(path="driver_stats.parquet", timestamp_field="event_timestamp"),
)

driver_rating = FeatureView(
    name="driver_rating",
    entities=[driver],
    ttl=timedelta(days=7),
    schema=[Field(name="rating", dtype=Float64), Field(name="trips", dtype=Int64)],
    source=FileSource(path="driver_rating.parquet", timestamp_field="event_timestamp"),
)

customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(0),
    schema=[Field(name="segment", dtype=String), Field(name="lifetime_value", dtype=Float64)],
    source=FileSource(path="customer_profile.parquet", timestamp_field="event_timestamp"),
)

# keyed by both entities: a composite key in Cairn
driver_customer = FeatureView(
    name="driver_customer",
    entities=[driver, customer],
    ttl=timedelta(0),
    schema=[Field(name="rides_together", dtype=Int64)],
    source=FileSource(path="driver_customer.parquet", timestamp_field="event_timestamp"),
)

"""Typed Python clients of Cairn's services, sync and async.

    from cairn.client import CatalogueClient, FeatureStoreClient

    with FeatureStoreClient("http://127.0.0.1:8002") as fs:
        fs.put("churn_model_serving", [{"name": "threshold", "dtype": "float", "value": 0.4}],
               depends_on=["churn_model"])
        table = fs.get_table("customer_features", columns=["customer_id", "recency_days"])

Errors are the ``cairn.errors`` classes the server raised (``NotFound``, ``Conflict``, ...),
with the server's ``detail``; ``ServiceUnreachable`` when nothing answered.
"""

from cairn.client._http import BadAnswer, Health, ServiceUnreachable, raise_for_problem
from cairn.client.catalogue import AsyncCatalogueClient, CatalogueClient
from cairn.client.featurestore import AsyncFeatureStoreClient, FeatureStoreClient

__all__ = [
    "AsyncCatalogueClient",
    "AsyncFeatureStoreClient",
    "BadAnswer",
    "CatalogueClient",
    "FeatureStoreClient",
    "Health",
    "ServiceUnreachable",
    "raise_for_problem",
]

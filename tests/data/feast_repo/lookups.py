"""Runs ``FeatureStore.get_online_features`` for each case read as JSON from stdin and prints
what Feast returns as JSON (Feast's own venv; see tests/test_feast_client.py).

A case is ``{"features": [...], "entity_rows": [...] or {...}, "full_feature_names": bool}``;
its answer is ``{"values": to_dict(), "statuses": {column: [FieldStatus names]}}`` or
``{"error": "..."}`` when Feast raised.
"""

import json
import sys

from feast import FeatureStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

store = FeatureStore(repo_path=".")
answers = []
for case in json.load(sys.stdin):
    try:
        response = store.get_online_features(
            features=case["features"],
            entity_rows=case["entity_rows"],
            full_feature_names=case.get("full_feature_names", False),
        )
    except Exception as exc:  # the test asserts on the message Feast raised
        answers.append({"error": f"{type(exc).__name__}: {exc}"})
        continue
    proto = response.proto
    names = list(proto.metadata.feature_names.val)
    statuses = {
        name: [FieldStatus.Name(s) for s in result.statuses]
        for name, result in zip(names, proto.results, strict=True)
    }
    answers.append({"values": response.to_dict(), "statuses": statuses})
json.dump(answers, sys.stdout)

"""The metric store (DESIGN 10): column profiles, drift between versions, declared checks.

Profiles are computed off the request path by ``worker.ProfileWorker`` and kept in a
``store.MetricStore`` (SQLite or MongoDB, chosen like the feature store's own backend).
"""

"""Metric-store backends, chosen by ``CAIRN_BACKEND`` like the feature store's own."""

from __future__ import annotations

from cairn.backends import load_backend
from cairn.settings import Settings
from featurestore_service.metrics.store.base import MetricStore

REGISTRY: dict[str, tuple[str, str | None]] = {
    "sqlite": ("featurestore_service.metrics.store.sqlite:from_settings", None),
    "mongo": ("featurestore_service.metrics.store.mongo:from_settings", "mongo"),
}


def create_metric_store(settings: Settings) -> MetricStore:
    store: MetricStore = load_backend(REGISTRY, settings, "metric-store")
    return store

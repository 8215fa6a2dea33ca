"""Feature-store backends, chosen by ``CAIRN_BACKEND`` through one registry, imported lazily."""

from __future__ import annotations

from cairn.backends import load_backend
from cairn.settings import Settings
from featurestore_service.backends.base import FeatureSetStore

# name -> (module:factory, pip extra that provides its dependencies)
REGISTRY: dict[str, tuple[str, str | None]] = {
    "sqlite": ("featurestore_service.backends.sqlite:from_settings", None),
    "mongo": ("featurestore_service.backends.mongo:from_settings", "mongo"),
}


def create_store(settings: Settings) -> FeatureSetStore:
    store: FeatureSetStore = load_backend(REGISTRY, settings, "feature-store")
    return store

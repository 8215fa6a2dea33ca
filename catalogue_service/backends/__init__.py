"""Catalogue backends, chosen by ``CAIRN_BACKEND`` through one registry and imported lazily."""

from __future__ import annotations

from cairn.backends import BackendError, load_backend
from cairn.settings import Settings
from catalogue_service.backends.base import AssetStore

__all__ = ["REGISTRY", "BackendError", "create_store"]

# name -> (module:factory, pip extra that provides its dependencies)
REGISTRY: dict[str, tuple[str, str | None]] = {
    "sqlite": ("catalogue_service.backends.sqlite:from_settings", None),
    "mongo": ("catalogue_service.backends.mongo:from_settings", "mongo"),
}


def create_store(settings: Settings) -> AssetStore:
    store: AssetStore = load_backend(REGISTRY, settings, "catalogue")
    return store

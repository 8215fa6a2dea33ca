"""The online store (DESIGN 9): the latest row per entity key of each feature table's live
version, written by materialization and read by ``POST /api/v1/online-features``.

A small protocol (``base.OnlineStore``) with an embedded SQLite implementation and a MongoDB one,
chosen by ``CAIRN_BACKEND`` like the other backends.
"""

from __future__ import annotations

from cairn.backends import load_backend
from cairn.settings import Settings
from featurestore_service.online.base import OnlineStore

REGISTRY: dict[str, tuple[str, str | None]] = {
    "sqlite": ("featurestore_service.online.sqlite:from_settings", None),
    "mongo": ("featurestore_service.online.mongo:from_settings", "mongo"),
}


def create_online_store(settings: Settings) -> OnlineStore:
    store: OnlineStore = load_backend(REGISTRY, settings, "online-store")
    return store

"""Catalogue backends, chosen by ``CAIRN_BACKEND`` through one registry and imported lazily."""

from __future__ import annotations

import importlib

from cairn.errors import CairnError
from cairn.settings import Settings
from catalogue_service.backends.base import AssetStore

# name -> (module:factory, pip extra that provides its dependencies)
REGISTRY: dict[str, tuple[str, str | None]] = {
    "sqlite": ("catalogue_service.backends.sqlite:from_settings", None),
}


class BackendError(CairnError):
    title = "Backend misconfigured"


def create_store(settings: Settings) -> AssetStore:
    try:
        target, extra = REGISTRY[settings.backend]
    except KeyError:
        raise BackendError(
            f"CAIRN_BACKEND={settings.backend!r} is not a catalogue backend; "
            f"choose one of: {', '.join(sorted(REGISTRY))}"
        ) from None
    module_name, factory = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f" (pip install 'cairn[{extra}]')" if extra else ""
        raise BackendError(f"backend {settings.backend!r} cannot load: {exc}{hint}") from exc
    return getattr(module, factory)(settings)

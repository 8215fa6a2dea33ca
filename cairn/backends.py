"""Backends chosen by name (``CAIRN_BACKEND``) through a registry, imported lazily.

Each service keeps its own registry: ``{name: ("module:factory", pip extra or None)}``.
"""

from __future__ import annotations

import importlib
from typing import Any

from cairn.errors import CairnError
from cairn.settings import Settings


class BackendError(CairnError):
    title = "Backend misconfigured"


def load_backend(registry: dict[str, tuple[str, str | None]], settings: Settings, what: str) -> Any:
    """Calls the factory registered for ``settings.backend``; says which extra is missing."""
    try:
        target, extra = registry[settings.backend]
    except KeyError:
        raise BackendError(
            f"CAIRN_BACKEND={settings.backend!r} is not a {what} backend; "
            f"choose one of: {', '.join(sorted(registry))}"
        ) from None
    module_name, factory = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f" (pip install 'cairn-catalogue[{extra}]')" if extra else ""
        raise BackendError(f"backend {settings.backend!r} cannot load: {exc}{hint}") from exc
    return getattr(module, factory)(settings)

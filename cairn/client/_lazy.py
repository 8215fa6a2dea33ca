"""pyarrow, imported when a client first handles a table rather than when it is imported.

The web UI and the CLI's catalogue commands use the clients but never a table; importing
pyarrow (and numpy with it) cost them about 50 MiB of resident memory and a good part of
their start-up.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for a module and imports it on the first attribute read."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

"""dbt on DuckDB with OpenLineage's dbt integration (``dbt-ol``), in a venv of its own.

The venv lives under ``~/.cache/cairn/dbt-openlineage`` and is built once (under a lock) from
PyPI with the pinned versions below. It is kept apart from the project's lock: dbt-core brings
its own pins (protobuf, networkx, ...) that Cairn has no business following, and dbt-core 1.11+
downloads a parser wheel from GitHub at install time, outside PyPI, so 1.10 is pinned.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.servers.processes import ServerSetupError, cache_dir, locked, run_step

PACKAGES = ("dbt-core==1.10.23", "dbt-duckdb==1.10.1", "openlineage-dbt==1.54.0")
INSTALL_TIMEOUT_S = 1200


def ensure_dbt() -> Path:
    """The venv's bin folder, holding ``dbt`` and ``dbt-ol``; installs it when missing."""
    root = cache_dir("dbt-openlineage")
    venv = root / "venv"
    marker = venv / ("installed-" + "-".join(PACKAGES).replace("=", "_"))
    with locked(root / ".lock"):
        if marker.exists():
            return venv / "bin"
        # The test's python may be a venv itself: build from its base interpreter.
        base = getattr(sys, "_base_executable", sys.executable)
        run_step("create the dbt venv", [base, "-m", "venv", "--clear", str(venv)], timeout=300)
        pip = [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
        ]
        run_step(f"pip install {' '.join(PACKAGES)}", [*pip, *PACKAGES], timeout=INSTALL_TIMEOUT_S)
        for tool in ("dbt", "dbt-ol"):
            if not (venv / "bin" / tool).exists():
                raise ServerSetupError(f"the dbt venv has no {tool} after installing {PACKAGES}")
        marker.touch()
    return venv / "bin"

"""The Feast Python SDK, in a venv of its own, as a real client of Cairn's online route.

The venv lives under ``~/.cache/cairn/feast/<version>`` and is built once (under a lock) from
PyPI, every package pinned by ``feast-constraints.txt``. It is kept apart from the project's
lock because Feast 0.67 caps pandas below 3 and prometheus-client below 0.25, both of which
Cairn's lock is past; the tests run Feast in a subprocess of this venv's python.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from tests.servers.processes import ServerSetupError, cache_dir, locked, run_step

VERSION = "0.67.0"
CONSTRAINTS = Path(__file__).with_name("feast-constraints.txt")
INSTALL_TIMEOUT_S = 1200


def ensure_feast() -> Path:
    """The venv's bin folder, holding ``python`` and ``feast``; installs it when missing."""
    root = cache_dir(f"feast/{VERSION}")
    venv = root / "venv"
    # A new pin list means another venv: the marker names the constraints' content.
    marker = venv / f"installed-{hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:16]}"
    with locked(root / ".lock"):
        if marker.exists():
            return venv / "bin"
        # The test's python may be a venv itself: build from its base interpreter.
        base = getattr(sys, "_base_executable", sys.executable)
        run_step("create the Feast venv", [base, "-m", "venv", "--clear", str(venv)], timeout=300)
        python = str(venv / "bin" / "python")
        run_step(
            f"pip install feast=={VERSION} -c {CONSTRAINTS.name}",
            [
                python,
                *("-m", "pip", "install", "-q", "--disable-pip-version-check"),
                *("-c", str(CONSTRAINTS), f"feast=={VERSION}"),
            ],
            timeout=INSTALL_TIMEOUT_S,
        )
        found = run_step(
            "import feast", [python, "-c", "import feast; print(feast.__version__)"], timeout=300
        )
        if found.strip() != VERSION or not (venv / "bin" / "feast").exists():
            raise ServerSetupError(
                f"the Feast venv has feast {found.strip()!r}, not {VERSION}, or no feast command"
            )
        marker.touch()
    return venv / "bin"

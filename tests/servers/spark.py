"""PySpark in local mode with OpenLineage's Spark listener, in a venv of its own.

The venv (PyPI's ``pyspark``, Spark 3.5 with Scala 2.12, which runs on the machine's Java 17)
and the listener's jar (``io.openlineage:openlineage-spark_2.12`` from Maven Central, checked
against Maven's SHA-1) live under ``~/.cache/cairn/spark-openlineage``, built once under a lock.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import httpx

from tests.servers.processes import ServerSetupError, cache_dir, locked, run_step

PYSPARK = "pyspark==3.5.9"
LISTENER_VERSION = "1.53.0"
LISTENER_URL = (
    "https://repo1.maven.org/maven2/io/openlineage/openlineage-spark_2.12/"
    f"{LISTENER_VERSION}/openlineage-spark_2.12-{LISTENER_VERSION}.jar"
)
INSTALL_TIMEOUT_S = 1800


def _download(url: str, target: Path) -> None:
    step = f"downloading {url} from Maven Central"
    try:
        expected = httpx.get(url + ".sha1", timeout=60, follow_redirects=True)
        expected.raise_for_status()
        digest = hashlib.sha1(usedforsecurity=False)
        partial = target.with_suffix(".part")
        with httpx.stream("GET", url, timeout=120, follow_redirects=True) as response:
            response.raise_for_status()
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise ServerSetupError(f"{step}: {exc}") from exc
    if digest.hexdigest() != expected.text.split()[0].strip():
        partial.unlink()
        raise ServerSetupError(f"{step}: SHA-1 of the download does not match Maven's")
    partial.replace(target)


def ensure_spark() -> tuple[Path, Path]:
    """(the venv's python with pyspark, the OpenLineage listener's jar); installs them once."""
    root = cache_dir("spark-openlineage")
    venv = root / "venv"
    python = venv / "bin" / "python"
    jar = root / f"openlineage-spark_2.12-{LISTENER_VERSION}.jar"
    marker = venv / f"installed-{PYSPARK.replace('=', '_')}"
    with locked(root / ".lock"):
        if not marker.exists():
            base = getattr(sys, "_base_executable", sys.executable)
            run_step(
                "create the Spark venv", [base, "-m", "venv", "--clear", str(venv)], timeout=300
            )
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            run_step(f"pip install {PYSPARK}", [*pip, PYSPARK], timeout=INSTALL_TIMEOUT_S)
            marker.touch()
        if not jar.exists():
            _download(LISTENER_URL, jar)
    return python, jar

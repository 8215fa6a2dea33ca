"""PySpark in local mode with OpenLineage's Spark listener, in a venv of its own.

The venv (PyPI's ``pyspark``, Spark 3.5 with Scala 2.12, which runs on the machine's Java 17)
and the listener's jar (``io.openlineage:openlineage-spark_2.12`` from Maven Central, checked
against Maven's SHA-1) live under ``~/.cache/cairn/spark-openlineage``, built once under a lock.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.servers.maven import download as maven_download
from tests.servers.processes import cache_dir, locked, run_step

PYSPARK = "pyspark==3.5.9"
LISTENER_VERSION = "1.53.0"
LISTENER_URL = (
    "https://repo1.maven.org/maven2/io/openlineage/openlineage-spark_2.12/"
    f"{LISTENER_VERSION}/openlineage-spark_2.12-{LISTENER_VERSION}.jar"
)
INSTALL_TIMEOUT_S = 1800


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
            maven_download(LISTENER_URL, jar, what="the OpenLineage Spark listener")
    return python, jar

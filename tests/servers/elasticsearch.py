"""Elasticsearch 8.19 from Maven Central's integ-test-zip, on the machine's Java 17+.

First use downloads ``org.elasticsearch.distribution.integ-test-zip:elasticsearch`` (about
100 MB, checked against Maven's SHA-1) into ``~/.cache/cairn/elasticsearch/``. That zip is the
server with only its core modules (no bundled JDK, no ingest or analysis plugins), which is
all the catalogue's index needs.

Elasticsearch refuses to run as root. When the tests run as root (CI containers do), the
server is unpacked where any user can read it and started as ``nobody`` through ``setpriv``,
with its data, logs and config in a folder that user owns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import httpx

from tests.servers.maven import download as maven_download
from tests.servers.processes import ServerSetupError, cache_dir, free_port, locked, terminate

VERSION = "8.19.21"
ARTIFACT = (
    "https://repo1.maven.org/maven2/org/elasticsearch/distribution/integ-test-zip/"
    f"elasticsearch/{VERSION}/elasticsearch-{VERSION}.zip"
)
HEAP = "512m"


def _as_root() -> bool:
    return os.geteuid() == 0


def _shared_dir() -> Path:
    """Where ``nobody`` can read: /root and pytest's temp folders are private to root."""
    path = Path(tempfile.gettempdir()) / "cairn-servers"
    path.mkdir(exist_ok=True)
    path.chmod(0o755)
    return path


def install() -> Path:
    """The unpacked server's home folder (readable by the user it will run as)."""
    cache = cache_dir("elasticsearch")
    archive = cache / f"elasticsearch-{VERSION}.zip"
    parent = _shared_dir() if _as_root() else cache
    home = parent / f"elasticsearch-{VERSION}"
    with locked(cache / ".lock"):
        if not archive.exists():
            maven_download(ARTIFACT, archive, what=f"Elasticsearch {VERSION}")
        if not (home / ".unpacked").exists():
            shutil.rmtree(home, ignore_errors=True)
            try:
                with zipfile.ZipFile(archive) as zipped:
                    zipped.extractall(parent)
            except (zipfile.BadZipFile, OSError) as exc:
                archive.unlink(missing_ok=True)
                raise ServerSetupError(f"unpacking {archive}: {exc}") from exc
            for path in (home / "bin").rglob("*"):
                path.chmod(0o755)
            for path in [home, *home.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
            (home / ".unpacked").touch()
    return home


def _java_home() -> Path:
    if os.environ.get("ES_JAVA_HOME"):
        return Path(os.environ["ES_JAVA_HOME"])
    if os.environ.get("JAVA_HOME"):
        return Path(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    if java is None:
        raise ServerSetupError("starting Elasticsearch: 'java' (17 or newer) is not on the PATH")
    return Path(java).resolve().parent.parent


class Elasticsearch:
    """A single-node server as a child process; ``stop()`` then ``start()`` keeps its data."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.port = free_port()
        self.transport_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = base_dir / "elasticsearch.out"
        self.run_dir = (
            Path(tempfile.mkdtemp(prefix="es-run-", dir=_shared_dir()))
            if _as_root()
            else base_dir / "run"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _prepare(self, home: Path) -> Path:
        """Data, logs and a copy of the config, owned by the user the server runs as."""
        run_dir = self.run_dir
        if not (run_dir / "config").exists():
            for sub in ("data", "logs"):
                (run_dir / sub).mkdir(parents=True, exist_ok=True)
            shutil.copytree(home / "config", run_dir / "config")
            if _as_root():
                for path in [run_dir, *run_dir.rglob("*")]:
                    os.chown(path, 65534, 65534)  # nobody:nogroup
        return run_dir

    def start(self, timeout: float = 180) -> Elasticsearch:
        home = install()
        run_dir = self._prepare(home)
        settings = {
            "discovery.type": "single-node",
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": self.transport_port,
            "path.data": run_dir / "data",
            "path.logs": run_dir / "logs",
            "xpack.security.enabled": "false",
            # A nearly full test disk must not turn the indexes read-only.
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            "action.destructive_requires_name": "false",
        }
        argv = [str(home / "bin" / "elasticsearch")]
        argv += [f"-E{key}={value}" for key, value in settings.items()]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ES_JAVA_HOME": str(_java_home()),
            "ES_PATH_CONF": str(run_dir / "config"),
            "ES_JAVA_OPTS": f"-Xms{HEAP} -Xmx{HEAP} -XX:-AlwaysPreTouch",
            "HOME": str(run_dir),
        }
        if _as_root():
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerSetupError(
                    f"starting Elasticsearch: it exited with {self.proc.returncode}:\n"
                    + self.logs()
                )
            try:
                health = httpx.get(f"{self.url}/_cluster/health", timeout=2)
                if health.status_code == 200 and health.json()["status"] in ("green", "yellow"):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise ServerSetupError(
            f"starting Elasticsearch: not healthy after {timeout:.0f}s\n" + self.logs()
        )

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, grace=30)
            self.proc = None

    def close(self) -> None:
        """Stops the server and removes its data."""
        self.stop()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

"""FerretDB 1.24 (SQLite handler): a real MongoDB-wire server for tests and benchmarks.

First use downloads the FerretDB module from the Go module proxy (``go mod download``), and
builds it with ``go install`` into ``~/.cache/cairn/ferretdb/<version>/bin``; later runs reuse
the binary. The module archive carries an empty ``build/version/version.txt``, which FerretDB's
own build tooling fills in from git; the build writes the release tag there, as FerretDB's
documentation says to do for builds outside its repository. Needs ``go`` on the PATH.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.servers.processes import (
    ServerSetupError,
    cache_dir,
    free_port,
    locked,
    run_step,
    terminate,
)

VERSION = "v1.24.0"
MODULE = "github.com/FerretDB/FerretDB"


def install() -> Path:
    """The path of the ferretdb binary, built once per version."""
    base = cache_dir("ferretdb") / VERSION
    binary = base / "bin" / "ferretdb"
    with locked(cache_dir("ferretdb") / ".lock"):
        if binary.exists():
            return binary
        go_env = {"GOFLAGS": "-mod=mod -buildvcs=false", "GOTOOLCHAIN": "local"}
        listing = run_step(
            f"downloading {MODULE}@{VERSION} from the Go module proxy (go mod download)",
            ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"],
            timeout=600,
            env=go_env,
            cwd=base.parent,
        )
        module_dir = Path(json.loads(listing)["Dir"])
        source = base / "src"
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(module_dir, source)
        for path in [source, *source.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
        (source / "build" / "version" / "version.txt").write_text(VERSION + "\n")
        run_step(
            f"building FerretDB {VERSION} (go install ./cmd/ferretdb)",
            ["go", "install", "./cmd/ferretdb"],
            timeout=1200,
            cwd=source,
            env={**go_env, "GOBIN": str(base / "bin.tmp"), "CGO_ENABLED": "0"},
        )
        (base / "bin.tmp").replace(base / "bin")
        shutil.rmtree(source, ignore_errors=True)
    return binary


class FerretDB:
    """``ferretdb --handler=sqlite`` as a child process; data under ``base_dir``.

    ``stop()`` then ``start()`` restarts it on the same port with the same data, which the
    outage tests use.
    """

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = base_dir / "ferretdb.log"

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self, timeout: float = 60) -> FerretDB:
        binary = install()
        data = self.base_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary),
            "--handler=sqlite",
            f"--sqlite-url=file:{data}/",
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--state-dir={self.base_dir}",
            "--telemetry=disable",
            "--debug-addr=-",
            "--log-level=warn",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerSetupError(
                    f"starting FerretDB: it exited with {self.proc.returncode}:\n" + self.logs()
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ServerSetupError(
            f"starting FerretDB: no listener after {timeout:.0f}s\n" + self.logs()
        )

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

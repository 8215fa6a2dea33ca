"""SeaweedFS (master, volume, filer and S3 gateway in one process): a real S3 server for tests.

First use downloads the SeaweedFS module from the Go module proxy (``go mod download``). Its
``go.mod`` has ``replace`` directives, which ``go install module@version`` refuses, so the
module is copied into a writable folder and built there with ``go build ./weed``; the binary is
cached in ``~/.cache/cairn/seaweedfs/<version>/weed`` and later runs reuse it. The build takes
about 5 minutes on 2 cores; it runs with ``-p 2`` so it leaves room for the rest of the machine.
Needs ``go`` on the PATH.

SeaweedFS publishes release tags that are not semantic versions, so the Go module proxy only
knows commits by pseudo-version: the pin below is one commit of the main branch.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.servers.processes import (
    ServerSetupError,
    cache_dir,
    free_port,
    locked,
    patient,
    run_step,
    terminate,
)

VERSION = "v0.0.0-20261109003541-7506e5f91cd6"
MODULE = "github.com/seaweedfs/seaweedfs"
# Test credentials of the one S3 identity the server accepts (signatures are checked).
ACCESS_KEY = "cairn-test-access"
SECRET_KEY = "cairn-test-secret-0123456789"
# A second identity that may list objects but not read them, for permission tests.
LIST_ONLY_ACCESS_KEY = "cairn-test-lister"
LIST_ONLY_SECRET_KEY = "cairn-test-lister-secret-0123"
REGION = "us-east-1"


def install() -> Path:
    """The path of the ``weed`` binary, built once per version."""
    base = cache_dir("seaweedfs") / VERSION
    binary = base / "weed"
    with locked(cache_dir("seaweedfs") / ".lock"):
        if binary.exists():
            return binary
        base.mkdir(parents=True, exist_ok=True)
        go_env = {"GOFLAGS": "-mod=mod -buildvcs=false", "GOTOOLCHAIN": "local"}
        listing = run_step(
            f"downloading {MODULE}@{VERSION} from the Go module proxy (go mod download)",
            ["go", "mod", "download", "-json", f"{MODULE}@{VERSION}"],
            timeout=900,
            env=go_env,
            cwd=base,
        )
        module_dir = Path(json.loads(listing)["Dir"])
        source = base / "src"
        shutil.rmtree(source, ignore_errors=True)
        shutil.copytree(module_dir, source)
        for path in [source, *source.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)  # the module cache is read-only
        run_step(
            f"building SeaweedFS {VERSION} (go build ./weed, a few minutes)",
            ["go", "build", "-p", "2", "-o", str(base / "weed.tmp"), "./weed"],
            timeout=3600,
            cwd=source,
            env={**go_env, "CGO_ENABLED": "0"},
        )
        (base / "weed.tmp").replace(binary)
        shutil.rmtree(source, ignore_errors=True)
    return binary


def s3_config() -> dict[str, object]:
    """The ``-s3.config`` identities: a key pair with every action and one that may only list,
    so requests must be signed (anonymous and wrongly signed requests are refused)."""
    return {
        "identities": [
            {
                "name": "cairn-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            },
            {
                "name": "cairn-test-lister",
                "credentials": [
                    {"accessKey": LIST_ONLY_ACCESS_KEY, "secretKey": LIST_ONLY_SECRET_KEY}
                ],
                "actions": ["List"],
            },
        ]
    }


class SeaweedFS:
    """``weed server -filer -s3`` as a child process, every port a free loopback one and the
    data under ``base_dir``.

    ``stop()`` then ``start()`` restarts it on the same ports with the same data, which the
    outage tests use.
    """

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.ports = {
            name: free_port()
            for name in (
                "master",
                "master.grpc",
                "volume",
                "volume.grpc",
                "filer",
                "filer.grpc",
                "s3",
                "s3.grpc",
                "metrics",
            )
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = base_dir / "weed.log"
        self.startup_s = 0.0

    @property
    def endpoint(self) -> str:
        """The S3 endpoint, as CAIRN_S3_ENDPOINT takes it."""
        return f"http://127.0.0.1:{self.ports['s3']}"

    def argv(self, binary: Path) -> list[str]:
        data = self.base_dir / "data"
        config = self.base_dir / "s3.json"
        config.write_text(json.dumps(s3_config()))
        port = self.ports
        return [
            str(binary),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            "-filer",
            "-s3",
            f"-s3.config={config}",
            f"-master.port={port['master']}",
            f"-master.port.grpc={port['master.grpc']}",
            "-master.telemetry=false",
            # Small volumes: the default reserves 30 GB of address space per volume file.
            "-master.volumeSizeLimitMB=64",
            "-volume.max=0",
            f"-volume.port={port['volume']}",
            f"-volume.port.grpc={port['volume.grpc']}",
            "-volume.preStopSeconds=0",
            f"-filer.port={port['filer']}",
            f"-filer.port.grpc={port['filer.grpc']}",
            f"-filer.localSocket={self.base_dir / 'filer.sock'}",
            f"-s3.port={port['s3']}",
            f"-s3.port.grpc={port['s3.grpc']}",
            f"-s3.localSocket={self.base_dir / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Prometheus metrics: the benchmarks count S3 requests on the server's side.
            f"-metricsPort={port['metrics']}",
            "-metricsIp=127.0.0.1",
        ]

    def start(self, timeout: float = 120) -> SeaweedFS:
        started = time.monotonic()
        binary = install()
        (self.base_dir / "data").mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(binary),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + patient(timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerSetupError(
                    f"starting SeaweedFS: it exited with {self.proc.returncode}:\n" + self.logs()
                )
            if self._ready():
                self.startup_s = time.monotonic() - started
                return self
            time.sleep(0.2)
        self.stop()
        raise ServerSetupError(
            f"starting SeaweedFS: the S3 gateway did not answer in {timeout:.0f}s\n" + self.logs()
        )

    def _ready(self) -> bool:
        """The S3 gateway answers and the filer behind it takes writes: an unsigned request is
        refused with S3's AccessDenied (the gateway checks signatures), and the filer's own
        port answers."""
        try:
            with socket.create_connection(("127.0.0.1", self.ports["filer"]), timeout=0.5):
                pass
            urllib.request.urlopen(self.endpoint + "/healthz", timeout=2).close()
        except (OSError, urllib.error.URLError):
            return False
        try:
            urllib.request.urlopen(self.endpoint + "/", timeout=2).close()
        except urllib.error.HTTPError as exc:
            return exc.code == 403
        except (OSError, urllib.error.URLError):
            return False
        raise ServerSetupError(
            "starting SeaweedFS: the S3 gateway answered an unsigned request; "
            "the -s3.config identities were not applied"
        )

    def request_counts(self) -> dict[str, int]:
        """S3 requests the gateway has answered since it started, by type (``LIST``,
        ``GET``, ``HEAD``, ...), from its Prometheus counter."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.ports['metrics']}/metrics", timeout=10
        ) as answer:
            text = answer.read().decode()
        counts: dict[str, int] = {}
        for line in text.splitlines():
            if not line.startswith("SeaweedFS_s3_request_total{"):
                continue
            labels, _, value = line.rpartition(" ")
            kind = labels.split('type="', 1)[1].split('"', 1)[0]
            counts[kind] = counts.get(kind, 0) + int(float(value))
        return counts

    def stop(self) -> None:
        if self.proc is not None:
            # Its volume server and filer stop within a quarter of a second of SIGTERM; then
            # the filer waits 15 s to flush its metadata change log (for subscribers, not the
            # objects' entries) to a volume server that is already gone, and drops it anyway.
            terminate(self.proc, grace=3)
            self.proc = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

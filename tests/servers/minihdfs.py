"""A Hadoop minicluster (NameNode, or an HA pair, and one DataNode) for tests and benchmarks.

First use resolves ``hadoop-minicluster`` from Maven Central into ``~/.cache/cairn/hadoop/m2``
(about 220 MB, once) and compiles ``hdfs/MiniHdfs.java``; later runs reuse both while
``hdfs/pom.xml``, the launcher and its log configuration are unchanged. Needs Java 11+ (``java``,
``javac``) and Maven (``mvn``) on the PATH.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import httpx

from tests.servers.processes import ServerSetupError, cache_dir, locked, run_step, terminate

HERE = Path(__file__).resolve().parent / "hdfs"
SUPERUSER = "hdfs"
# Hadoop 3.4 on Java 17: Jersey's JAXB and Hadoop's own reflection need these packages open.
ADD_OPENS = [
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in ("java.lang", "java.util", "java.io", "java.nio", "sun.nio.ch", "java.net")
]


def build_launcher() -> tuple[Path, str]:
    """(classes folder, classpath) of the launcher, built once per version of its sources."""
    sources = [HERE / "pom.xml", HERE / "MiniHdfs.java", HERE / "conf" / "log4j.properties"]
    key = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:16]
    base = cache_dir("hadoop")
    out = base / f"launcher-{key}"
    classes, cp_file = out / "classes", out / "classpath.txt"
    with locked(base / ".lock"):
        if not (cp_file.exists() and (classes / "MiniHdfs.class").exists()):
            out.mkdir(parents=True, exist_ok=True)
            run_step(
                "resolving hadoop-minicluster from Maven Central (mvn dependency:build-classpath)",
                [
                    "mvn",
                    "-B",
                    "-q",
                    f"-Dmaven.repo.local={base / 'm2'}",
                    "dependency:build-classpath",
                    f"-Dmdep.outputFile={out / 'classpath.tmp'}",
                ],
                timeout=1200,
                cwd=HERE,
            )
            classes.mkdir(exist_ok=True)
            deps = (out / "classpath.tmp").read_text().strip()
            run_step(
                "compiling the minicluster launcher (javac MiniHdfs.java)",
                ["javac", "-nowarn", "-cp", deps, "-d", str(classes), str(HERE / "MiniHdfs.java")],
                timeout=300,
            )
            (out / "classpath.tmp").replace(cp_file)
    classpath = os.pathsep.join([str(HERE / "conf"), str(classes), cp_file.read_text().strip()])
    return classes, classpath


class MiniHdfs:
    """``java MiniHdfs`` as a child process; see hdfs/MiniHdfs.java for what it runs."""

    def __init__(
        self, base_dir: Path, *, ha: bool = False, ls_limit: int = 1000, heap_mb: int = 768
    ) -> None:
        self.base_dir = base_dir
        self.ha = ha
        self.ls_limit = ls_limit
        self.heap_mb = heap_mb
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = base_dir / "minihdfs.log"
        self.namenodes: list[str] = []
        self.active = 0
        self.datanode_http = ""
        self.superuser = SUPERUSER
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.startup_s = 0.0

    # -- life cycle --

    def start(self, timeout: float = 180) -> MiniHdfs:
        started = time.monotonic()
        _, classpath = build_launcher()
        java = shutil.which("java")
        if java is None:
            raise ServerSetupError("starting the minicluster: 'java' is not on the PATH")
        shutil.rmtree(self.base_dir / "cluster", ignore_errors=True)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            java,
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            *ADD_OPENS,
            "-cp",
            classpath,
            "MiniHdfs",
            str(self.base_dir / "cluster"),
            "--ls-limit",
            str(self.ls_limit),
            *(["--ha"] if self.ha else []),
        ]
        env = {**os.environ, "HADOOP_USER_NAME": SUPERUSER}
        log: IO[bytes]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
                cwd=self.base_dir,
            )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        try:
            self._apply(self._next_line(timeout, "starting the minicluster"))
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        return self

    def _read_stdout(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                if line.startswith("{"):
                    self._lines.put(line)
        self._lines.put(None)

    def _next_line(self, timeout: float, step: str) -> dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise ServerSetupError(
                f"{step}: no answer after {timeout:.0f}s; log tail:\n{self.log_tail()}"
            ) from None
        if line is None:
            code = self.proc.wait(timeout=10) if self.proc else None
            raise ServerSetupError(
                f"{step}: the JVM exited (code {code}); log tail:\n{self.log_tail()}"
            )
        return dict(json.loads(line))

    def _apply(self, info: dict[str, Any]) -> None:
        if "error" in info:
            raise ServerSetupError(f"minicluster: {info['error']}")
        self.namenodes = list(info["namenodes"])
        self.active = int(info["active"])
        self.datanode_http = info["datanode_http"]
        self.superuser = info["superuser"]

    def failover(self) -> None:
        """Makes the standby NameNode active (HA clusters only)."""
        assert self.proc is not None and self.proc.stdin is not None and self.ha
        self.proc.stdin.write("failover\n")
        self.proc.stdin.flush()
        self._apply(self._next_line(60, "failover"))

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # end of stdin: the launcher shuts the cluster down
        try:
            self.proc.wait(timeout=30)
            self._lines.get(timeout=10)  # the reader saw end of output and closed the pipe
        except (subprocess.TimeoutExpired, queue.Empty):
            terminate(self.proc)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def __enter__(self) -> MiniHdfs:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses --

    @property
    def active_url(self) -> str:
        return self.namenodes[self.active]

    @property
    def standby_url(self) -> str:
        return self.namenodes[1 - self.active]

    @property
    def authority(self) -> str:
        """host:port of the active NameNode's HTTP server, for hdfs:// URLs."""
        return self.active_url.removeprefix("http://")

    def admin(self, user: str | None = None) -> WebHdfsAdmin:
        return WebHdfsAdmin(self.active_url, user or self.superuser)


class WebHdfsAdmin:
    """Sets up trees over plain WebHDFS (as the superuser by default); test-side only."""

    def __init__(self, namenode: str, user: str) -> None:
        self.base = namenode.rstrip("/") + "/webhdfs/v1"
        self.user = user
        self.http = httpx.Client(timeout=60)

    def close(self) -> None:
        self.http.close()

    def _url(self, path: str) -> str:
        from urllib.parse import quote

        return self.base + quote("/" + path.lstrip("/"))

    def _op(self, method: str, path: str, op: str, **params: Any) -> httpx.Response:
        response = self.http.request(
            method, self._url(path), params={"op": op, "user.name": self.user, **params}
        )
        if response.status_code >= 400:
            raise RuntimeError(f"WebHDFS {op} {path}: {response.status_code} {response.text}")
        return response

    def mkdirs(self, path: str, permission: str | None = None) -> None:
        extra = {"permission": permission} if permission else {}
        self._op("PUT", path, "MKDIRS", **extra)

    def put(self, path: str, data: bytes, permission: str | None = None) -> None:
        extra = {"permission": permission} if permission else {}
        first = self._op("PUT", path, "CREATE", overwrite="true", noredirect="true", **extra)
        location = first.json()["Location"]
        second = self.http.put(location, content=data)
        if second.status_code >= 400:
            raise RuntimeError(f"WebHDFS CREATE {path} (DataNode): {second.status_code}")

    def delete(self, path: str) -> None:
        self._op("DELETE", path, "DELETE", recursive="true")

    def chmod(self, path: str, permission: str) -> None:
        self._op("PUT", path, "SETPERMISSION", permission=permission)

    def chown(self, path: str, owner: str) -> None:
        self._op("PUT", path, "SETOWNER", owner=owner)

    def upload_tree(self, local: Path, remote: str, *, threads: int = 8) -> int:
        """Copies a local folder to ``remote``; folders first, then files in parallel."""
        files = []
        self.mkdirs(remote)
        for dirpath, dirnames, filenames in os.walk(local):
            rel = Path(dirpath).relative_to(local).as_posix()
            base = remote.rstrip("/") + ("" if rel == "." else "/" + rel)
            for d in dirnames:
                self.mkdirs(f"{base}/{d}")
            files += [(Path(dirpath) / f, f"{base}/{f}") for f in filenames]
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda item: self.put(item[1], item[0].read_bytes()), files))
        return len(files)

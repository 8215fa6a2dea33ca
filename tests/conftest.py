"""Shared fixtures: real servers on free loopback ports, never mocks of our own parts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from cairn.models import AssetWrite
from cairn.settings import Settings
from catalogue_service.backends.base import PreparedWrite, SearchHits
from catalogue_service.backends.sqlite import SQLiteStore
from tests.servers.fixtures import (  # noqa: F401
    azurite_server,
    hdfs_server,
    hive_metastore,
    kafka_broker,
    production_servers,
    s3_server,
    use_env,
)
from tests.servers.processes import (
    free_port,
    patient,
    refused_port,
    stop_group,
    terminate,
)

ROOT = Path(__file__).resolve().parent.parent

# Where a service or command a test starts looks for the catalogue or the feature store when
# the test names neither: the port that refuses every connection (``refused_port``). The
# defaults (127.0.0.1:8001 and :8002) are those of the developer's own `make up`, which the
# README runs beside `make test`; a feature store started with `Settings(data_dir=...)`
# registered its test sets in that catalogue.
NOWHERE = f"http://127.0.0.1:{refused_port()}"
os.environ["CAIRN_CATALOGUE_URL"] = NOWHERE
os.environ["CAIRN_FEATURESTORE_URL"] = NOWHERE


class ThreadServer:
    """A uvicorn server in a thread of the test process: real HTTP, cheap to start."""

    def __init__(self, app: object):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class ProcessServer:
    """``cairn serve <service>`` as a child process, for restart and kill -9 tests."""

    def __init__(self, service: str, env: dict[str, str], log_path: Path):
        self.service = service
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, f"CAIRN_{service.upper()}_PORT": str(self.port)}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ProcessServer:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the handle
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cairn", "serve", self.service, "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + patient(timeout)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.service} exited with {self.proc.returncode}:\n"
                    + self.log_path.read_text(errors="replace")[-3000:]
                )
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()  # never leave a half-started server to the next test
        raise RuntimeError(f"{self.service} was not ready after {patient(timeout):.0f}s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")


def cairn_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env["CAIRN_DATA_DIR"] = str(data_dir)
    env["CAIRN_CATALOGUE_URL"] = env["CAIRN_FEATURESTORE_URL"] = NOWHERE
    env.update(extra)
    return env


BACKENDS = ["sqlite", "mongo"]


def backend_settings(request: pytest.FixtureRequest, backend: str, **fields: object) -> Settings:
    """Settings for a fresh, empty store of ``backend``; mongo starts the session's servers."""
    if backend == "mongo":
        fields = {**request.getfixturevalue("production_servers").settings(), **fields}
    return Settings(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The contract suites run once per backend: a user switching sees the same behaviour."""
    return str(request.param)


@pytest.fixture
def settings(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Settings:
    return backend_settings(request, backend, data_dir=tmp_path / "data")


@pytest.fixture
def catalogue(settings: Settings) -> Iterator[ThreadServer]:
    from catalogue_service.app import create_app

    with ThreadServer(create_app(settings)) as server:
        yield server


@pytest.fixture
def api(catalogue: ThreadServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=catalogue.url + "/api/v1", timeout=30) as client:
        yield client


@pytest.fixture
def catalogue_process(tmp_path: Path) -> Iterator[ProcessServer]:
    server = ProcessServer("catalogue", cairn_env(tmp_path / "data"), tmp_path / "catalogue.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def catalogue_process_on_backend(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> Iterator[ProcessServer]:
    """``cairn serve catalogue`` on ``backend``, with a fresh store (mongo: the session's
    servers, a database of its own)."""
    extra = request.getfixturevalue("production_servers").env() if backend == "mongo" else {}
    env = cairn_env(tmp_path / "data", **extra)
    server = ProcessServer("catalogue", env, tmp_path / "catalogue.log").start(timeout=60)
    yield server
    server.stop()


def searched_ids(client: httpx.Client, **params: str) -> set[str]:
    """Ids of every asset a catalogue search finds, following its cursors to the end."""
    found: set[str] = set()
    cursor = None
    while True:
        page = {**params, "limit": "1000", "facets": "false"}
        if cursor:
            page["cursor"] = cursor
        response = client.get("/api/v1/assets", params=page)
        assert response.status_code == 200, response.text
        body = response.json()
        found.update(item["id"] for item in body["items"])
        cursor = body["next_cursor"]
        if not cursor:
            return found


def open_store(path: Path) -> SQLiteStore:
    """An embedded catalogue store on ``path``, opened (the caller closes it)."""
    store = SQLiteStore(path)
    asyncio.run(store.open())
    return store


def write_assets(store: SQLiteStore, items: list[dict[str, Any]]) -> None:
    """Writes ``items`` (asset JSON) straight into an embedded store, as one bulk request."""
    writes = [PreparedWrite.of(i, AssetWrite.model_validate(x)) for i, x in enumerate(items)]
    results = asyncio.run(store.upsert(writes, datetime.now(UTC)))
    assert all(r.status != "error" for r in results), results


def hit_ids(hits: SearchHits) -> list[str]:
    """The asset ids of a store's search answer, in order."""
    return [orjson.loads(doc)["id"] for doc in hits.docs]


def run_cairn(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [sys.executable, "-m", "cairn", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        # pytest cuts the exception's captured output to a line; a hang needs all of it.
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        raise AssertionError(
            f"cairn {' '.join(args)} still running after {timeout}s; its stderr:\n{said[-8000:]}"
        ) from None


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """Lines a child prints until one holds ``marker``, the child exits, or ``timeout`` passes;
    read in a thread so a silent child cannot hang the test past its deadline."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if marker in line:
            break
    return "".join(seen)


@contextlib.contextmanager
def cairn_up(env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``cairn up`` as a child in its own session, and what it printed up to "Press Ctrl-C";
    stopped with the services it spawned however the test ends."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cairn", "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc, read_until(proc, "Press Ctrl-C", timeout=patient(180))
    finally:
        stop_group(proc)

"""Installing, starting and stopping the servers tests run against."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


# Ports free_port has handed out in this test process: never handed out twice.
_GIVEN: set[int] = set()
_GIVEN_LOCK = threading.Lock()
# Where free_port looks, below the kernel's ephemeral range (see free_port).
LOWEST_PORT = 20000


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port free on the loopback interface now, for a server about to start on it.

    Taken below the kernel's ephemeral range, not with ``bind(("127.0.0.1", 0))``: the kernel
    gives the outgoing connections of servers already running (SeaweedFS's volume server
    calling its master, say) ports from that range, and one could take a port handed out here
    before its own server binds it. Never the same port twice in one test process either, so
    two servers built before either starts get two ports.
    """
    low = _ephemeral_low()
    # A machine whose ephemeral range starts lower than that leaves the pick to the kernel.
    pick = random.Random() if low - LOWEST_PORT >= 1000 else None  # seeded from the OS
    with _GIVEN_LOCK:
        while True:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", pick.randrange(LOWEST_PORT, low) if pick else 0))
                except OSError:
                    continue  # taken now: another
                port = int(s.getsockname()[1])
            if port not in _GIVEN:
                _GIVEN.add(port)
                return port


# Bound for as long as the test process runs, never listening (see refused_port).
_REFUSING: list[socket.socket] = []


def refused_port() -> int:
    """A loopback TCP port where every connection is refused, for the whole test process:
    bound and never listening, so no server started later can be given it. A port from
    ``free_port`` that a test meant to stay dead was given to the next server the test
    started (a UI asked "its catalogue" and reached itself)."""
    if not _REFUSING:
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        _REFUSING.append(held)
    return int(_REFUSING[0].getsockname()[1])


class Startable(Protocol):
    def start(self) -> object: ...


def start_together(*servers: Startable) -> None:
    """Starts servers in parallel threads (each spends most of its start-up waiting); raises
    the first failure in the caller's thread."""
    failures: list[BaseException] = []

    def run(server: Startable) -> None:
        try:
            server.start()
        except BaseException as exc:  # raised below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def patient(seconds: float) -> float:
    """A timeout that grows with the machine's load: a test waits longer on a busy 2-core CI
    machine instead of failing, and keeps its bound on an idle one."""
    per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * max(1.0, per_core)


def wait_ready(
    proc: subprocess.Popen[Any],
    what: str,
    probe: Callable[[], object],
    retry_on: tuple[type[BaseException], ...],
    timeout: float,
    log_tail: Callable[[], str],
) -> None:
    """Calls ``probe`` once a second until it returns; fails loudly, with the server's log
    tail, when ``what`` exits first or does not answer within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerSetupError(
                f"{what} exited (code {proc.returncode}); log tail:\n{log_tail()}"
            )
        try:
            probe()
            return
        except retry_on as exc:
            last = exc
            time.sleep(1)
    raise ServerSetupError(
        f"{what} did not answer within {timeout:.0f}s ({last}); log tail:\n{log_tail()}"
    )


def stop_group(proc: subprocess.Popen[Any], first: int = signal.SIGINT, grace: float = 30) -> None:
    """Stops a child started with ``start_new_session=True`` and everything it spawned: the
    signal first, then SIGKILL to the whole process group, so a failed test never leaves a
    process (or an open pipe) behind for the next one."""
    try:
        if proc.poll() is None:
            proc.send_signal(first)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=patient(grace))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def untimed(fn: Callable[[], T]) -> T:
    """``fn()`` with pytest-timeout's per-test alarm paused: that alarm covers fixture set-up,
    and a first-time build of a server (minutes on a busy machine) is not a hung test. The
    build's own step timeout still bounds it; the alarm resumes with the time it had left."""
    remaining, interval = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        return fn()
    finally:
        if remaining:
            signal.setitimer(signal.ITIMER_REAL, remaining, interval)


def terminate(proc: subprocess.Popen[Any], grace: float = 10) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class ServerSetupError(RuntimeError):
    """A test server could not be installed or started; the message names the failed step."""


def cache_dir(name: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = base / "cairn" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (a benchmark and a test run may install at once)."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_step(
    step: str,
    argv: list[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    tool = shutil.which(argv[0])
    if tool is None:
        raise ServerSetupError(f"{step}: '{argv[0]}' is not on the PATH")
    try:
        done = subprocess.run(
            [tool, *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
        )
    except subprocess.TimeoutExpired:
        raise ServerSetupError(f"{step}: still running after {timeout:.0f}s") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        raise ServerSetupError(f"{step} failed with exit code {done.returncode}:\n{output}")
    return done.stdout

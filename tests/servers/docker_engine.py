"""A Docker engine for the compose-stack test: the machine's own, or one started here.

When ``docker info`` already answers (a CI host with Docker), that engine is used and left
running. Otherwise Debian's ``docker.io`` is installed when ``dockerd`` is missing, and
``dockerd`` is started as root on sockets of its own under /run/cairn-docker, with no bridge
and no iptables rules (its containers use the host's network), keeping images in
``~/.cache/cairn/docker/engine`` so a second run reuses them; ``stop()`` shuts it down and
checks that none of its processes (containerd, shims, containers) is left.

``tidy()`` leaves that engine with only what the next run reuses: tagged images, and BuildKit's
cache trimmed to ``BUILD_CACHE_BOUND``. Debian's dockerd (20.10) never collects BuildKit's cache
by itself (its builder GC is off unless configured), and every build of changed code adds a new
414 MB layer of Cairn's installed wheels to it: 27 runs had left 11 GB there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.servers.processes import ServerSetupError, cache_dir, run_step, terminate

RUN_DIR = Path("/run/cairn-docker")
SOCKET = RUN_DIR / "docker.sock"
# BuildKit's cache kept between runs (bytes not shared with an image, as `docker system df`
# counts them). BuildKit drops the least used, least recently used records first (measured: it
# kept the dependency wheels, used 14 times, over a newer install layer used twice). What a
# build reuses measured 130 MB: the wheels of Cairn's dependencies (116 MB, so a change to
# Cairn's code fetches none again) and the small steps of the current build; the steps the
# image holds are shared, not counted. An older build's 414 MB install layer, whose image is
# gone, does not fit beside them.
BUILD_CACHE_BOUND = 500_000_000


def apt_install(*packages: str) -> None:
    """Installs Debian packages (root only), refreshing the package lists first."""
    if os.geteuid() != 0:
        raise ServerSetupError(f"installing {' '.join(packages)}: needs root (apt-get)")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    run_step("apt-get update", ["apt-get", *lock, "update"], timeout=900, env=env)
    run_step(
        f"installing {' '.join(packages)} (apt-get install)",
        ["apt-get", *lock, "install", "--yes", "--no-install-recommends", *packages],
        timeout=1800,
        env=env,
    )


def _answers(env: dict[str, str]) -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env},
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def _processes_under(path: Path) -> list[str]:
    """Command lines of live processes that name ``path`` (dockerd, containerd, shims)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\x00", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


def _unmount_under(path: Path) -> None:
    """Unmounts what dockerd leaves mounted under ``path`` (its reference to the host's network
    namespace, exec-root/netns/default), deepest first, so the folder can be removed."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{path}/")), reverse=True):
        subprocess.run(["umount", mount], capture_output=True, timeout=60, check=False)


class DockerEngine:
    """``env`` is what a docker or compose command needs to reach the engine."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.env: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        # Processes of the engine that outlived its shutdown and had to be killed.
        self.leaked: list[str] = []

    @property
    def started_here(self) -> bool:
        return self.proc is not None

    def start(self, timeout: float = 120) -> DockerEngine:
        if _answers({}):
            return self
        if shutil.which("docker") is None or shutil.which("dockerd") is None:
            apt_install("docker.io")
            if _answers({}):  # the package started the machine's engine
                return self
        if os.geteuid() != 0:
            raise ServerSetupError("starting dockerd: needs root")
        self._stop_stale()
        _unmount_under(RUN_DIR)
        shutil.rmtree(RUN_DIR, ignore_errors=True)
        RUN_DIR.mkdir(parents=True)
        argv = [
            str(shutil.which("dockerd")),
            f"--host=unix://{SOCKET}",
            f"--exec-root={RUN_DIR / 'exec'}",
            f"--pidfile={RUN_DIR / 'dockerd.pid'}",
            f"--data-root={cache_dir('docker') / 'engine'}",
            # No docker0 bridge, no NAT rules and no change to the host's forwarding: the
            # containers use the host's network, and the host's firewall stays as it is.
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--userland-proxy=false",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.env = {"DOCKER_HOST": f"unix://{SOCKET}"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise ServerSetupError(f"starting dockerd: it exited with {code}:\n{self.logs()}")
            if SOCKET.exists() and _answers(self.env):
                return self
            time.sleep(0.5)
        self.stop()
        raise ServerSetupError(f"starting dockerd: no answer after {timeout:.0f}s\n{self.logs()}")

    def _stop_stale(self) -> None:
        """Stops the engine of an earlier run that was killed before it could stop it (found
        by its pid file under RUN_DIR, so no other dockerd is ever touched)."""
        pidfile = RUN_DIR / "dockerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            pid, cmdline = 0, ""
        if pid and f"unix://{SOCKET}" in cmdline:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 90
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.5)
        for line in _processes_under(RUN_DIR):
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)

    def stop(self) -> None:
        """Stops dockerd if it was started here (it stops its containers and containerd)."""
        if self.proc is None:
            return
        terminate(self.proc, grace=90)
        self.proc = None
        deadline = time.monotonic() + 30
        while _processes_under(RUN_DIR) and time.monotonic() < deadline:
            time.sleep(0.5)
        self.leaked = _processes_under(RUN_DIR)
        for line in self.leaked:  # a shim whose dockerd died: end it too
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        _unmount_under(RUN_DIR)
        shutil.rmtree(RUN_DIR, ignore_errors=True)

    def _docker(self, step: str, *args: str) -> str:
        return run_step(step, ["docker", *args], timeout=600, env=self.env)

    def tidy(self) -> None:
        """Removes from an engine started here what no later run reuses: stopped containers,
        unused volumes, dangling images (earlier builds of a tag, leftovers of a failed build)
        and BuildKit's cache above ``BUILD_CACHE_BOUND``. Tagged images stay. A machine's own
        engine is left as it is: its other images and cache are not ours."""
        if not self.started_here:
            return
        self._docker("removing stopped containers", "container", "prune", "--force")
        self._docker("removing unused volumes", "volume", "prune", "--force")
        self._docker("removing dangling images", "image", "prune", "--force")
        self._docker(
            "trimming the build cache",
            "builder", "prune", "--force", "--keep-storage", str(BUILD_CACHE_BOUND),
        )  # fmt: skip

    def build_cache_bytes(self) -> int:
        """BuildKit's cache not shared with an image, as the engine reports it."""
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(SOCKET))) as client:
            response = client.get("http://docker/system/df", timeout=120)
        response.raise_for_status()
        records = response.json().get("BuildCache") or []
        return sum(int(record["Size"]) for record in records if not record["Shared"])

    def leftovers(self) -> list[str]:
        """What ``tidy()`` should have removed and the engine still lists."""
        found = []
        listings = {
            "container": ("ps", "--all", "--format", "{{.ID}} {{.Image}} {{.Status}}"),
            "volume": ("volume", "ls", "--quiet"),
            "dangling image": ("images", "--filter", "dangling=true", "--format", "{{.ID}}"),
        }
        for kind, args in listings.items():
            found += [
                f"{kind} {line}" for line in self._docker(f"docker {args[0]}", *args).splitlines()
            ]
        cache = self.build_cache_bytes()
        if cache > BUILD_CACHE_BOUND:
            found.append(f"build cache of {cache} bytes, over {BUILD_CACHE_BOUND}")
        return found

    def tags(self) -> list[str]:
        """``repository:tag`` of every tagged image in the engine."""
        listing = self._docker("docker images", "images", "--format", "{{.Repository}}:{{.Tag}}")
        return sorted(tag for tag in listing.split() if "<none>" not in tag)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

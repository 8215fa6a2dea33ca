"""Docker Compose v2: ``docker compose config`` for the deploy test, and a whole stack for the
compose-stack test (``ComposeStack``).

Debian's docker client comes without the compose plugin. When ``docker compose`` does not
answer, Compose is built once from the Go module proxy (``go install``) into
``~/.cache/cairn/compose/<version>/docker-compose`` and run directly, which is the same
program the plugin is. ``config`` only reads files: no Docker engine is needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.servers.processes import ServerSetupError, cache_dir, locked, run_step

VERSION = "v2.40.3"
PACKAGE = "github.com/docker/compose/v2/cmd"


def _plugin_works() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        done = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def install() -> Path:
    base = cache_dir("compose") / VERSION
    binary = base / "docker-compose"
    with locked(cache_dir("compose") / ".lock"):
        if binary.exists():
            return binary
        build = base / "build"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        (build / "go.mod").write_text("module cairn.local/compose-build\n\ngo 1.24\n")
        go_env = {"GOFLAGS": "-mod=mod -buildvcs=false", "GOTOOLCHAIN": "local"}
        run_step(
            f"resolving Docker Compose {VERSION} from the Go module proxy (go get)",
            ["go", "get", f"{PACKAGE}@{VERSION}"],
            timeout=1200,
            cwd=build,
            env=go_env,
        )
        run_step(
            f"building Docker Compose {VERSION} (go install {PACKAGE})",
            ["go", "install", PACKAGE],
            timeout=1800,
            cwd=build,
            env={**go_env, "GOBIN": str(build / "bin"), "CGO_ENABLED": "0"},
        )
        (build / "bin" / "cmd").replace(binary)
        shutil.rmtree(build, ignore_errors=True)
    return binary


def compose_command() -> list[str]:
    """The argv prefix that runs Compose: the docker plugin if present, else our build."""
    if _plugin_works():
        return ["docker", "compose"]
    try:
        return [str(install())]
    except ServerSetupError:
        raise
    except OSError as exc:
        raise ServerSetupError(f"installing Docker Compose: {exc}") from exc


class ComposeStack:
    """``docker compose -p <project> -f <file>...`` against an engine; ``env`` adds variables
    the compose files interpolate (and DOCKER_HOST for the engine)."""

    def __init__(self, project: str, files: list[Path], env: dict[str, str], cwd: Path) -> None:
        self.project = project
        self.files = files
        self.env = env
        self.cwd = cwd

    def argv(self, *args: str) -> list[str]:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        return [*compose_command(), "-p", self.project, *files, *args]

    def run(self, step: str, *args: str, timeout: float = 600) -> str:
        argv = self.argv(*args)
        return run_step(step, argv, timeout=timeout, cwd=self.cwd, env=self.env)

    def down(self) -> None:
        """Removes the project's containers, networks and volumes (also those of a run that
        was killed half-way)."""
        self.run(
            f"docker compose down of {self.project}",
            "down", "--volumes", "--remove-orphans", "--timeout", "20",
        )  # fmt: skip

    def volumes(self) -> list[str]:
        """The project's volumes still in the engine."""
        label = f"label=com.docker.compose.project={self.project}"
        listing = run_step(
            "docker volume ls",
            ["docker", "volume", "ls", "--quiet", "--filter", label],
            timeout=60,
            env=self.env,
        )
        return listing.split()

    def diagnostics(self) -> str:
        """``ps`` and the last log lines of every service, for a failure message."""
        parts = []
        for args in (("ps", "--all"), ("logs", "--no-color", "--tail", "60")):
            done = subprocess.run(
                self.argv(*args),
                capture_output=True,
                text=True,
                timeout=120,
                cwd=self.cwd,
                env={**os.environ, **self.env},
            )
            parts.append(f"$ docker compose {' '.join(args)}\n{done.stdout}{done.stderr}")
        return "\n".join(parts)

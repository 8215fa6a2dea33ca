"""Docker Compose v2, to check docker-compose.yml with ``docker compose config``.

Debian's docker client comes without the compose plugin. When ``docker compose`` does not
answer, Compose is built once from the Go module proxy (``go install``) into
``~/.cache/cairn/compose/<version>/docker-compose`` and run directly, which is the same
program the plugin is. ``config`` only reads files: no Docker engine is needed.
"""

from __future__ import annotations

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

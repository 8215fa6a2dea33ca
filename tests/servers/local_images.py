"""Local images for the compose-stack test, made from Debian's packages (no image registry is
reachable from the test machines).

- debian: a bookworm root file system made with ``debootstrap`` from the machine's own Debian
  mirror, loaded with ``docker import``; the tarball is cached in ``~/.cache/cairn/docker/``.
- python: Debian's python3 and venv on it, the build argument that replaces
  ``python:3.11-slim-bookworm`` in Cairn's Dockerfile.
- ferretdb: the FerretDB binary the tests build (tests/servers/ferretdb.py), standing in for
  ``mongo:8.0``.
- elasticsearch: the integ-test zip the tests use (tests/servers/elasticsearch.py) on Debian's
  JDK 17, standing in for the official image.

Each tag carries a digest of what the image is made from, so an image already in the engine is
reused as it is, and a changed recipe makes a new one (the older tags are removed).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.servers import elasticsearch, ferretdb
from tests.servers.docker_engine import DockerEngine, apt_install
from tests.servers.processes import ServerSetupError, cache_dir, locked, run_step

RECIPES = Path(__file__).resolve().parent / "images"
REPO = "cairn-local"


def _docker(engine: DockerEngine, step: str, *args: str, timeout: float = 1800) -> str:
    # The classic builder: these recipes need nothing newer, and it needs no buildx plugin.
    env = {**engine.env, "DOCKER_BUILDKIT": "0"}
    return run_step(step, ["docker", *args], timeout=timeout, env=env)


def _has_image(engine: DockerEngine, tag: str) -> bool:
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        env={**os.environ, **engine.env},
        timeout=60,
    )
    return done.returncode == 0


def _drop_other_tags(engine: DockerEngine, name: str, keep: str) -> None:
    listing = _docker(engine, f"listing {name} images", "images", "--format", "{{.Tag}}", name)
    for tag in set(listing.split()) - {keep, "<none>"}:
        _docker(engine, f"removing {name}:{tag}", "rmi", f"{name}:{tag}", timeout=300)


def _digest(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()[:12]


def _link_tree(source: Path, target: Path) -> None:
    """Copies a folder into a build context by hard links where the file system allows."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link, symlinks=True)


# --- the Debian root file system ---------------------------------------------------------------


def _os_release() -> dict[str, str]:
    pairs = re.findall(r'^(\w+)="?([^"\n]*)"?$', Path("/etc/os-release").read_text(), re.M)
    return dict(pairs)


def _host_debian_mirrors() -> tuple[str, str]:
    """The machine's Debian archive and security archive URLs (apt sources, both formats)."""
    uris: list[str] = []
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for path in sources:
        if path.is_file():
            text = path.read_text(errors="replace")
            uris += re.findall(r"^URIs:\s*(\S+)", text, re.M)
            uris += re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)
    main = next((u for u in uris if u.rstrip("/").endswith("/debian")), None)
    security = next((u for u in uris if u.rstrip("/").endswith("/debian-security")), None)
    return (
        (main or "http://deb.debian.org/debian").rstrip("/"),
        (security or "http://deb.debian.org/debian-security").rstrip("/"),
    )


def debian_rootfs() -> tuple[Path, str]:
    """The cached tarball of a minimal Debian root (made once) and the suite it holds."""
    release = _os_release()
    if release.get("ID") != "debian" or not release.get("VERSION_CODENAME"):
        raise ServerSetupError(
            "making the Debian base image: the machine is not Debian "
            f"({release.get('PRETTY_NAME', 'unknown')}), so its apt mirror cannot be used"
        )
    suite = release["VERSION_CODENAME"]
    cache = cache_dir("docker")
    tarball = cache / f"debian-{suite}-minbase.tar"
    with locked(cache / ".rootfs.lock"):
        if tarball.exists():
            return tarball, suite
        if shutil.which("debootstrap") is None:
            apt_install("debootstrap")
        mirror, security = _host_debian_mirrors()
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            root = Path(scratch) / "root"
            run_step(
                f"making a Debian {suite} root file system (debootstrap from {mirror})",
                ["debootstrap", "--variant=minbase", "--include=ca-certificates", suite,
                 str(root), mirror],
                timeout=1800,
            )  # fmt: skip
            (root / "etc/apt/sources.list").write_text(
                f"deb {mirror} {suite} main\n"
                f"deb {mirror} {suite}-updates main\n"
                f"deb {security} {suite}-security main\n"
            )
            for leftover in ("var/lib/apt/lists", "var/cache/apt"):
                shutil.rmtree(root / leftover, ignore_errors=True)
                (root / leftover).mkdir(parents=True)
            partial = tarball.with_suffix(".part")
            run_step(
                f"packing the Debian {suite} root file system",
                ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."],
                timeout=600,
            )
            partial.replace(tarball)
    return tarball, suite


def debian_image(engine: DockerEngine) -> str:
    tarball, suite = debian_rootfs()
    stat = tarball.stat()
    tag = f"{REPO}/debian:{suite}-{_digest(tarball.name, str(stat.st_size), str(stat.st_mtime))}"
    if not _has_image(engine, tag):
        _docker(
            engine,
            f"importing {tarball} as {tag}",
            "import", "--change", 'CMD ["bash"]', str(tarball), tag,
        )  # fmt: skip
        _drop_other_tags(engine, f"{REPO}/debian", tag.rsplit(":", 1)[1])
    return tag


# --- images built on it ------------------------------------------------------------------------


def _build(
    engine: DockerEngine,
    name: str,
    base: str,
    key: list[bytes | str],
    fill_context: Callable[[Path], None],
) -> str:
    """Builds ``RECIPES/<name>.Dockerfile`` on ``base`` unless an image of that recipe exists."""
    recipe = RECIPES / f"{name}.Dockerfile"
    tag = f"{REPO}/{name}:{_digest(recipe.read_bytes(), base, *key)}"
    if _has_image(engine, tag):
        return tag
    with tempfile.TemporaryDirectory(dir=cache_dir("docker")) as context:
        fill_context(Path(context))
        _docker(
            engine,
            f"building the local {name} image ({recipe.name})",
            # --force-rm: a failed step's container goes too (the classic builder keeps it).
            "build", "--force-rm", "--network", "host", "--build-arg", f"BASE={base}",
            "--file", str(recipe), "--tag", tag, context,
        )  # fmt: skip
    _drop_other_tags(engine, f"{REPO}/{name}", tag.rsplit(":", 1)[1])
    return tag


def _host_trust() -> tuple[list[Path], bytes]:
    """The machine's extra CA certificates and pip configuration (a TLS-inspecting proxy
    between the build and PyPI is trusted inside the image as it is outside)."""
    certificates = sorted(Path("/usr/local/share/ca-certificates").rglob("*.crt"))
    pip_conf = Path("/etc/pip.conf")
    return certificates, pip_conf.read_bytes() if pip_conf.is_file() else b""


def python_image(engine: DockerEngine, base: str) -> str:
    certificates, pip_conf = _host_trust()

    def fill(context: Path) -> None:
        (context / "ca-certificates").mkdir()
        for certificate in certificates:
            shutil.copy(certificate, context / "ca-certificates" / certificate.name)
        (context / "pip.conf").write_bytes(pip_conf)

    key = [pip_conf, *(c.read_bytes() for c in certificates)]
    return _build(engine, "python", base, key, fill)


def ferretdb_image(engine: DockerEngine, python_base: str) -> str:
    binary = ferretdb.install()
    ping = RECIPES / "mongo_ping.py"

    def fill(context: Path) -> None:
        shutil.copy2(binary, context / "ferretdb")
        shutil.copy2(ping, context / "mongo_ping.py")

    return _build(engine, "ferretdb", python_base, [ferretdb.VERSION, ping.read_bytes()], fill)


def elasticsearch_image(engine: DockerEngine, base: str) -> str:
    entrypoint = RECIPES / "elasticsearch-entrypoint.sh"

    def fill(context: Path) -> None:
        _link_tree(elasticsearch.install(), context / "elasticsearch")
        shutil.copy2(entrypoint, context / "elasticsearch-entrypoint.sh")

    key = [elasticsearch.VERSION, entrypoint.read_bytes()]
    return _build(engine, "elasticsearch", base, key, fill)

"""Jars resolved from Maven Central for a test server, cached per version of its pom.xml, and
single files downloaded from it with their published SHA-1 checked."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import httpx

from tests.servers.processes import ServerSetupError, cache_dir, locked, run_step


def resolve_libs(name: str, pom_dir: Path, *, what: str) -> Path:
    """The folder of ``pom_dir/pom.xml``'s dependencies (``mvn dependency:copy-dependencies``)
    under ``~/.cache/cairn/<name>/``; resolved once, again only when the pom changes. The local
    Maven repository is kept beside it, so a changed pom downloads only what is new."""
    key = hashlib.sha256((pom_dir / "pom.xml").read_bytes()).hexdigest()[:16]
    base = cache_dir(name)
    libs = base / f"libs-{key}"
    with locked(base / ".lock"):
        if not libs.is_dir():
            partial = base / f"libs-{key}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            run_step(
                f"resolving {what} from Maven Central (mvn dependency:copy-dependencies)",
                [
                    "mvn",
                    "-B",
                    "-q",
                    f"-Dmaven.repo.local={base / 'm2'}",
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={partial}",
                ],
                timeout=1800,
                cwd=pom_dir,
            )
            partial.replace(libs)  # only a complete download is ever used
    return libs


def classpath(*entries: Path, libs: Path) -> str:
    """``entries`` (configuration folders first) followed by every jar in ``libs``."""
    jars = sorted(str(p) for p in libs.glob("*.jar"))
    return ":".join([*(str(e) for e in entries), *jars])


def download(url: str, target: Path, *, what: str) -> None:
    """One Maven Central file to ``target``, checked against the SHA-1 Maven publishes beside
    it; a failed or corrupt download leaves nothing at ``target``."""
    step = f"downloading {what} from Maven Central ({url})"
    try:
        expected = httpx.get(url + ".sha1", timeout=60, follow_redirects=True)
        expected.raise_for_status()
        digest = hashlib.sha1(usedforsecurity=False)
        partial = target.with_suffix(".part")
        with httpx.stream("GET", url, timeout=120, follow_redirects=True) as response:
            response.raise_for_status()
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    except httpx.HTTPError as exc:
        raise ServerSetupError(f"{step}: {exc}") from exc
    if digest.hexdigest() != expected.text.split()[0].strip():
        partial.unlink()
        raise ServerSetupError(f"{step}: SHA-1 of the download does not match Maven's")
    partial.replace(target)

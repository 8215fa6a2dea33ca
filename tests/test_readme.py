"""The README is a tested path: its shell and Python blocks run, as written, against `cairn up`.

Every ```bash and ```python block of README.md runs in order, in one shell set up the way the
README tells a newcomer to (`make up`, then `source .venv/bin/activate` in another terminal),
against one `cairn up` on the example data. A block a user is not meant to run here says so
just above it, with the reason: `<!-- readme-test: skip (needs an HDFS cluster) -->`.

Two things differ from a user's terminal, both so the test can run beside anything else: the
services listen on free ports (the blocks' `localhost:8001`, `:8002` and `:8080` are pointed
at them, and so are the `CAIRN_*_URL` settings), and each block runs in a scratch folder that
holds links to `examples/` and to the test's virtual environment as `.venv/`, so files a block
writes do not land in the repository. `curl` fails
on an HTTP error (`--fail-with-body`), so a 4xx in a README example fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, cairn_env, cairn_up, free_port
from tests.servers.processes import patient

README = ROOT / "README.md"
DEFAULT_PORTS = {"8001": "catalogue", "8002": "featurestore", "8080": "ui"}
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<why>[^)]+)\)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>\w*)\s*$")


@dataclass(frozen=True)
class Block:
    line: int
    lang: str
    code: str
    skip: str | None

    @property
    def id(self) -> str:
        return f"{self.lang}-line{self.line}"


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    lines = README.read_text().splitlines()
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        lang = opened["lang"]
        if lang in ("bash", "python"):
            before = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
            skipped = SKIP.match(before.strip())
            blocks.append(
                Block(start + 1, lang, "\n".join(body), skipped["why"] if skipped else None)
            )
    return blocks


BLOCKS = readme_blocks()


def test_readme_has_runnable_blocks_and_every_skip_says_why() -> None:
    runnable = [b for b in BLOCKS if b.skip is None]
    assert len(runnable) >= 5, "the README has lost its runnable examples"
    assert {"bash", "python"} <= {b.lang for b in runnable}
    for block in BLOCKS:
        assert block.skip is None or len(block.skip) > 5, block.id


@dataclass
class Up:
    ports: dict[str, int]
    env: dict[str, str]
    workdir: Path
    # The feature sets as `cairn up` left them, before any block wrote to them.
    seeded: dict[str, dict]

    def point(self, code: str) -> str:
        """The block, talking to this test's services instead of the default ports."""
        for default, service in DEFAULT_PORTS.items():
            code = re.sub(
                rf"(localhost|127\.0\.0\.1):{default}\b",
                f"127.0.0.1:{self.ports[service]}",
                code,
            )
        return code


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    ports = {service: free_port() for service in DEFAULT_PORTS.values()}
    data = tmp_path_factory.mktemp("readme-data")
    env = cairn_env(
        data,
        CAIRN_CATALOGUE_PORT=str(ports["catalogue"]),
        CAIRN_FEATURESTORE_PORT=str(ports["featurestore"]),
        CAIRN_UI_PORT=str(ports["ui"]),
    )
    with cairn_up(env) as (_, output):
        assert "Press Ctrl-C" in output, output
        listing = httpx.get(
            f"http://127.0.0.1:{ports['featurestore']}/api/v1/featuresets",
            params={"limit": 1000},
            timeout=patient(30),
        )
        assert listing.status_code == 200, listing.text
        seeded = {item["name"]: item for item in listing.json()["items"]}
        workdir = tmp_path_factory.mktemp("readme-work")
        (workdir / "examples").symlink_to(ROOT / "examples")
        (workdir / ".venv").symlink_to(Path(sys.prefix))
        # What `source .venv/bin/activate` gives the user's second terminal: this interpreter's
        # `cairn` and `python` first on the PATH, and the settings `cairn up` printed.
        shell_env = {
            **env,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "CAIRN_CATALOGUE_URL": f"http://127.0.0.1:{ports['catalogue']}",
            "CAIRN_FEATURESTORE_URL": f"http://127.0.0.1:{ports['featurestore']}",
        }
        yield Up(ports, shell_env, workdir, seeded)


# A user's curl shows an error body and goes on; here an HTTP error fails the block.
BASH_PRELUDE = """set -euo pipefail
curl() { command curl --silent --show-error --fail-with-body "$@"; }
"""


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.skip is None], ids=lambda b: b.id)
def test_readme_block_runs(block: Block, up: Up) -> None:
    code = up.point(block.code)
    if block.lang == "bash":
        cmd = ["bash", "-c", BASH_PRELUDE + code]
    else:
        cmd = [sys.executable, "-c", code]
    result = subprocess.run(
        cmd,
        env=up.env,
        cwd=up.workdir,
        capture_output=True,
        text=True,
        timeout=patient(300),
    )
    assert result.returncode == 0, (
        f"README.md line {block.line} ({block.lang}) failed with {result.returncode}:\n"
        f"{code}\n--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    )


def test_readme_manifest_example_crawls_cleanly(up: Up, tmp_path: Path) -> None:
    """The manifest a newcomer copies from the README lands, beside the example lake's assets."""
    text = README.read_text()
    manifest = text[text.index("## A manifest") :].split("```yaml\n", 1)[1].split("```", 1)[0]
    volume = tmp_path / "mine" / "weekly"
    volume.mkdir(parents=True)
    (volume / "MANIFEST.yaml").write_text(manifest)
    result = subprocess.run(
        ["cairn", "crawl", str(tmp_path / "mine"), "--json"],
        env=up.env,
        capture_output=True,
        text=True,
        timeout=patient(120),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_search_examples_find_something(up: Up) -> None:
    """A search example that answers nothing on the example data teaches nothing."""
    searches = re.findall(r"curl '(localhost:8001/api/v1/assets\?[^']+)'", README.read_text())
    assert searches
    for url in searches:
        if "cursor=" in url:
            continue  # a cursor is only meaningful for the search that returned it
        body = httpx.get("http://" + up.point(url), timeout=patient(30)).json()
        assert body["total"] > 0, f"{url} finds nothing on the example lake"


NUMBER_WORDS = {
    word: n
    for n, word in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    )
}


def test_readme_feature_set_versions_are_those_cairn_up_leaves(up: Up) -> None:
    """The feature store's examples number versions as a user sees them after `cairn up`,
    which seeds examples/featuresets/: its POST of churn_model_serving answered version 4 where
    the README read as if the set were new."""
    text = README.read_text()
    section = text[text.index("## Feature store") :]
    section = section[: section.index("\n## ")]
    sets = re.search(
        r"seeds `examples/featuresets/`: (\w+) sets \((\w+) tables\),\s+(\w+) versions", section
    )
    assert sets is not None, "the README no longer says what `cairn up` seeds"
    tables = [item for item in up.seeded.values() if item["kind"] == "table"]
    versions = sum(item["version"] for item in up.seeded.values())  # none deleted yet
    assert [NUMBER_WORDS.get(word) for word in sets.groups()] == [
        len(up.seeded),
        len(tables),
        versions,
    ], sets.group(0)
    # Comments of the examples: "`cairn up` seeded versions 1-3 of `x`", "add version 4 of `x`".
    seeded = re.findall(r"versions 1-(\d+) of\s+(?:#\s*)?`(\w+)`", section)
    added = re.findall(r"\bversion (\d+) of\s+(?:#\s*)?`(\w+)`", section)
    assert seeded and added
    for count, name in seeded:
        assert up.seeded[name]["version"] == int(count), (name, up.seeded[name]["version"])
    for number, name in added:
        assert int(number) == up.seeded[name]["version"] + 1, (name, up.seeded[name]["version"])

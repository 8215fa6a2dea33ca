"""`docker compose up` of docker-compose.yml, for real: Cairn's image built from the Dockerfile,
every health check passed, examples/lake crawled by the crawler service, and the asset found
through the UI container; then everything is taken down again, also when the test fails.

No image registry is reachable from the test machines, so the images that cannot be pulled are
made locally from Debian's packages and the tests' own servers (tests/servers/local_images.py)
and swapped in by tests/docker-compose.local.yml, which also puts the containers on the host's
network. The engine is the machine's own, or dockerd started (and stopped) here
(tests/servers/docker_engine.py). The images persist between runs in ~/.cache/cairn/docker;
after a run an engine started here keeps only the tagged images and a bounded build cache.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.servers.compose import ComposeStack
from tests.servers.docker_engine import DockerEngine
from tests.servers.local_images import (
    debian_image,
    elasticsearch_image,
    ferretdb_image,
    python_image,
)
from tests.servers.processes import cache_dir, locked, patient, run_step

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "cairn-stack-test"
FILES = [ROOT / "docker-compose.yml", ROOT / "tests" / "docker-compose.local.yml"]
# On the host's network the services listen where docker-compose.yml puts them.
PORTS = {"mongo": 27017, "elasticsearch": 9200, "catalogue": 8001, "featurestore": 8002, "ui": 8080}
CATALOGUE = "http://127.0.0.1:8001"
UI = "http://127.0.0.1:8080"
# The label Cairn's Dockerfile puts on its image, and the tag docker-compose.yml gives it.
IMAGE_LABEL = "org.opencontainers.image.title=cairn"
CAIRN_IMAGE = "cairn:0.1.0"
# An asset of examples/lake (gold/sales/sales_daily/MANIFEST.yaml) and one of its owners.
ASSET = "sales_daily"
OWNER = "bruno.costa@example.com"


def _busy_ports() -> list[str]:
    busy = []
    for name, port in PORTS.items():
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(f"{port} ({name})")
    return busy


def _wait_for_asset(timeout: float) -> dict[str, object]:
    """The asset as the catalogue serves it, once the crawler service has written it."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{CATALOGUE}/api/v1/assets/by-name/{ASSET}", timeout=10)
            if response.status_code == 200:
                return dict(response.json())
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(2)
    raise AssertionError(f"the crawler did not catalogue {ASSET} in {timeout:.0f}s: {last}")


def _health(stack: ComposeStack) -> dict[str, str]:
    """Each service's container state, and its health where it has a health check."""
    listing = stack.run(
        "docker compose ps",
        "ps", "--all", "--format", "{{.Service}} {{.State}} {{.Health}}",
    )  # fmt: skip
    states = {}
    for line in listing.splitlines():
        service, state, *health = line.split()
        states[service] = f"{state} {health[0]}" if health else state
    return states


@pytest.mark.timeout(3600)
def test_compose_stack_builds_crawls_the_lake_and_serves_it(tmp_path: Path) -> None:
    timings: dict[str, float] = {}
    mark = time.monotonic()

    def lap(step: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[step] = now - mark
        mark = now

    # One stack at a time on this machine: the ports are fixed and so is the engine's data.
    with locked(cache_dir("docker") / ".stack.lock"):
        engine = DockerEngine(tmp_path / "dockerd.log")
        # The images the next run reuses, and what the engine keeps after the clean-up.
        reused: list[str] = []
        tagged: list[str] = []
        leftovers: list[str] = []
        tidied = False
        try:
            engine.start()
            lap("engine")
            debian = debian_image(engine)
            # Elasticsearch's image (a JDK from apt) is made while the Python ones are.
            with ThreadPoolExecutor(max_workers=1) as pool:
                elastic = pool.submit(elasticsearch_image, engine, debian)
                python = python_image(engine, debian)
                env = {
                    **engine.env,
                    "LOCAL_PYTHON_IMAGE": python,
                    "LOCAL_MONGO_IMAGE": ferretdb_image(engine, python),
                    "LOCAL_ELASTICSEARCH_IMAGE": elastic.result(),
                }
            reused = [debian, python, env["LOCAL_MONGO_IMAGE"], env["LOCAL_ELASTICSEARCH_IMAGE"]]
            lap("local images")
            stack = ComposeStack(PROJECT, FILES, env, cwd=ROOT)
            stack.down()  # what a killed earlier run may have left
            busy = _busy_ports()
            assert not busy, f"the stack's ports are taken on 127.0.0.1: {', '.join(busy)}"
            try:
                # The four Cairn services share one image: building it for one is enough.
                stack.run(
                    "building Cairn's image (docker compose build)",
                    "build", "catalogue",
                    timeout=1800,
                )  # fmt: skip
                reused.append(CAIRN_IMAGE)
                lap("cairn image")
                wait = str(round(patient(600)))
                stack.run(
                    "docker compose up --wait",
                    "up", "--detach", "--wait", "--wait-timeout", wait,
                    timeout=float(wait) + 60,
                )  # fmt: skip
                lap("up, healthy")
                assert _health(stack) == {
                    "mongo": "running healthy",
                    "elasticsearch": "running healthy",
                    "catalogue": "running healthy",
                    "featurestore": "running healthy",
                    "ui": "running healthy",
                    "crawler": "running",
                }

                asset = _wait_for_asset(patient(300))
                assert asset["manifest_path"] == "gold/sales/sales_daily/MANIFEST.yaml"
                assert str(asset["location"]).startswith("file:///volumes/lake/")
                lap("crawl")

                page = httpx.get(UI + "/", params={"q": ASSET}, timeout=30)
                assert page.status_code == 200, page.text[:2000]
                assert f"/assets/{asset['id']}" in page.text
                assert OWNER in page.text
                lap("ui search")
            except BaseException:
                print(stack.diagnostics())
                raise
            finally:
                stack.down()
                lap("down")
            assert stack.run("docker compose ps", "ps", "--all", "--quiet").strip() == ""
            assert stack.volumes() == []
            # Earlier builds of Cairn's image, untagged by this one, go (the engine keeps the
            # build cache and the local base images for the next run).
            run_step(
                "removing untagged Cairn images",
                ["docker", "image", "prune", "--force", "--filter", f"label={IMAGE_LABEL}"],
                timeout=300,
                env=engine.env,
            )
        finally:
            # The engine's data persists in ~/.cache/cairn/docker: it keeps what the next run
            # reuses and nothing more, also after a failed run.
            try:
                if engine.started_here:
                    engine.tidy()
                    leftovers = engine.leftovers()
                    tagged = engine.tags()
                    tidied = True
            finally:
                engine.stop()
                print(f"dockerd log: {engine.log_path}")
        assert engine.leaked == [], "dockerd left processes behind:\n" + "\n".join(engine.leaked)
        if tidied:
            assert leftovers == [], "the engine kept what no run reuses:\n" + "\n".join(leftovers)
            assert sorted(set(reused) - set(tagged)) == [], f"the clean-up removed images: {tagged}"
    lap("engine stop")
    print("compose stack timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))

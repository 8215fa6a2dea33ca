"""Fixtures for the end-to-end browser tests: real services seeded from the examples, Debian's
Chromium driven by Playwright, and a screenshot under ``test-output/<test>/`` on failure.

The services start once per test module (catalogue, crawl of examples/lake, feature store seeded
with examples/featuresets, the UI), each as a ``cairn serve`` process on a free port.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, ProcessServer, cairn_env, free_port, run_cairn

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = ROOT / "test-output"
DESKTOP = {"width": 1280, "height": 900}
VISITOR_KEY = "browser-visitor-key"
UI_OWN_KEY = "ui-own-key"  # valid at the catalogue, yet never used for a visitor's reads
KEYED_ASSETS = [
    {"id": "sales-1", "name": "sales_daily", "type": "table", "tags": ["sales"]},
    {"id": "raw-1", "name": "sales_raw", "type": "dataset", "tags": ["sales"]},
]
PHONE = {"width": 390, "height": 844}


@dataclass
class Stack:
    catalogue: str
    featurestore: str
    ui: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from featurestore_service.seed import seed_featuresets

    work = tmp_path_factory.mktemp("browser-stack")
    env = cairn_env(work / "data")
    servers: list[ProcessServer] = []
    try:
        catalogue = ProcessServer("catalogue", env, work / "catalogue.log")
        servers.append(catalogue.start())
        crawl = run_cairn("crawl", "examples/lake", "--catalogue", catalogue.url, env=env)
        assert crawl.returncode == 0, crawl.stdout + crawl.stderr

        featurestore = ProcessServer("featurestore", env, work / "featurestore.log")
        featurestore.env.update(
            CAIRN_CATALOGUE_URL=catalogue.url, CAIRN_FEATURESTORE_URL=featurestore.url
        )
        servers.append(featurestore.start())
        assert seed_featuresets(featurestore.url) > 0
        _wait_registered(catalogue.url, "featureset:churn_model_serving")

        ui = ProcessServer("ui", env, work / "ui.log")
        ui.env.update(CAIRN_CATALOGUE_URL=catalogue.url, CAIRN_FEATURESTORE_URL=featurestore.url)
        servers.append(ui.start())
        yield Stack(catalogue.url, featurestore.url, ui.url)
    finally:
        for server in reversed(servers):
            server.stop()


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A catalogue that wants a key for every read, and a UI that asks its visitors for one
    (the feature store is left out: its pages are not what this stack is for)."""
    work = tmp_path_factory.mktemp("browser-keyed")
    env = cairn_env(
        work / "data",
        CAIRN_API_KEYS=f"{VISITOR_KEY},{UI_OWN_KEY}",
        CAIRN_READ_NEEDS_KEY="true",
        CAIRN_API_KEY=UI_OWN_KEY,
    )
    servers: list[ProcessServer] = []
    try:
        catalogue = ProcessServer("catalogue", env, work / "catalogue.log")
        servers.append(catalogue.start())
        body = httpx.post(
            catalogue.url + "/api/v1/assets/bulk",
            json=KEYED_ASSETS,
            headers={"authorization": f"Bearer {VISITOR_KEY}"},
            timeout=30,
        ).json()
        assert body["failed"] == 0, body
        featurestore = f"http://127.0.0.1:{free_port()}"  # nothing listens here
        ui = ProcessServer("ui", env, work / "ui.log")
        ui.env.update(CAIRN_CATALOGUE_URL=catalogue.url, CAIRN_FEATURESTORE_URL=featurestore)
        servers.append(ui.start())
        yield Stack(catalogue.url, featurestore, ui.url)
    finally:
        for server in reversed(servers):
            server.stop()


def _wait_registered(catalogue: str, name: str, timeout: float = 30) -> None:
    """The feature store registers its sets in the catalogue in the background."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{catalogue}/api/v1/assets/by-name/{name}").status_code == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} was not registered in the catalogue within {timeout}s")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium package. "
            "Run `bash tests/browser/install-chromium.sh` (as root: apt-get install chromium); "
            "`make test` runs it for you.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


def _page(browser: Any, request: pytest.FixtureRequest, viewport: dict[str, int]) -> Iterator[Any]:
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.problems = problems  # type: ignore[attr-defined]
    try:
        yield page
    finally:
        failed = any(
            getattr(getattr(request.node, f"report_{when}", None), "failed", False)
            for when in ("setup", "call")
        )
        if failed:
            folder = OUTPUT / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                page.screenshot(path=str(folder / "failure.png"), full_page=True)
                (folder / "failure.html").write_text(page.content())
                (folder / "url.txt").write_text(page.url + "\n" + "\n".join(problems))
            except Exception as exc:  # the page may be gone; the test's own error matters more
                (folder / "screenshot-error.txt").write_text(repr(exc))
        context.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _page(browser, request, DESKTOP)


@pytest.fixture
def phone(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield from _page(browser, request, PHONE)


def output_dir(request: pytest.FixtureRequest) -> Path:
    return OUTPUT / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

"""The API documentation pages, rendered in Chromium: everything they load comes from the
service itself (Swagger UI and ReDoc from the fastapi-offline package), so they work offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cairn.settings import Settings
from catalogue_service.app import create_app
from tests.conftest import ThreadServer


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    data: Path = tmp_path_factory.mktemp("docs-browser")
    with ThreadServer(create_app(Settings(data_dir=data))) as server:
        yield server


@pytest.mark.parametrize(
    ("path", "rendered"),
    [("/docs", ".opblock-summary-path"), ("/redoc", "[data-section-id^='operation/']")],
)
def test_docs_render_from_this_server_alone(
    page: Any, catalogue: ThreadServer, path: str, rendered: str
) -> None:
    loaded: list[str] = []
    blocked: list[str] = []
    page.on("requestfinished", lambda request: loaded.append(request.url))
    page.on("requestfailed", lambda request: blocked.append(request.url))
    page.goto(catalogue.url + path)
    page.wait_for_selector(rendered)
    assert page.locator(rendered).count() > 10  # every operation of the document is listed
    origin = urlsplit(catalogue.url).netloc
    # blob: and data: URLs are made in the page itself.
    fetched = [url for url in loaded if urlsplit(url).scheme in ("http", "https")]
    assert fetched and all(urlsplit(url).netloc == origin for url in fetched), fetched
    # ReDoc's footer asks a CDN for its maker's logo; the page's policy stops that request.
    assert all(url.startswith("https://cdn.redoc.ly/") for url in blocked), blocked
    errors = [p for p in page.problems if "Content Security Policy" not in p]  # type: ignore[attr-defined]
    assert errors == []

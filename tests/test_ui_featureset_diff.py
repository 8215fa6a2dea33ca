"""The feature-set diff page asked for versions it cannot compare: a word, an unknown number,
or a set with a single version. Real feature store and UI in threads."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cairn.settings import Settings
from tests.conftest import ThreadServer, refused_port
from tests.test_featurestore_api import values
from tests.test_ui_server import assert_page


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    from featurestore_service.app import create_app as fs_app
    from ui.app import create_app as ui_app

    data: Path = tmp_path_factory.mktemp("ui-diff")
    nowhere = f"http://127.0.0.1:{refused_port()}"
    with ThreadServer(fs_app(Settings(data_dir=data / "fs", catalogue_url=nowhere))) as fs:
        for name, value in (("single", 1), ("three", 1), ("three", 2), ("three", 3)):
            sent = httpx.post(
                f"{fs.url}/api/v1/featuresets", json=values(name, ("x", "int", value))
            )
            assert sent.status_code == 201, sent.text
        settings = Settings(data_dir=data / "ui", featurestore_url=fs.url, catalogue_url=nowhere)
        with ThreadServer(ui_app(settings)) as server, httpx.Client(base_url=server.url) as client:
            yield client


def notices(text: str) -> list[str]:
    return re.findall(r'<p class="notice" role="status">([^<]*)</p>', text)


def heading(text: str) -> str:
    found = re.search(r"<h1>([^<]*)</h1>", text)
    assert found is not None
    return found.group(1)


def test_a_word_for_a_version_is_named_and_what_is_shown_instead_said(ui: httpx.Client) -> None:
    text = assert_page(ui.get("/featuresets/three/diff", params={"from": "abc"}))
    assert notices(text) == [
        "“from”: “abc” is not a version number (its versions are v1 to v3); v2, the one "
        "before v3, is shown instead."
    ]
    assert heading(text) == "three: v2 → v3"
    text = assert_page(ui.get("/featuresets/three/diff", params={"from": "1", "to": "9"}))
    assert notices(text) == [
        "“to”: there is no version 9 (its versions are v1 to v3); the latest, v3, is shown instead."
    ]
    assert heading(text) == "three: v1 → v3"


@pytest.mark.parametrize("query", [{"from": "abc"}, {}, {"from": "7"}, {"to": "1"}])
def test_a_set_with_one_version_is_not_compared_with_itself(
    ui: httpx.Client, query: dict[str, str]
) -> None:
    """``diff?from=abc`` of a set with one version compared v1 with v1 and said nothing."""
    text = assert_page(ui.get("/featuresets/single/diff", params=query))
    said = notices(text)
    assert said[-1] == "“single” has no version before v1 to compare it with.", said
    if query.get("from"):
        assert said[0].startswith("“from”: "), said
        assert query["from"] in said[0]
    assert heading(text) == "single: nothing to compare"
    assert 'id="diff-h"' not in text and "Both versions hold the same data" not in text


def test_two_versions_asked_for_by_number_are_compared(ui: httpx.Client) -> None:
    text = assert_page(ui.get("/featuresets/three/diff", params={"from": "1", "to": "3"}))
    assert notices(text) == [] and heading(text) == "three: v1 → v3" and 'id="diff-h"' in text
    same = assert_page(ui.get("/featuresets/three/diff", params={"from": "2", "to": "2"}))
    assert notices(same) == [] and "Both versions hold the same data." in same  # asked for

"""The metrics page rendered by the UI server: pictures, badges, checks, escaping."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.metrics_stack import HOSTILE, NAME, metrics_stack
from tests.test_ui_server import assert_page
from ui.metric_charts import overlay, spark


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with (
        metrics_stack(tmp_path_factory.mktemp("metrics-ui")) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        yield client


def test_metrics_page_draws_histograms_sparklines_badges_and_checks(ui: httpx.Client) -> None:
    text = assert_page(ui.get(f"/featuresets/{NAME}/metrics"))
    assert "version 3" in text and "drift against v2" in text
    # Two areas per numeric column: the reference (filled) and this version (outlined).
    assert len(re.findall(r'<path class="ref" d="M[\d.,LZ -]+"', text)) == 3
    assert len(re.findall(r'<path class="cur" d="M[\d.,LZ -]+"', text)) == 3
    assert text.count('<svg class="spark"') >= 1 + 4  # rows, and null rates per column
    assert re.search(r"KS p=[\d.e-]+ · drift", text) and re.search(r"χ² p=[\d.e-]+ · drift", text)
    assert "not_null(visits)" in text and "fail (warn)" in text
    assert HOSTILE not in text and "&lt;img src=x onerror=alert(1)&gt;" in text

    quiet = assert_page(ui.get(f"/featuresets/{NAME}/metrics", params={"v": 2}))
    assert "no drift against v1" in quiet and "· drift" not in quiet
    against = assert_page(ui.get(f"/featuresets/{NAME}/metrics", params={"v": 3, "against": 1}))
    assert "against v1" in against
    linked = assert_page(ui.get(f"/featuresets/{NAME}", params={"v": 3}))
    assert f'href="/featuresets/{NAME}/metrics?v=3"' in linked


@pytest.mark.parametrize(
    "query", [{"v": "x"}, {"v": "99"}, {"against": "-1"}, {"v": "1", "against": "1"}]
)
def test_odd_queries_give_a_page(ui: httpx.Client, query: dict[str, str]) -> None:
    assert_page(ui.get(f"/featuresets/{NAME}/metrics", params=query))


def test_unknown_set_is_a_404_page(ui: httpx.Client) -> None:
    assert_page(ui.get("/featuresets/nope/metrics"), 404)


def test_chart_geometry_survives_odd_histograms() -> None:
    assert overlay(None, None) is None
    one = overlay({"edges": [5.0, 5.0], "counts": [10]}, {"edges": [5.0, 5.0], "counts": [3]})
    assert one is not None and one.reference and one.current
    assert overlay({"edges": [0, 1], "counts": [0]}, None) is None
    assert spark([None, None]) is None
    line = spark([1.0, None, 3.0])
    assert line is not None and line.points.count(",") == 2

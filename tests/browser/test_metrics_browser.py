"""The metrics page in Debian's Chromium: the pictures are drawn, sized and legible, and the
version links work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.metrics_stack import NAME, metrics_stack


@pytest.fixture(scope="module")
def urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The UI's and the feature store's base URLs."""
    with metrics_stack(tmp_path_factory.mktemp("metrics-browser")) as both:
        yield both


@pytest.fixture(scope="module")
def metrics_ui(urls: tuple[str, str]) -> str:
    return urls[0]


def test_metrics_page_shows_overlaid_histograms_and_drift(
    page: Any, metrics_ui: str, tmp_path: Path
) -> None:
    page.goto(f"{metrics_ui}/featuresets/{NAME}/metrics")
    spend = page.locator('figure[data-column="spend"]')
    box = spend.locator("svg.hist").bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 60
    # Both areas are painted: the browser computed real geometry for them.
    for part in ("path.ref", "path.cur"):
        shape = spend.locator(part).bounding_box()
        assert shape is not None and shape["width"] > 100 and shape["height"] > 10, part
    assert "drift" in spend.locator(".badge").inner_text().lower()
    assert page.locator('figure[data-column="plan"] table.topvals').is_visible()
    assert page.locator("tr.check.fail").count() >= 1
    visits = page.locator('figure[data-column="visits"] .badge')
    assert "nulls 20 % → 40 %" in visits.all_inner_texts()[-1].lower()
    shot = tmp_path / "metrics.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    page.get_by_role("link", name="v2", exact=True).click()
    page.wait_for_url("**/metrics?v=2")
    assert page.get_by_text("no drift against v1").first.is_visible()
    assert not page.problems  # type: ignore[attr-defined]


# Each text node's line boxes as [text, left, top, right, bottom]; and each word's number of
# lines (a word split over two lines, "unknow" / "n", has two).
TEXT_BOXES = """root => {
  const out = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  let node;
  while ((node = walker.nextNode())) {
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      if (r.width > 0.5 && r.height > 0.5) {
        out.push([node.textContent.trim(), r.left, r.top, r.right, r.bottom]);
      }
    }
  }
  return out;
}"""
WORD_LINES = """cell => {
  const node = cell.firstChild;
  const out = {};
  let at = 0;
  for (const word of node.textContent.split(/\\s+/)) {
    const start = node.textContent.indexOf(word, at);
    at = start + word.length;
    const range = document.createRange();
    range.setStart(node, start);
    range.setEnd(node, at);
    out[word] = new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
  }
  return out;
}"""


def _overlap(a: list[float], b: list[float]) -> bool:
    left, top, right, bottom = a
    return min(right, b[2]) - max(left, b[0]) > 1 and min(bottom, b[3]) - max(top, b[1]) > 1


def test_small_charts_sit_clear_of_the_text_at_ordinary_widths(
    browser: Any, metrics_ui: str
) -> None:
    """A column's null-rate sparkline was drawn inline after its statistics, at the height of
    their last line: it ran into the text beside it. It now has a line of its own, and no
    picture on the page shares a line with any text."""
    for width in (1024, 1280, 1440):
        context = browser.new_context(viewport={"width": width, "height": 900})
        page = context.new_page()
        page.goto(f"{metrics_ui}/featuresets/{NAME}/metrics")
        figures = page.locator("figure.metric-column")
        assert figures.count() >= 4
        for i in range(figures.count()):
            figure = figures.nth(i)
            texts = figure.evaluate(TEXT_BOXES)
            for chart in figure.locator("svg").all():
                box = chart.bounding_box()
                assert box is not None
                edges = [box["x"], box["y"], box["x"] + box["width"], box["y"] + box["height"]]
                # Not only no pixel in common: no text beside a chart on the same line.
                band = [-1e9, edges[1], 1e9, edges[3]]
                beside = [t[0] for t in texts if _overlap(band, t[1:])]
                assert beside == [], (width, figure.get_attribute("data-column"), beside)
        context.close()


def test_creators_in_the_versions_table_break_only_between_words(
    page: Any, urls: tuple[str, str]
) -> None:
    """The versions table broke a creator mid-word ("unknow" / "n", "chen.wei@example." /
    "com") beside a version label, as the cell could wrap anywhere."""
    ui, featurestore = urls
    for body in (
        {"created_by": "chen.wei@example.com", "version_label": "2025-06-15 retrained"},
        {"version_label": "2025-06-22 retrained"},
    ):
        sent = {"name": "authored", "features": [{"name": "x", "dtype": "int", "value": 1}]}
        answer = httpx.post(f"{featurestore}/api/v1/featuresets", json={**sent, **body})
        assert answer.status_code == 201, answer.text
    for width in (1024, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{ui}/featuresets/authored")
        cells = page.locator(".versions td.who")
        assert cells.count() == 2
        for cell in cells.all():
            lines = cell.evaluate(WORD_LINES)
            assert all(n == 1 for n in lines.values()), (width, lines)

"""The metrics page in Debian's Chromium: the pictures are drawn, sized and legible, and the
version links work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.metrics_stack import NAME, metrics_stack


@pytest.fixture(scope="module")
def metrics_ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with metrics_stack(tmp_path_factory.mktemp("metrics-browser")) as (url, _):
        yield url


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

"""End-to-end in Debian's Chromium: a misspelt search shows "Did you mean …", and its link
runs the corrected search (services seeded from examples/lake, as the other browser tests)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.browser.conftest import Stack, output_dir


def _search(page: Any, text: str) -> None:
    box = page.locator("#q")
    box.fill(text)
    with page.expect_navigation():
        box.press("Enter")


def test_misspelt_search_offers_did_you_mean(page: Any, stack: Stack, request: Any) -> None:
    page.goto(stack.ui + "/")
    _search(page, "salse daily")
    hint = page.locator(".did-you-mean")
    assert hint.inner_text().startswith("Did you mean sales daily?")
    # Nothing matched what was typed, so the results are the corrected query's, and say so.
    assert "Nothing matches “salse daily”" in hint.inner_text()
    heading = page.locator("#results-heading").inner_text()
    assert heading.endswith("for “sales daily”"), heading
    first = page.locator(".result").first
    assert first.locator(".r-name a").inner_text() == "sales_daily"
    assert "sales" in first.locator(".r-name mark").all_inner_texts()  # corrected words marked
    folder = output_dir(request)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "did-you-mean.png"), full_page=False)

    with page.expect_navigation():
        hint.locator("a").click()
    assert parse_qs(urlsplit(page.url).query) == {"q": ["sales daily"]}
    assert page.locator(".did-you-mean").count() == 0  # spelt right: nothing to offer
    assert page.locator(".result .r-name a").first.inner_text() == "sales_daily"
    assert page.problems == [], page.problems


def test_search_with_no_near_word_offers_nothing(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/?q=xyzzyq")
    assert page.locator(".did-you-mean").count() == 0
    assert page.locator("#results-heading").inner_text().strip() == "No results"
    assert page.problems == [], page.problems

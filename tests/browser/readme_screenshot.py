"""Takes the README's screenshots with Debian's Chromium: the search page and the metrics page
of an example feature table.

    .venv/bin/python -m tests.browser.readme_screenshot http://127.0.0.1:8080 [OUT_DIR]

Run it against `cairn up` (the example lake and feature sets); OUT_DIR defaults to docs/
(screenshot-search.png, screenshot-metrics.png).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, ROOT

PAGES = {
    "screenshot-search.png": ("/?q=churn", False),
    # customer_features' two seeded versions differ: drift, overlaid histograms, sparklines.
    "screenshot-metrics.png": ("/featuresets/customer_features/metrics", True),
}


def main(base_url: str, folder: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=DESKTOP)
        for name, (path, full) in PAGES.items():
            page.goto(base_url.rstrip("/") + path)
            page.screenshot(path=str(folder / name), full_page=full)
            print(f"wrote {folder / name}")
        browser.close()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs")

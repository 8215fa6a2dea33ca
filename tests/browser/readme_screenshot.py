"""Takes the README's screenshot of the search page with Debian's Chromium.

    .venv/bin/python -m tests.browser.readme_screenshot http://127.0.0.1:8080 [OUT.png]

Run it against `cairn up` (the example lake and feature sets); OUT.png defaults to
docs/screenshot-search.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP, ROOT

QUERY = "/?q=churn"


def main(base_url: str, target: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=DESKTOP)
        page.goto(base_url.rstrip("/") + QUERY)
        page.screenshot(path=str(target))
        browser.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    default = ROOT / "docs" / "screenshot-search.png"
    main(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else default)

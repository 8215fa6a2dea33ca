"""End-to-end: Debian's Chromium, driven by Playwright, against real running services seeded
from examples/lake and examples/featuresets. Each failing test leaves a screenshot, the page's
HTML and its console errors under ``test-output/<test name>/``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.browser.conftest import DESKTOP, VISITOR_KEY, Stack


def query(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def result_names(page: Any) -> list[str]:
    return page.locator(".result .r-name a").all_inner_texts()


def no_problems(page: Any) -> None:
    assert page.problems == [], page.problems


def search(page: Any, text: str) -> None:
    box = page.locator("#q")
    box.fill(text)
    with page.expect_navigation():
        box.press("Enter")


def test_search_by_name(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/")
    assert page.locator("#q").evaluate("el => el === document.activeElement")
    search(page, "sales_daily")
    assert query(page) == {"q": ["sales_daily"]}
    names = result_names(page)
    assert names[0] == "sales_daily"  # the exact name ranks first
    assert page.locator(".result").first.locator("mark").first.inner_text() == "sales_daily"
    # A name prefix finds it as well.
    search(page, "sales_da")
    assert "sales_daily" in result_names(page)
    no_problems(page)


def test_search_by_tag_with_a_facet_click_and_remove_it(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/")
    total = int(re.sub(r"\D", "", page.locator("#results-heading .muted").inner_text()))
    facet = page.locator('a[data-facet="tag:gold"]')
    count = int(facet.locator(".count").inner_text())
    facet.click()
    page.wait_for_url(re.compile(r"tag=gold"))
    assert query(page) == {"tag": ["gold"]}
    assert page.locator("#results-heading").inner_text().startswith(f"{count} result")
    for item in page.locator(".result").all():
        assert "gold" in item.locator(".r-tags .tag").all_inner_texts()
    # Narrow further with a type, then remove the tag with its chip.
    page.locator('a[data-facet="type:table"]').click()
    page.wait_for_url(re.compile(r"type=table"))
    assert set(query(page)) == {"tag", "type"}
    page.get_by_label("Remove tag filter gold").click()
    page.wait_for_url(re.compile(r"^((?!tag=).)*$"))
    assert query(page) == {"type": ["table"]}
    page.get_by_label("Remove type filter table").click()
    page.wait_for_url(stack.ui + "/")
    assert int(re.sub(r"\D", "", page.locator("#results-heading .muted").inner_text())) == total
    no_problems(page)


def test_open_an_asset_see_schema_and_lineage_and_follow_a_link(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/?q=sales_daily")
    page.locator(".result .r-name a", has_text="sales_daily").first.click()
    page.wait_for_url(re.compile(r"/assets/"))
    assert page.locator("h1").inner_text() == "sales_daily"
    columns = page.locator("table.schema tbody tr td.col-name").all_inner_texts()
    assert columns[:3] == ["sale_date", "channel", "store_id"] and len(columns) == 9
    assert "bruno.costa@example.com" in page.locator("#about").inner_text()
    lineage = page.locator("svg.lineage")
    nodes = lineage.locator("[data-node]")
    names = {nodes.nth(i).get_attribute("data-node") for i in range(nodes.count())}
    assert {"sales_daily", "stg_transactions", "stg_stores", "store_demand_features"} <= names
    assert lineage.locator('[data-kind="root"]').get_attribute("data-node") == "sales_daily"
    # Upstream is drawn left of the asset, downstream right of it.
    root_x = float(lineage.locator('[data-kind="root"] rect').get_attribute("x"))
    up_x = float(lineage.locator('[data-node="stg_transactions"] rect').get_attribute("x"))
    down_x = float(lineage.locator('[data-node="store_demand_features"] rect').get_attribute("x"))
    assert up_x < root_x < down_x
    # Follow an upstream node.
    lineage.locator('a[data-node="stg_transactions"]').click()
    page.wait_for_url(re.compile(r"/assets/.*#lineage$"))
    assert page.locator("h1").inner_text() == "stg_transactions"
    root = page.locator('svg.lineage [data-kind="root"]')
    assert root.get_attribute("data-node") == "stg_transactions"
    # A deeper picture on request (the form goes by itself when JavaScript runs).
    page.select_option("#depth", "5")
    page.wait_for_url(re.compile(r"depth=5"))
    assert page.locator('svg.lineage [data-node="churn_risk_report"]').count() == 1
    # By keyboard: each arrow key is a change, and the page reloaded at the first; it waits
    # for Enter now. (A reload would drop the mark set on the window.)
    page.focus("#depth")
    page.evaluate("window.stayed = true")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    assert page.eval_on_selector("#depth", "s => s.value") == "3"
    page.wait_for_timeout(500)
    assert page.evaluate("window.stayed === true") and "depth=5" in page.url
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "depth=3" in page.url
    no_problems(page)


def test_feature_sets_are_a_different_kind_of_node(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/assets/by-name/customer_360?direction=down&depth=1")
    node = page.locator('svg.lineage a[data-node="featureset:customer_features"]')
    assert node.get_attribute("data-kind") == "featureset"
    assert "k-featureset" in (node.get_attribute("class") or "")
    node.click()
    page.wait_for_url(stack.ui + "/featuresets/customer_features")
    assert page.locator("h1").inner_text() == "customer_features"
    no_problems(page)


def test_feature_set_versions_values_diff_and_snippets(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/featuresets")
    page.locator(".fs-item .r-name a", has_text="churn_model_serving").click()
    page.wait_for_url(stack.ui + "/featuresets/churn_model_serving")
    shown = page.locator("[data-shown-version]")
    assert shown.get_attribute("data-shown-version") == "3"
    values = dict(
        zip(
            page.locator("table.features td.col-name").all_inner_texts(),
            page.locator("table.features td.kv").all_inner_texts(),
            strict=True,
        )
    )
    assert values["decision_threshold"] == "0.4"
    versions = page.locator("table.versions tbody tr")
    assert versions.count() == 3 and "cairn-examples" in versions.first.inner_text()
    # Switch to v1 from the versions table, then to v2 with the version picker.
    page.locator('a[data-version="1"]').click()
    page.wait_for_url(re.compile(r"v=1$"))
    assert shown.get_attribute("data-shown-version") == "1"
    assert "0.5" in page.locator("table.features").inner_text()
    page.select_option("#v", "2")
    page.wait_for_url(re.compile(r"v=2$"))
    assert shown.get_attribute("data-shown-version") == "2"
    snippet = page.locator("#snippets").inner_text()
    assert f"curl '{stack.featurestore}/api/v1/featuresets/churn_model_serving/versions/2'" in (
        snippet
    )
    assert "FeatureStoreClient" in snippet and "version=2" in snippet
    # A diff between two versions.
    page.select_option("form.diff-form #from", "1")
    page.select_option("form.diff-form #to", "3")
    page.locator("form.diff-form button").click()
    page.wait_for_url(re.compile(r"/diff\?from=1&to=3"))
    changes = {
        row.locator("td.col-name").inner_text(): row.get_attribute("data-change")
        for row in page.locator("table.diff tbody tr").all()
    }
    assert changes["decision_threshold"] == "changed"
    assert changes["tier_weights"] == "added"
    no_problems(page)


def test_tabular_feature_set_shows_first_rows_and_links_to_assets(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/featuresets?label=entity:customer_id")
    assert page.locator(".fs-item .r-name a").all_inner_texts() == ["customer_features"]
    page.locator(".fs-item .r-name a").click()
    headers = page.locator("table.rows thead th").all_inner_texts()
    assert headers[0] == "customer_id"
    assert page.locator("table.rows tbody tr").count() == 20
    page.locator("a.dep", has_text="customer_360").click()
    page.wait_for_url(re.compile(r"/assets/"))
    assert page.locator("h1").inner_text() == "customer_360"
    no_problems(page)


def test_a_time_is_never_broken_across_lines(page: Any, stack: Stack) -> None:
    # The feature table's page broke its times after a date's hyphens: "materialized
    # 2026-12-" / "06 13:02 UTC" in the online panel.
    page.goto(stack.ui + "/featuresets/customer_features")
    assert "materialized" in page.locator("#online, .card", has_text="Online").first.inner_text()
    lines = page.evaluate(
        "() => [...document.querySelectorAll('time')].map(t => t.getClientRects().length)"
    )
    assert len(lines) >= 3 and set(lines) == {1}, lines


def test_back_button_restores_the_search(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/")
    search(page, "churn")
    plain = page.url
    page.locator('a[data-facet="tag:ml"]').click()
    page.wait_for_url(re.compile(r"tag=ml"))
    filtered, names = page.url, result_names(page)
    page.locator(".result .r-name a").first.click()
    page.wait_for_url(re.compile(r"/assets/"))
    page.go_back()
    assert page.url == filtered
    assert page.locator("#q").input_value() == "churn"
    chip = page.locator(".active .chip.on").inner_text()
    assert chip.replace("\u00d7", "").split() == ["tag", "ml"]
    assert result_names(page) == names
    page.go_back()
    assert page.url == plain and page.locator(".active").count() == 0
    no_problems(page)


def test_pages_forward_and_back(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/")
    first = result_names(page)
    assert page.locator(".range").inner_text().startswith("1\u201320 of")
    page.locator("a[rel=next]").click()
    page.wait_for_url(re.compile(r"page=2"))
    second = result_names(page)
    assert page.locator(".range").inner_text().startswith("21\u201340 of")
    assert not set(first) & set(second)
    assert page.locator("a[rel=first]").count() == 0  # "Previous" is the first page here
    page.locator("a[rel=next]").click()
    page.wait_for_url(re.compile(r"page=3"))
    page.locator("a[rel=prev]").click()
    page.wait_for_url(re.compile(r"page=2"))
    assert result_names(page) == second
    page.locator("a[rel=prev]").click()
    page.wait_for_url(stack.ui + "/")
    assert result_names(page) == first
    page.go_back()
    assert result_names(page) == second
    # README (web UI): "First page" from anywhere, beside "Previous" from the third page on.
    page.locator("a[rel=next]").click()
    page.wait_for_url(re.compile(r"page=3"))
    assert page.locator("a[rel=prev]").count() == 1
    page.locator("a[rel=first]").click()
    page.wait_for_url(stack.ui + "/")
    assert result_names(page) == first
    no_problems(page)


def test_every_step_works_with_javascript_off(browser: Any, stack: Stack) -> None:
    # README (web UI): "every page works without JavaScript": search, facets, the asset page's
    # lineage picker and a feature set's version picker, each by its own form or link.
    context = browser.new_context(viewport=DESKTOP, java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        page.goto(stack.ui + "/")
        search(page, "sales")
        assert query(page) == {"q": ["sales"]} and "sales_daily" in result_names(page)
        page.locator('a[data-facet="type:table"]').click()
        page.wait_for_url(re.compile(r"type=table"))
        assert query(page)["type"] == ["table"]

        page.goto(stack.ui + "/assets/by-name/sales_daily")
        assert page.locator("h1").inner_text() == "sales_daily"
        page.select_option("#depth", "2")
        with page.expect_navigation():
            page.locator(".lineage-form button[type=submit]").click()
        assert query(page)["depth"] == ["2"]

        page.goto(stack.ui + "/featuresets/churn_model_serving")
        page.select_option("#v", "1")
        with page.expect_navigation():
            page.locator("form.inline-form button[type=submit]").first.click()
        assert page.locator("[data-shown-version]").get_attribute("data-shown-version") == "1"
    finally:
        context.close()


def test_keyboard_use(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/featuresets")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "fs-q"
    page.goto(stack.ui + "/?q=churn_model")
    link = page.locator(".result .r-name a").first
    link.focus()
    outline = link.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline != "none"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator("h1").inner_text() == "churn_model"
    no_problems(page)


def test_phone_width_has_no_sideways_scroll(phone: Any, stack: Stack) -> None:
    for path in (
        "/?q=sales",
        "/assets/by-name/customer_features",
        "/featuresets",
        "/featuresets/customer_features",
        "/featuresets/churn_model_serving/diff",
        "/status",
    ):
        phone.goto(stack.ui + path)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide at 390px"
    # Facets fold away on a phone and open on demand.
    phone.goto(stack.ui + "/?q=sales")
    facets = phone.locator("details.facets")
    assert facets.get_attribute("open") is None
    phone.locator("details.facets > summary").click()
    assert phone.locator('a[data-facet="tag:sales"]').is_visible()
    no_problems(phone)


def test_long_names_wrap_at_phone_width(phone: Any, stack: Stack) -> None:
    # Names run to 256 characters, and snake_case has no place a browser breaks a line at:
    # a long name (or tag, or search) echoed in a sentence or a chip pushed the page sideways.
    name = "warehouse_" + "_".join(["customer_orders_daily_aggregated"] * 3)
    tag = "lake_" + "x" * 80
    owner = "o" + "x" * 120 + "@example.com"
    put = httpx.put(
        f"{stack.catalogue}/api/v1/assets/long-name-1",
        json={"name": name, "type": "table", "tags": [tag], "owners": [owner]},
        timeout=30,
    )
    assert put.status_code in (200, 201), put.text
    for path in (
        "/assets/long-name-1",  # "<name> has no upstream or downstream assets."
        f"/?q={name}x",  # "Nothing matches “<q>”"
        f"/?tag={tag}&q=nothing",  # the filter's chip, and "without tag <tag>"
        f"/assets/by-name/{name}x",  # "No asset is named “<name>”."
        f"/?tag={tag}",  # the result's owner link
    ):
        phone.goto(stack.ui + path)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide at 390px"


def test_long_feature_set_values_wrap_at_phone_width(phone: Any, stack: Stack) -> None:
    # A long name, version label, creator or label value (none has a place to break a line)
    # widened the feature-set pages to thousands of pixels: the version badge, the version
    # picker's select, the diff's heading, the list's labels and creator, and a visually
    # hidden cell label that escaped its table's scroll box.
    name = "fs_" + "_".join(["customer_orders_daily_aggregated"] * 3)
    long = "y" * 160
    for value in (1, 2):
        body = {
            "name": name,
            "created_by": "u" + long,
            "version_label": "l" + long,
            "labels": {"team": "t" + long},
            "features": [{"name": "threshold", "dtype": "int", "value": value}],
        }
        put = httpx.post(f"{stack.featurestore}/api/v1/featuresets", json=body, timeout=30)
        assert put.status_code == 201, put.text
    for path in (
        f"/featuresets/{name}",
        f"/featuresets/{name}/diff?from=1&to=2",
        f"/featuresets?label=team:t{long}",
    ):
        phone.goto(stack.ui + path)
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide at 390px"


def test_status_page_shows_both_services(page: Any, stack: Stack) -> None:
    page.goto(stack.ui + "/status")
    cards = page.locator(".status-card")
    assert cards.count() == 2
    assert all("up" in c.get_attribute("class") for c in cards.all())
    assert page.locator(".statusbar .dot.up").count() == 2
    assert page.locator(".banner").count() == 0
    no_problems(page)


def test_reads_that_need_a_key_ask_the_visitor_for_theirs(page: Any, keyed_stack: Stack) -> None:
    ui = keyed_stack.ui
    page.goto(ui + "/?q=sales")
    page.wait_for_url(re.compile(r"/signin\?next="))
    assert page.locator("h1").inner_text() == "Sign in"
    assert "sales_daily" not in page.content()
    assert page.locator("#key").evaluate("el => el === document.activeElement")
    # A wrong key: the sign-in page again, saying why.
    page.fill("#key", "not-the-key")
    with page.expect_navigation():
        page.locator("form.signin button").click()
    assert "did not accept that key" in page.locator("#signin-error").inner_text()
    assert "sales_daily" not in page.content()
    # The right key: back to the page asked for, read with the visitor's key.
    page.fill("#key", VISITOR_KEY)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(ui + "/?q=sales")
    assert "sales_daily" in result_names(page)
    cookie = next(c for c in page.context.cookies() if c["name"] == "cairn_key")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert "cairn_key" not in page.evaluate("document.cookie")  # scripts cannot read it
    page.locator(".result .r-name a", has_text="sales_daily").click()
    page.wait_for_url(re.compile(r"/assets/sales-1$"))
    # Signing out forgets the key: the next page asks again.
    page.locator("form.signout button").click()
    page.wait_for_url(ui + "/signin")
    page.goto(ui + "/assets/sales-1")
    page.wait_for_url(re.compile(r"/signin\?next=/assets/sales-1$"))
    # 401 answers log "failed to load" in the console; scripts themselves must not fail.
    assert [p for p in page.problems if p.startswith("page error")] == []


def test_back_after_sign_out_does_not_show_what_the_key_read(page: Any, keyed_stack: Stack) -> None:
    # Pages were sent with `no-cache`, which Chromium ignores on Back: after "Sign out" on a
    # shared computer, Back showed the search results read with the signed-out key.
    ui = keyed_stack.ui
    page.goto(ui + "/signin?next=/%3Fq%3Dsales")
    page.fill("#key", VISITOR_KEY)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(ui + "/?q=sales")
    assert "sales_daily" in result_names(page)
    with page.expect_navigation():
        page.locator("form.signout button").click()
    page.wait_for_url(ui + "/signin")
    page.go_back()
    page.wait_for_url(re.compile(r"/signin\?next="))
    assert page.locator("h1").inner_text() == "Sign in"
    assert "sales_daily" not in page.content()


def test_the_api_line_works_when_reads_need_a_key(page: Any, keyed_stack: Stack) -> None:
    # The asset page's copy-ready curl line had no key: pasted as shown, it got a 401.
    ui = keyed_stack.ui
    page.goto(ui + "/signin?next=/assets/sales-1")
    page.fill("#key", VISITOR_KEY)
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.wait_for_url(ui + "/assets/sales-1")
    line = page.locator("pre code", has_text="curl").last.inner_text()
    assert VISITOR_KEY not in line and "$CAIRN_API_KEY" in line, line  # never the key itself
    env = {**os.environ, "CAIRN_API_KEY": VISITOR_KEY}
    ran = subprocess.run(
        ["bash", "-c", line.replace("curl ", "curl -sS --fail-with-body ", 1)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert json.loads(ran.stdout)["name"] == "sales_daily"
    # The shell line below it, run with the `cairn` this suite runs (the CLI sends the key).
    shell = page.locator("pre code", has_text="cairn assets get").inner_text()
    assert shell.startswith("cairn assets get sales-1 --url ") and VISITOR_KEY not in shell
    bin_dir = str(Path(sys.executable).parent)
    shown = subprocess.run(
        ["bash", "-c", shell],
        env={**env, "PATH": f"{bin_dir}:{env['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert shown.stdout.startswith("sales_daily ("), shown.stdout


def test_a_deleted_latest_version_is_neither_latest_nor_compared(page: Any, stack: Stack) -> None:
    """Deleting the newest version makes the one before it the latest (as the API serves):
    the picker still called the deleted one latest, and the diff compared against it."""
    api = f"{stack.featurestore}/api/v1/featuresets"
    for value in (1, 2):
        body = {
            "name": "ui_deleted_latest",
            "features": [{"name": "x", "dtype": "int", "value": value}],
        }
        assert httpx.post(api, json=body, timeout=30).status_code == 201
    assert httpx.delete(f"{api}/ui_deleted_latest/versions/2", timeout=30).status_code == 200
    page.goto(stack.ui + "/featuresets/ui_deleted_latest")
    options = page.locator("#v option").all_inner_texts()
    assert options == ["v2 (deleted)", "v1 (latest)"] or options == ["v1 (latest)", "v2 (deleted)"]
    page.goto(stack.ui + "/featuresets/ui_deleted_latest/diff")
    assert page.eval_on_selector("#to", "s => s.value") == "1"

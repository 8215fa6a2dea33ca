"""End-to-end in Chromium: what OpenLineage reported, as the UI shows it. A run of a job that
reads a crawled asset of examples/lake and writes another is posted to the real catalogue; the
asset pages then draw both kinds of edge with a legend, the column lineage, and the job's runs.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from tests.browser.conftest import Stack

SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def crawled_path(stack: Stack, name: str) -> str:
    asset = httpx.get(f"{stack.catalogue}/api/v1/assets/by-name/{name}").json()
    return unquote(urlsplit(asset["location"]).path)


def post_run(stack: Stack, run_id: str, event_type: str, time: str) -> dict[str, Any]:
    source, target = crawled_path(stack, "stg_transactions"), crawled_path(stack, "sales_daily")
    lineage = {
        "sale_date": [{"namespace": "file", "name": source, "field": "sold_at"}],
        "net_revenue": [
            {
                "namespace": "file",
                "name": source,
                "field": "amount",
                "transformations": [{"type": "DIRECT", "subtype": "AGGREGATION"}],
            },
            {"namespace": "file", "name": source, "field": "discount"},
        ],
    }
    event = {
        "eventType": event_type,
        "eventTime": time,
        "producer": "https://example.com/nightly",
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_id},
        "job": {"namespace": "nightly", "name": "build_sales_daily"},
        "inputs": [{"namespace": "file", "name": source}],
        "outputs": [
            {
                "namespace": "file",
                "name": target,
                "facets": {
                    "columnLineage": {"fields": {c: {"inputFields": f} for c, f in lineage.items()}}
                },
            }
        ],
    }
    response = httpx.post(f"{stack.catalogue}/api/v1/lineage", json=event)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_openlineage_edges_runs_and_column_lineage_in_the_ui(page: Any, stack: Stack) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    post_run(stack, first, "START", "2026-01-01T03:00:00Z")
    post_run(stack, first, "COMPLETE", "2026-01-01T03:02:00Z")
    receipt = post_run(stack, second, "FAIL", "2026-01-02T03:01:00Z")
    sales_daily, job = receipt["outputs"][0], receipt["job"]
    # Both are the crawled assets, found by their location.
    crawled = {
        name: httpx.get(f"{stack.catalogue}/api/v1/assets/by-name/{name}").json()["id"]
        for name in ("stg_transactions", "sales_daily")
    }
    assert receipt["inputs"] == [crawled["stg_transactions"]]
    assert sales_daily == crawled["sales_daily"]

    page.goto(f"{stack.ui}/assets/{sales_daily}?direction=up&depth=2")
    lineage = page.locator("svg.lineage")
    origins = {
        lineage.locator("path.edge").nth(i).get_attribute("data-origin")
        for i in range(lineage.locator("path.edge").count())
    }
    assert origins == {"manifest", "openlineage"}
    # The legend names both kinds of link, and the dashed style tells them apart.
    legend = page.locator("[data-edge-legend]")
    assert legend.locator('[data-origin="manifest"]').is_visible()
    assert "OpenLineage" in legend.locator('[data-origin="openlineage"]').inner_text()
    dash = lineage.locator('path.edge[data-origin="openlineage"]').first.evaluate(
        "e => getComputedStyle(e).strokeDasharray"
    )
    solid = lineage.locator('path.edge[data-origin="manifest"]').first.evaluate(
        "e => getComputedStyle(e).strokeDasharray"
    )
    assert dash not in ("none", "") and solid in ("none", "")
    assert lineage.locator('[data-node="nightly/build_sales_daily"]').count() == 1

    # Column lineage: which upstream columns feed each column.
    table = page.locator("[data-column-lineage]")
    assert table.is_visible()
    revenue = table.locator('tr[data-column="net_revenue"]')
    assert revenue.locator("[data-source]").count() == 2
    assert "DIRECT/AGGREGATION" in revenue.inner_text()
    revenue.locator("a").first.click()
    # To the upstream's schema: a page has a column lineage section only when it is fed.
    page.wait_for_url(re.compile(r"/assets/.*#schema$"))
    assert page.locator("h1").inner_text() == "stg_transactions"
    assert page.locator("#schema").count() == 1

    # The job's page: its runs, latest first, with their states.
    page.goto(f"{stack.ui}/assets/{job}")
    assert page.locator("h1").inner_text() == "nightly/build_sales_daily"
    rows = page.locator("[data-runs] tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).get_attribute("data-run") == second
    assert rows.nth(0).locator(".run-state").inner_text() == "FAIL"
    assert rows.nth(1).locator(".run-state").inner_text() == "COMPLETE"
    assert page.problems == [], page.problems

"""The metrics page rendered by the UI server: pictures, badges, checks, escaping."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import orjson
import pyarrow as pa
import pytest

from featurestore_service.metrics.profile import profile_table
from tests.metrics_stack import HOSTILE, NAME, metrics_stack
from tests.test_featurestore_api import parquet_bytes, upload, values
from tests.test_metrics_api import profiled, table
from tests.test_ui_server import assert_page
from ui.metric_charts import overlay, spark


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with metrics_stack(tmp_path_factory.mktemp("metrics-ui")) as urls:
        yield urls


@pytest.fixture(scope="module")
def ui(stack: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack[0], timeout=60) as client:
        yield client


def test_metrics_page_draws_histograms_sparklines_badges_and_checks(ui: httpx.Client) -> None:
    text = assert_page(ui.get(f"/featuresets/{NAME}/metrics"))
    assert "version 3" in text and "drift against v2" in text
    assert "Filled grey: v2; outlined: v3." in text
    # Two areas per numeric column: the reference (filled) and this version (outlined).
    assert len(re.findall(r'<path class="ref" d="M[\d.,LZ -]+"', text)) == 4
    assert len(re.findall(r'<path class="cur" d="M[\d.,LZ -]+"', text)) == 4
    # Rows across versions, and each column's null rates (drawn only where they differ).
    assert text.count('<svg class="spark"') >= 1 and "Rows across versions, " in text
    assert text.count("Null rate across versions, ") >= 4
    assert re.search(r"KS p=[\d.e-]+ · drift", text) and re.search(r"χ² p=[\d.e-]+ · drift", text)
    assert "not_null(visits)" in text and "fail (warn)" in text
    assert HOSTILE not in text and "&lt;img src=x onerror=alert(1)&gt;" in text

    # A date column's axis and range read as dates, not day numbers like 2.025e+04.
    day = text.split('data-column="signup_day"', 1)[1].split("</figure>", 1)[0]
    axis = re.search(r'class="small muted axis"><span>([^<]+)</span> <span>([^<]+)</span>', day)
    assert axis is not None and axis.groups() == ("2025-01-01", "2025-12-26"), day
    assert "e+0" not in day and "from 2025-06-30 to 2025-12-26" in day

    quiet = assert_page(ui.get(f"/featuresets/{NAME}/metrics", params={"v": 2}))
    assert "no drift against v1" in quiet and "· drift" not in quiet
    against = assert_page(ui.get(f"/featuresets/{NAME}/metrics", params={"v": 3, "against": 1}))
    assert "against v1" in against
    linked = assert_page(ui.get(f"/featuresets/{NAME}", params={"v": 3}))
    assert f'href="/featuresets/{NAME}/metrics?v=3"' in linked


def test_a_failing_warn_check_on_named_values_shows_on_the_metrics_page(
    ui: httpx.Client, stack: tuple[str, str]
) -> None:
    warn = [{"type": "range", "column": "threshold", "min": 0, "max": 1, "on_fail": "warn"}]
    with httpx.Client(base_url=stack[1] + "/api/v1", timeout=60) as fs:
        body = values("served_values", ("threshold", "float", 1.5), checks=warn)
        assert fs.post("/featuresets", json=body).status_code == 201
        profiled(fs, "served_values", 1)
    page = assert_page(ui.get("/featuresets/served_values"))
    assert 'href="/featuresets/served_values/metrics?v=1"' in page
    text = assert_page(ui.get("/featuresets/served_values/metrics"))
    assert "version 1" in text and "Checks of version 1" in text
    checks = text.split('id="checks"', 1)[1].split("</section>", 1)[0]
    assert "range(threshold)" in checks and "fail (warn)" in checks and "1.5" in checks
    # One row of named values, and no version before it to draw in grey.
    assert "1 value, 0 null" in text and "1 values" not in text
    assert "no earlier version to compare it with" in text and "v\u2013" not in text


def test_added_and_dropped_columns_are_named_on_the_metrics_page(
    ui: httpx.Client, stack: tuple[str, str]
) -> None:
    # A column new in this version had a card with no badge at all (no drift test to show),
    # and one the version dropped was not mentioned anywhere on the page.
    first = pa.table({"kept": [1.0, 2.0, 3.0], "gone": [1, 2, 3]})
    second = pa.table({"kept": [1.5, 2.0, 3.0], "fresh": ["a", "b", "c"]})
    with httpx.Client(base_url=stack[1] + "/api/v1", timeout=60) as fs:
        for version, data in enumerate((first, second), start=1):
            assert upload(fs, "reshaped", parquet_bytes(data)).status_code == 201
            profiled(fs, "reshaped", version)  # v2 is compared with v1 once v1's is done
    text = assert_page(ui.get("/featuresets/reshaped/metrics"))
    assert "Filled grey: v1; outlined: v2." in text
    fresh = text.split('data-column="fresh"', 1)[1].split("</figure>", 1)[0]
    kept = text.split('data-column="kept"', 1)[1].split("</figure>", 1)[0]
    assert "new in v2" in fresh and "new in v" not in kept
    assert 'Not in v2 any more: <span class="mono">gone</span>.' in text
    assert 'data-column="gone"' not in text
    # Null rates across versions: said for a column in both, not drawn as a lone dot for one
    # new in this version.
    assert "Null rate across versions, 0.0 % in each" in kept and "Null rate" not in fresh
    assert "spark" not in kept + fresh  # a flat line says nothing the words do not
    assert "Rows across versions, 3 in each" in text and 'class="spark"' not in text


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
    assert one is not None and one.reference and one.current and one.single
    from ui.routes.metrics import axis_labels

    day = overlay({"edges": [20254.0, 20254.0], "counts": [4]}, None)
    assert day is not None and axis_labels(day, "date32[day]") == ("", "2025-06-15")
    assert axis_labels(one, "double") == ("4.5", "5.5")
    span = overlay({"edges": [20254.0, 20264.0], "counts": [4]}, None)
    assert span is not None and not span.single
    assert axis_labels(span, "date32[day]") == ("2025-06-15", "2025-06-25")
    assert overlay({"edges": [0, 1], "counts": [0]}, None) is None
    assert spark([None, None]) is None
    assert spark([0.25]) is None and spark([None, 0.25]) is None  # one point is no line
    line = spark([1.0, None, 3.0])
    assert line is not None and line.points.count(",") == 2


def test_asset_metrics_page_shows_profile_drift_and_external_metric_sets(
    ui: httpx.Client, stack: tuple[str, str]
) -> None:
    fs = stack[1] + "/api/v1"
    for fingerprint, seed, shift in (("f:1:1", 1, 0.0), ("f:1:2", 2, 1.0)):
        body = {"fingerprint": fingerprint, "profile": profile_table(table(seed, shift))}
        sent = httpx.put(f"{fs}/metrics/assets/a-1/profile", content=orjson.dumps(body))
        assert sent.status_code == 201, sent.text
    same = httpx.put(f"{fs}/metrics/assets/a-1/profile", content=orjson.dumps(body))
    assert same.status_code == 200 and same.json()["unchanged"] is True
    deequ = {
        "analyzerContext": {
            "metricMap": [
                {
                    "analyzer": {"analyzerName": "Completeness", "column": "spend"},
                    "metric": {"entity": "Column", "instance": "spend", "name": "Completeness",
                               "value": 0.975},
                }
            ]
        }
    }  # fmt: skip
    own = {"name": "Mean", "column": "spend", "value": 101.5}
    put = httpx.put(f"{fs}/metricstore/", json={"name": "a-1", "metrics": [deequ, own]})
    assert put.status_code == 201, put.text
    text = assert_page(ui.get("/assets/a-1/metrics"))
    assert "version 2" in text and "drift against v1" in text
    assert len(re.findall(r'<path class="ref" d="M', text)) == 2
    assert "Completeness" in text and "0.975" in text and "101.5" in text
    empty = assert_page(ui.get("/assets/a-2/metrics"))
    # The command is code on the page, not Markdown backticks printed as they are.
    assert "No profile yet: <code>cairn crawl --profile</code>" in empty and "`" not in empty


def test_asset_metrics_page_says_why_a_version_could_not_be_profiled(
    ui: httpx.Client, stack: tuple[str, str]
) -> None:
    fs = stack[1] + "/api/v1"
    body = {"fingerprint": "g:1:1", "error": "lake/x.parquet: OSError: <thrift> ended early"}
    sent = httpx.put(f"{fs}/metrics/assets/a-3/profile", content=orjson.dumps(body))
    assert sent.status_code == 201 and sent.json()["status"] == "failed", sent.text
    text = assert_page(ui.get("/assets/a-3/metrics"))
    said = "Version 1 could not be profiled: lake/x.parquet: OSError: &lt;thrift&gt; ended early"
    assert said in text
    assert "(failed)" in text and "<thrift>" not in text  # escaped, and marked in the history

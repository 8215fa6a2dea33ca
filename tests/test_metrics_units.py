"""Profiles, tests and checks checked against independent computations on the same data."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from scipy import stats

from featurestore_service.metrics.checks import Check, evaluate
from featurestore_service.metrics.drift import compare
from featurestore_service.metrics.hll import HyperLogLog
from featurestore_service.metrics.profile import (
    BATCH_ROWS,
    QUANTILES,
    ColumnProfiler,
    profile_batches,
    profile_parquet,
    profile_table,
    sampled,
)
from featurestore_service.metrics.stats import chi2_homogeneity, chi2_sf, ks_two_sample, psi

KLL_EPS = 0.0133 * 1.5  # DataSketches' normalised rank error for k=200, with headroom
HLL_EPS = 0.0104 * 1.5 * 3  # three standard errors (2^14 registers: 1.04 / 128 each... *1.5)
P, PSI_T = 0.01, 0.1


def mixed(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pa.Table:
    values = rng.normal(10 + shift, 3, rows)
    values[rng.random(rows) < 0.1] = np.nan  # NaN, then nulls on top
    nulls = rng.random(rows) < 0.05
    cities = rng.choice(["rome", "oslo", "lima", "kyiv"], rows, p=[0.4, 0.3, 0.2, 0.1])
    if shift:
        cities = rng.choice(["rome", "oslo", "lima", "kyiv"], rows, p=[0.1, 0.2, 0.3, 0.4])
    return pa.table(
        {
            "x": pa.array(values, mask=nulls),
            "n": pa.array(rng.integers(0, 5000, rows)),
            "city": pa.array(cities),
        }
    )


def test_profile_matches_pyarrow_and_numpy() -> None:
    rng = np.random.default_rng(7)
    table = mixed(rng, 200_000)
    profile = profile_table(table)
    columns = {c["name"]: c for c in profile["columns"]}
    x = columns["x"]
    raw = table.column("x")
    finite = pc.drop_null(raw).to_numpy()
    finite = finite[np.isfinite(finite)]
    assert x["rows"] == 200_000 and x["nulls"] == raw.null_count
    assert x["nan"] == int(np.isnan(pc.drop_null(raw).to_numpy()).sum())
    assert x["min"] == pytest.approx(float(finite.min()))
    assert x["max"] == pytest.approx(float(finite.max()))
    assert x["mean"] == pytest.approx(float(finite.mean()), rel=1e-9)
    assert x["stddev"] == pytest.approx(float(finite.std()), rel=1e-9)
    ordered = np.sort(finite)
    for q in QUANTILES[1:-1]:
        # A quantile's rank is within the sketch's rank error of q.
        rank = np.searchsorted(ordered, x["quantiles"][str(q)]) / ordered.size
        assert abs(rank - q) <= KLL_EPS, q
    counts, _ = np.histogram(finite, bins=x["histogram"]["edges"])
    assert sum(x["histogram"]["counts"]) == pytest.approx(finite.size, rel=1e-3)
    for got, want in zip(x["histogram"]["counts"], counts, strict=True):
        assert abs(got - want) <= 2 * KLL_EPS * finite.size
    n = columns["n"]
    exact = pc.count_distinct(table.column("n")).as_py()
    assert abs(n["distinct"] - exact) <= HLL_EPS * exact
    city = columns["city"]
    expected = pc.value_counts(table.column("city")).to_pylist()
    assert {t["value"]: t["count"] for t in city["top"]} == {
        e["values"]: e["counts"] for e in expected
    }
    assert city["distinct"] == 4 and city["top_exact"] is True


def test_hll_large_cardinality() -> None:
    sketch = HyperLogLog()
    values = np.arange(300_000, dtype=np.float64) * 1.5
    sketch.add_numbers(values)
    assert abs(sketch.estimate() - 300_000) <= HLL_EPS * 300_000


def test_ks_and_chi2_match_scipy() -> None:
    rng = np.random.default_rng(3)
    for shift in (0.0, 0.1, 0.3):
        a, b = rng.normal(0, 1, 3000), rng.normal(shift, 1, 2500)
        d, p = ks_two_sample(a, b)
        ref = stats.ks_2samp(a, b, method="asymp")
        assert d == pytest.approx(ref.statistic, abs=1e-12)
        # The p-value is Kolmogorov's limit distribution (scipy's kstwobign) exactly; scipy's
        # "asymp" method uses the finite-n distribution at n = m*n/(m+n), a hair apart.
        en = len(a) * len(b) / (len(a) + len(b))
        assert p == pytest.approx(stats.kstwobign.sf(d * np.sqrt(en)), rel=1e-9, abs=1e-12)
        assert p == pytest.approx(ref.pvalue, abs=1e-2)
    for old, new in (([50, 30, 20], [48, 33, 19]), ([500, 300, 200, 0], [100, 300, 500, 7])):
        stat, p, dof = chi2_homogeneity(old, new)
        ref_stat, ref_p, ref_dof, _ = stats.chi2_contingency(
            np.array([old, new])[:, [i for i in range(len(old)) if old[i] + new[i]]],
            correction=False,
        )
        assert stat == pytest.approx(ref_stat) and dof == ref_dof
        assert p == pytest.approx(ref_p, rel=1e-6, abs=1e-300)
    for x, k in ((0.5, 1), (3.0, 2), (30.0, 10), (400.0, 300), (1e-3, 5)):
        assert chi2_sf(x, k) == pytest.approx(stats.chi2.sf(x, k), rel=1e-9, abs=1e-300)
    assert psi([1, 1], [1, 1]) == 0.0


def test_drift_found_on_shifted_data_not_on_resampled_data() -> None:
    rng = np.random.default_rng(11)
    reference = profile_table(mixed(rng, 100_000))
    same = profile_table(mixed(rng, 100_000))
    shifted = profile_table(mixed(rng, 100_000, shift=1.5))
    quiet = compare(reference, same, p_value=P, psi_threshold=PSI_T)
    assert quiet["drifted"] is False, quiet
    moved = compare(reference, shifted, p_value=P, psi_threshold=PSI_T)
    assert set(moved["drifted_columns"]) == {"x", "city"}, moved
    tests = {c["name"]: c["test"] for c in moved["columns"]}
    assert tests == {"x": "ks", "n": "ks", "city": "chi2"}


def test_null_share_is_tested_where_values_cannot_be_compared() -> None:
    # A numeric column gone all null has no sketch, and a column whose type changed has
    # nothing comparable: neither may hide that its share of nulls moved.
    rows = 2_000
    reference = profile_table(
        pa.table(
            {
                "n": pa.array(range(rows), pa.int64()),
                "t": pa.array(range(rows), pa.int64()),
                "u": pa.array(range(rows), pa.int64()),
                "s": pa.array(["a", "b"] * (rows // 2)),
            }
        )
    )
    candidate = profile_table(
        pa.table(
            {
                "n": pa.nulls(rows, pa.int64()),
                "t": pa.array([str(i) for i in range(rows)]),
                "u": pa.array([None] * (rows // 2) + ["x"] * (rows // 2), pa.string()),
                "s": pa.nulls(rows, pa.string()),
            }
        )
    )
    result = compare(reference, candidate, p_value=P, psi_threshold=PSI_T)
    by_name = {c["name"]: c for c in result["columns"]}
    assert by_name["n"]["test"] is None and by_name["n"]["drifted_by"] == ["nulls"]
    assert by_name["n"]["null_rate"] == [0.0, 1.0]
    assert by_name["t"]["change"] == "type" and by_name["t"]["drifted"] is False
    assert by_name["u"]["change"] == "type" and by_name["u"]["drifted_by"] == ["nulls"]
    assert result["drifted_columns"] == ["n", "u", "s"], result
    assert compare(reference, reference, p_value=P, psi_threshold=PSI_T)["drifted"] is False


def test_hostile_values_never_crash_a_profile() -> None:
    rows = 12_000
    huge = "é" * 2_000_000
    table = pa.table(
        {
            "all_null": pa.nulls(rows, pa.float64()),
            "all_null_str": pa.nulls(rows, pa.string()),
            "nan_inf": pa.array([np.nan, np.inf, -np.inf] * (rows // 3)),
            "many": pa.array([f"v{i}" for i in range(rows - 2)] + [huge, "\udcff"[:0] + "\x00"]),
            "nested": pa.array([{"a": [1, 2]}] * rows),
            "lists": pa.array([[1.0, None]] * rows),
            "binary": pa.array([b"\xff\x00"] * rows),
            "big_int": pa.array([2**63 - 1, -(2**63)] * (rows // 2)),
            "dec": pa.array([1] * rows, pa.decimal128(38, 2)),
            "ts": pa.array([datetime(2024, 1, 1, tzinfo=UTC)] * rows),
            # past datetime's year 9999 (a feature table may hold it): failed the profile
            "far": pa.array([-(10**18), 10**18] * (rows // 2), pa.timestamp("us", "UTC")),
            "dt": pa.array([datetime(2024, 1, 1).date()] * rows),
            "flag": pa.array([True, False, None] * (rows // 3)),
            "dict": pa.array(["a", "b"] * (rows // 2)).dictionary_encode(),
        }
    )
    profile = profile_table(table)
    columns = {c["name"]: c for c in profile["columns"]}
    assert columns["all_null"]["nulls"] == rows and columns["all_null"]["mean"] is None
    assert columns["nan_inf"]["nan"] == rows // 3 and columns["nan_inf"]["infinite"] == 2 * (
        rows // 3
    )
    assert columns["nan_inf"]["min"] is None
    assert abs(columns["many"]["distinct"] - rows) <= HLL_EPS * rows
    assert all(len(t["value"]) <= 201 for t in columns["many"]["top"])
    assert columns["nested"]["kind"] == "other" and columns["nested"]["count"] == rows
    assert columns["ts"]["min"].startswith("2024-01-01")
    assert (columns["far"]["min"], columns["far"]["max"]) == (-(10**18), 10**18)
    assert columns["flag"]["top"] == [
        {"value": "false", "count": rows // 3},
        {"value": "true", "count": rows // 3},
    ]
    import orjson

    orjson.dumps(profile)  # what the store keeps: no NaN, no bytes, nothing unserialisable
    compare(profile, profile, p_value=P, psi_threshold=PSI_T)


def test_checks_pass_and_fail_as_declared(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    now = datetime(2025, 1, 2, tzinfo=UTC)
    pq.write_table(
        pa.table(
            {
                "id": [1, 2, 2, 4],
                "score": [0.1, 0.5, 1.5, None],
                "city": ["rome", "oslo", "mars", "rome"],
                "at": [now - timedelta(hours=h) for h in (30, 20, 10, 5)],
            }
        ),
        path,
    )
    checks = [
        Check(type="row_count", min=1, max=10),
        Check(type="row_count", min=5),
        Check(type="not_null", column="id"),
        Check(type="not_null", column="score"),
        Check(type="unique", column="id"),
        Check(type="range", column="score", min=0, max=1),
        Check(type="allowed_values", column="city", values=["rome", "oslo"]),
        Check(type="freshness", column="at", max_age=6 * 3600),
        Check(type="freshness", column="at", max_age=3600),
        Check(type="not_null", column="missing"),
    ]
    results = evaluate(checks, path, now=now)
    assert [r["passed"] for r in results] == [
        True, False, True, False, False, False, False, True, False, False,
    ]  # fmt: skip
    assert results[3]["failing"] == ["row 3"]
    assert results[4]["failing"] == [2]
    assert results[5]["failing"] == [1.5]
    assert results[6]["failing"] == ["mars"]
    assert "missing" in results[9]["observed"]


def test_range_checks_compare_integers_exactly() -> None:
    """A range over int64 or uint64 values past 2**53 was cast to double: Arrow refused it
    ("cannot evaluate") or rounded it. Each value is compared with the bound as Python does."""
    big = 2**62
    columns = {
        "i64": pa.array([-(2**63), -big - 1, -1, 0, 2**53 + 1, big + 1, 2**63 - 1], pa.int64()),
        "u64": pa.array([0, 1, 2**53 + 1, big, 2**63 + 1, 2**64 - 1], pa.uint64()),
        "i8": pa.array([-128, -3, 0, 3, 127], pa.int8()),
        "u8": pa.array([0, 1, 255, None], pa.uint8()),
    }
    bounds = [
        (0.0, float(big)),
        (-float(big), None),
        (None, 2.0**63),
        (-2.5, 2.5),
        (2.0**53, 2.0**64),
        (-1e30, 1e30),
        (300.0, None),
        (None, -300.0),
        (float("-inf"), float("inf")),
    ]
    for name, column in columns.items():
        held = [v for v in column.to_pylist() if v is not None]
        for low, high in bounds:
            check = Check(type="range", column=name, min=low, max=high)
            [result] = evaluate([check], pa.table({name: column}))
            outside = [
                v for v in held if (low is not None and v < low) or (high is not None and v > high)
            ]
            assert result["observed"] == len(outside), (name, low, high, result)
            assert result["failing"] == outside[:5] and result["passed"] is (not outside)


def test_allowed_values_the_column_cannot_hold_match_nothing() -> None:
    # Cast unsafely, 1.5 became 1 and 300 became 44 in an int8 column: both passed.
    table = pa.table({"tier": pa.array([1, 2, 44], pa.int8()), "share": [0.5, 1.0, 1.5]})
    checks = [
        Check(type="allowed_values", column="tier", values=[1.5, 2, 300]),
        Check(type="allowed_values", column="tier", values=[1, 2, 44]),
        Check(type="allowed_values", column="share", values=[0.5, 1]),
        Check(type="allowed_values", column="tier", values=[2**70]),
    ]
    results = evaluate(checks, table)
    assert [r["passed"] for r in results] == [False, True, False, False]
    assert results[0]["failing"] == [1, 44] and results[0]["observed"] == 2
    assert results[2]["failing"] == [1.5]
    assert results[3]["observed"] == 3
    # A pandas category column is checked as its values (it could not be, or matched nothing).
    categories = pa.table(
        {
            "plan": pa.array(["free", "pro", "mars", None]).dictionary_encode(),
            "tier": pa.array([1, 2, 50, 2]).dictionary_encode(),
        }
    )
    checks = [
        Check(type="allowed_values", column="plan", values=["free", "pro"]),
        Check(type="allowed_values", column="tier", values=[1, 2]),
        Check(type="unique", column="tier"),
        Check(type="range", column="tier", min=0, max=10),
    ]
    results = evaluate(checks, categories)
    assert [r["failing"] for r in results] == [["mars"], [50], [2], [50]], results


def test_durations_times_and_intervals_are_profiled_with_the_rest(tmp_path: Path) -> None:
    """Arrow has no min_max for durations nor an int64 cast for time32: one such column
    failed the whole profile. Durations count their unit, times of day theirs since
    midnight, intervals get counts only; the other columns are profiled as usual."""
    rows = 1_000
    seconds = [timedelta(seconds=i) if i % 10 else None for i in range(rows)]
    times = [time(1, 2, i % 60) for i in range(rows)]
    table = pa.table(
        {
            "gap_s": pa.array(seconds, pa.duration("s")),
            "gap_us": pa.array(seconds, pa.duration("us")).dictionary_encode(),
            "at_s": pa.array(times, pa.time32("s")),
            "at_ms": pa.array(times, pa.time32("ms")),
            "at_ns": pa.array(times, pa.time64("ns")),
            "n": pa.array(range(rows), pa.int64()),
        }
    )
    path = tmp_path / "times.parquet"
    pq.write_table(table, path)
    every = table.append_column(
        "span", pa.array([(1, 2, 3)] * rows, pa.month_day_nano_interval())
    )  # Parquet cannot hold an interval: only a table has one
    for profile in (profile_parquet(path), profile_table(every)):
        columns = {c["name"]: c for c in profile["columns"]}
        for name, scale in (("gap_s", 1), ("gap_us", 10**6)):
            gap = columns[name]
            assert (gap["kind"], gap["count"], gap["nulls"]) == ("numeric", 900, 100), gap
            assert (gap["min"], gap["max"]) == (scale, 999 * scale)
            assert gap["mean"] == pytest.approx(500 * scale)
        for name in ("at_s", "at_ms", "at_ns"):
            at = columns[name]
            assert (at["kind"], at["min"], at["max"]) == ("temporal", "01:02:00", "01:02:59"), at
            assert at["distinct"] == 60 and at["quantiles"] is not None
        assert columns["n"]["max"] == rows - 1 and "n" in profile["sketches"]
        compare(profile, profile, p_value=P, psi_threshold=PSI_T)
    span = {c["name"]: c for c in profile_table(every)["columns"]}["span"]
    assert (span["kind"], span["count"], span["min"]) == ("other", rows, None)


def test_dictionary_encoded_numbers_profile_as_their_values(tmp_path: Path) -> None:
    # pandas writes a category column dictionary-encoded: its numbers were kind "other",
    # without statistics, sketch or drift.
    rng = np.random.default_rng(3)
    scores = pa.array(rng.integers(0, 5, 5_000).astype(float))
    flags = pa.array(rng.random(5_000) < 0.3)
    plain = profile_table(pa.table({"score": scores, "flag": flags}))
    path = tmp_path / "categories.parquet"
    encoded = pa.table({"score": scores.dictionary_encode(), "flag": flags.dictionary_encode()})
    pq.write_table(encoded, path)
    for profile in (profile_table(encoded), profile_parquet(path)):
        for column, expected in zip(profile["columns"], plain["columns"], strict=True):
            for key in ("kind", "count", "nulls", "distinct", "min", "max", "mean", "top"):
                assert column[key] == expected[key], (column["name"], key)
        assert "score" in profile["sketches"]
        moved = compare(plain, profile, p_value=P, psi_threshold=PSI_T)
        assert {c["name"]: c["test"] for c in moved["columns"]} == {"score": "ks", "flag": "chi2"}


def test_high_cardinality_strings_are_pruned_and_estimated() -> None:
    rows = 150_000  # past TOP_LIMIT distinct values: the counts are pruned, distinct estimated
    ids = [f"id-{i}" for i in range(rows)]
    ids[:1000] = ["hot"] * 1000
    profile = profile_table(pa.table({"id": ids}))
    column = profile["columns"][0]
    exact = rows - 999
    assert abs(column["distinct"] - exact) <= HLL_EPS * exact
    assert column["top"][0] == {"value": "hot", "count": 1000} and column["top_exact"] is False


def test_epoch_numbers_read_as_the_dates_arrow_gives() -> None:
    from cairn.epochs import epoch_text, epoch_unit

    days = pa.array([date(1969, 12, 31), date(2025, 6, 1), date(9999, 12, 31)], pa.date32())
    for value, number in zip(days.to_pylist(), pc.cast(days, pa.int32()).to_pylist(), strict=True):
        assert epoch_text(number, "day") == value.isoformat()
    moments = pa.array(
        [datetime(2025, 6, 1, 12, 30, 5, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)],
        pa.timestamp("ns", tz="UTC"),
    )
    for value, number in zip(
        moments.to_pylist(), moments.cast(pa.int64()).to_pylist(), strict=True
    ):
        assert epoch_text(number, "ns") == value.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert epoch_unit(str(days.type)) == "day" and epoch_unit(str(moments.type)) == "ns"
    assert epoch_unit("timestamp[ms]") == "ms" and epoch_unit("date64[ms]") == "ms"
    assert epoch_unit("double") is None and epoch_unit("") is None
    assert epoch_text(1e300, "day") == "1e+300" and epoch_text(float("nan"), "s") == "nan"


def _exact_fields(profile: dict[str, object]) -> list[dict[str, object]]:
    """A profile's columns without the KLL-based fields (the sketch compacts at random)."""
    columns = profile["columns"]
    assert isinstance(columns, list)
    return [{k: v for k, v in c.items() if k not in ("quantiles", "histogram")} for c in columns]


# 140,000 of 150,000 rows: every row group is picked, then rows are drawn from all of them.
@pytest.mark.parametrize("sample_rows", [0, 140_000])
def test_parquet_profile_read_column_by_column_matches_batches(
    tmp_path: Path, sample_rows: int
) -> None:
    """profile_parquet reads one column at a time; every column must see the rows (and the
    sampled rows) a read of whole batches gives it."""
    rng = np.random.default_rng(11)
    table = mixed(rng, 150_000).append_column("day", pa.array(np.arange(150_000) % 400, pa.int32()))
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=40_000)  # batches span row groups
    by_columns = profile_parquet(path, sample_rows=sample_rows, seed=3)
    handle = pq.ParquetFile(path)
    batches = handle.iter_batches(batch_size=BATCH_ROWS)
    if sample_rows:
        batches = sampled(batches, table.num_rows, sample_rows, 3)
    by_batches = profile_batches(handle.schema_arrow, batches, rows=table.num_rows)
    assert by_columns["profiled_rows"] == by_batches["profiled_rows"]
    assert by_columns["sampled"] is bool(sample_rows)
    assert _exact_fields(by_columns) == _exact_fields(by_batches)


def test_parquet_profile_with_a_repeated_column_name(tmp_path: Path) -> None:
    """Columns are read by name; a file that names one twice is profiled whole instead."""
    path = tmp_path / "twice.parquet"
    table = pa.Table.from_arrays([pa.array([1, 2, 3]), pa.array(["a", "b", "b"])], ["v", "v"])
    pq.write_table(table, path)
    profile = profile_parquet(path)
    assert [c["kind"] for c in profile["columns"]] == ["numeric", "string"]
    assert profile["columns"][1]["top"] == [
        {"value": "b", "count": 2},
        {"value": "a", "count": 1},
    ]


def test_merged_value_counts_match_group_by() -> None:
    """Frequency tables merge without pyarrow's group_by: same totals, one row per value."""
    rng = np.random.default_rng(5)
    profiler = ColumnProfiler("s", pa.string())
    words = np.array([f"w{i}" for i in range(3000)], dtype=object)
    chunks = [pa.array(words[rng.integers(0, 3000, 20_000)]) for _ in range(4)]
    for chunk in chunks:
        profiler.update(chunk)
    merged = profiler._merge()
    expected = (
        pa.Table.from_pydict({"values": pa.concat_arrays(chunks)})
        .group_by("values")
        .aggregate([("values", "count")])
    )
    assert dict(zip(merged["values"].to_pylist(), merged["counts"].to_pylist(), strict=True)) == (
        dict(zip(expected["values"].to_pylist(), expected["values_count"].to_pylist(), strict=True))
    )


def test_profiling_a_parquet_file_leaves_pandas_unloaded(tmp_path: Path) -> None:
    """pyarrow imports pandas (where installed) for to_numpy, pa.array and group_by; a
    service that profiles a table would then keep its ~36 MiB for good."""
    path = tmp_path / "t.parquet"
    pq.write_table(mixed(np.random.default_rng(2), 100_000), path, row_group_size=30_000)
    code = (
        "import sys\n"
        "from featurestore_service.metrics.profile import profile_parquet\n"
        f"p = profile_parquet({str(path)!r}, sample_rows=50_000, seed=1)\n"
        "assert p['columns'][2]['top'], p\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False", out.stderr

"""Drift between two profiles of the same columns (DESIGN 10).

Numeric and temporal columns: the KS statistic read off the two KLL sketches (the largest gap
between their CDFs over both sketches' quantile points) and PSI over the reference's deciles.
String and boolean columns: chi-squared and PSI over the reference's and candidate's top values
plus an "other" bucket. The share of nulls is tested apart (chi-squared and PSI on null versus
not null), so a column going 40 % null is drift even when its values keep their shape.
A column is flagged only when a test is significant AND its PSI shows a material shift: with
a million rows any difference at all is significant, and the sketches' own rank error (about
1.3 %) would otherwise read as drift.
"""

from __future__ import annotations

from typing import Any

from featurestore_service.metrics.profile import sketch_of
from featurestore_service.metrics.stats import chi2_homogeneity, kolmogorov_sf, psi

RANK_POINTS = [i / 100 for i in range(1, 100)]
DECILES = [i / 10 for i in range(1, 10)]


def compare(
    reference: dict[str, Any], candidate: dict[str, Any], *, p_value: float, psi_threshold: float
) -> dict[str, Any]:
    ref_columns = {c["name"]: c for c in reference["columns"]}
    new_columns = {c["name"]: c for c in candidate["columns"]}
    ref_sketches = reference.get("sketches", {})
    new_sketches = candidate.get("sketches", {})
    results: list[dict[str, Any]] = []
    for name, column in new_columns.items():
        old = ref_columns.get(name)
        if old is None:
            results.append({"name": name, "test": None, "change": "added", "drifted": False})
            continue
        if name in ref_sketches and name in new_sketches:
            result = _numeric(ref_sketches[name], new_sketches[name])
        elif old.get("top") is not None and column.get("top") is not None:
            result = _categorical(old, column)
        else:
            # No values to compare (a column gone all null has no sketch, a changed type
            # nothing in common), but the share of nulls still says whether the column moved.
            changed = old.get("type") != column.get("type")
            result = {"test": None, "change": "type" if changed else None}
        result["name"] = name
        result.setdefault("change", None)
        result["null_rate"] = [old["null_rate"], column["null_rate"]]
        # Nulls are outside the value distribution, so their share is tested on its own.
        old_split = [old["nulls"], old["rows"] - old["nulls"]]
        new_split = [column["nulls"], column["rows"] - column["nulls"]]
        statistic, p, _ = chi2_homogeneity(old_split, new_split)
        nulls = {"statistic": statistic, "p_value": p, "psi": psi(old_split, new_split)}
        result["nulls"] = nulls
        by = []
        if result["test"] and result["p_value"] < p_value and result["psi"] >= psi_threshold:
            by.append("values")
        if nulls["p_value"] < p_value and nulls["psi"] >= psi_threshold:
            by.append("nulls")
        result["drifted_by"] = by
        result["drifted"] = bool(by)
        results.append(result)
    for name in ref_columns.keys() - new_columns.keys():
        results.append({"name": name, "test": None, "change": "removed", "drifted": False})
    drifted = [r["name"] for r in results if r["drifted"]]
    return {
        "thresholds": {"p_value": p_value, "psi": psi_threshold},
        "drifted": bool(drifted),
        "drifted_columns": drifted,
        "columns": results,
    }


def _numeric(old_encoded: str, new_encoded: str) -> dict[str, Any]:
    old, new = sketch_of(old_encoded), sketch_of(new_encoded)
    points = sorted(set(old.get_quantiles(RANK_POINTS)) | set(new.get_quantiles(RANK_POINTS)))
    old_cdf = old.get_cdf(points)
    new_cdf = new.get_cdf(points)
    statistic = max(abs(a - b) for a, b in zip(old_cdf, new_cdf, strict=True))
    splits = sorted(set(old.get_quantiles(DECILES)))
    index = psi(old.get_pmf(splits), new.get_pmf(splits)) if splits else 0.0
    return {
        "test": "ks",
        "statistic": statistic,
        "p_value": kolmogorov_sf(statistic, old.n, new.n),
        "psi": index,
    }


def _counts(column: dict[str, Any], keys: list[str]) -> list[float]:
    top = {t["value"]: t["count"] for t in column["top"]}
    listed = [float(top.get(k, 0)) for k in keys]
    listed.append(float(max(0, column["count"] - sum(top.values()))))
    return listed


def _categorical(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    keys = sorted({t["value"] for t in old["top"]} | {t["value"] for t in new["top"]})
    old_counts, new_counts = _counts(old, keys), _counts(new, keys)
    statistic, p, dof = chi2_homogeneity(old_counts, new_counts)
    return {
        "test": "chi2",
        "statistic": statistic,
        "p_value": p,
        "dof": dof,
        "psi": psi(old_counts, new_counts),
    }

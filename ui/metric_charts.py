"""Geometry of the metric pictures, drawn server-side as SVG by ``featureset_metrics.html``.

Only numbers leave this module (path data, coordinates), so the template escapes every name
and no chart library or script is needed. Two histograms of one column rarely share bins (each
version's edges span its own min and max), so both are drawn as densities over the union of
their ranges: the areas compare, whatever the row counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

HIST_W = 320
HIST_H = 96
SPARK_W = 160
SPARK_H = 28


@dataclass(slots=True)
class Overlay:
    reference: str  # SVG path data (a closed step area), or "" when absent
    current: str
    low: float
    high: float
    width: int = HIST_W
    height: int = HIST_H
    single: bool = False  # one value everywhere: the axis was widened around it


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _densities(histogram: dict[str, Any]) -> list[tuple[float, float, float]]:
    edges = histogram.get("edges") or []
    counts = histogram.get("counts") or []
    total = sum(c for c in counts if _finite(c))
    if len(edges) != len(counts) + 1 or not total or not all(_finite(e) for e in edges):
        return []
    out = []
    for i, count in enumerate(counts):
        left, right = float(edges[i]), float(edges[i + 1])
        width = right - left
        out.append((left, right, count / total / width if width > 0 else 0.0))
    return out


def _area(bins: list[tuple[float, float, float]], low: float, high: float, top: float) -> str:
    if not bins or top <= 0:
        return ""
    span = high - low or 1.0

    def x(value: float) -> float:
        return round((value - low) / span * HIST_W, 1)

    def y(density: float) -> float:
        return round(HIST_H - density / top * (HIST_H - 4), 1)

    parts = [f"M{x(bins[0][0])},{HIST_H}"]
    for left, right, density in bins:
        parts.append(f"L{x(left)},{y(density)}L{x(right)},{y(density)}")
    parts.append(f"L{x(bins[-1][1])},{HIST_H}Z")
    return "".join(parts)


def overlay(reference: dict[str, Any] | None, current: dict[str, Any] | None) -> Overlay | None:
    """Both histograms on one axis; None when neither has one (a string column)."""
    old = _densities(reference) if reference else []
    new = _densities(current) if current else []
    if not old and not new:
        return None
    low = min(b[0] for b in old + new)
    high = max(b[1] for b in old + new)
    single = False
    if high <= low:
        # One value everywhere: a single bar in the middle.
        low, high = low - 0.5, high + 0.5
        old = [(low + 0.25, high - 0.25, 1.0)] if old else []
        new = [(low + 0.25, high - 0.25, 1.0)] if new else []
        single = True
    top = max([b[2] for b in old + new] or [0.0])
    return Overlay(_area(old, low, high, top), _area(new, low, high, top), low, high, single=single)


@dataclass(slots=True)
class Spark:
    points: str  # polyline points, oldest left
    last_x: float
    last_y: float
    low: float
    high: float
    width: int = SPARK_W
    height: int = SPARK_H


def spark(values: list[float | None]) -> Spark | None:
    """A sparkline of a value across versions (None values leave a gap, i.e. are skipped);
    None below two known values: a lone point says nothing the number beside it does not
    (a column new in this version drew a dot with no line)."""
    known = [(i, float(v)) for i, v in enumerate(values) if v is not None and _finite(v)]
    if len(known) < 2:
        return None
    low = min(v for _, v in known)
    high = max(v for _, v in known)
    span = high - low or 1.0
    step = SPARK_W / max(1, len(values) - 1)

    def y(v: float) -> float:
        return round(SPARK_H - 3 - (v - low) / span * (SPARK_H - 6), 1)

    points = " ".join(f"{round(i * step, 1)},{y(v)}" for i, v in known)
    i, v = known[-1]
    return Spark(points, round(i * step, 1), y(v), low, high)

"""Temporal columns as people read them: profiles keep dates and times as numbers since the
epoch (sketches and histograms need numbers); the API and the UI show them as ISO 8601."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

# Seconds per unit of a column's stored number (date32 counts days, date64 milliseconds).
SECONDS = {"day": 86_400.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
_TYPE = re.compile(r"^(date32|date64|timestamp)\[(\w+)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_unit(type_text: str) -> str | None:
    """The unit of a date or timestamp column's numbers from its Arrow type text
    (``date32[day]``, ``timestamp[us, tz=UTC]``); None for any other type."""
    found = _TYPE.match(type_text or "")
    if found is None:
        return None
    kind, unit = found.groups()
    if kind == "date32":
        return "day"
    return unit if unit in SECONDS else None


def epoch_text(value: float, unit: str) -> str:
    """``value`` (a number of ``unit`` since 1970-01-01 UTC) as ISO 8601: a date for day
    counts, else a UTC time to the second; the number itself when no calendar holds it."""
    if not math.isfinite(value):
        return str(value)
    try:
        moment = _EPOCH + timedelta(seconds=value * SECONDS[unit])
    except (OverflowError, ValueError):
        return f"{value:.6g}"
    if unit == "day":
        return moment.date().isoformat()
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

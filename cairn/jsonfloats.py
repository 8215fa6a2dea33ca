"""NaN and infinities as JSON carries them: the strings "NaN", "Infinity" and "-Infinity".

JSON has no such numbers, so the services write them by name (Feast's and Protocol Buffers'
spelling; null means a missing value). A reader that builds a float column again (an Arrow
table, a sample of served values) turns the names back into floats here.
"""

from __future__ import annotations

import math
from typing import Any

NAMED_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def named_floats(values: list[Any]) -> list[float | None] | None:
    """``values`` as floats when they are all numbers, nulls and those names; else None (the
    column is not a float column, e.g. text that happens to read "NaN" beside other text)."""
    floats: list[float | None] = []
    for value in values:
        if value is None:
            floats.append(None)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            floats.append(float(value))
        elif isinstance(value, str) and value in NAMED_FLOATS:
            floats.append(NAMED_FLOATS[value])
        else:
            return None
    return floats

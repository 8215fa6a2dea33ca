"""The stores' integer bounds, in a module the command line imports without pydantic."""

from __future__ import annotations

# Both stores (SQLite, MongoDB) hold 64-bit signed integers: versions, row counts, values.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

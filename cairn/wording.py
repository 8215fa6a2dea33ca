"""How the CLI and the UI write counts and values: "1 asset", "2,000 assets"; a stored
null as ``null``, not Python's ``None``."""

from __future__ import annotations

from typing import Any

__all__ = ["counted", "noun_for", "scalar"]


def noun_for(count: object, noun: str) -> str:
    """``noun`` as ``count`` of it takes it: singular for one, else with an s (the nouns
    Cairn counts all take one)."""
    return noun if count == 1 else f"{noun}s"


def counted(count: int, noun: str) -> str:
    """``count`` (with thousands separators) and ``noun``: "1 manifest", "10,000 manifests"."""
    return f"{count:,} {noun_for(count, noun)}"


def scalar(value: Any) -> str:
    """A label or feature value as text: JSON spelling for booleans and null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | dict):
        import orjson

        return orjson.dumps(value).decode()
    return str(value)

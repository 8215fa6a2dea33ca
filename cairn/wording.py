"""Counts in English, for what the CLI and the UI print: "1 asset", "2,000 assets"."""

from __future__ import annotations

__all__ = ["counted", "noun_for"]


def noun_for(count: object, noun: str) -> str:
    """``noun`` as ``count`` of it takes it: singular for one, else with an s (the nouns
    Cairn counts all take one)."""
    return noun if count == 1 else f"{noun}s"


def counted(count: int, noun: str) -> str:
    """``count`` (with thousands separators) and ``noun``: "1 manifest", "10,000 manifests"."""
    return f"{count:,} {noun_for(count, noun)}"

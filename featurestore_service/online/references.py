"""Feature references (``set:feature``, ``set:*``, ``set@3:feature``; DESIGN 9) read into what
each set is asked for. Apart from the serving code, so the command line can check its
``--feature`` options without importing the web layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cairn.errors import invalid_field as field_problem
from cairn.models import MAX_VERSION

MAX_REFERENCES = 10_000


@dataclass(slots=True)
class Wanted:
    """The features asked of one set, in request order."""

    name: str
    pinned: int | None
    features: list[str]  # "*" expands once the layout is known
    star: bool = False


def parse_references(features: Any) -> list[Wanted]:
    """``features`` (a request's list of references) by set, or a 422 naming the one that is
    not a reference."""
    if not isinstance(features, list) or not features:
        raise field_problem(
            "features", 'give a non-empty list such as ["customer_features:tenure_days"]'
        )
    if len(features) > MAX_REFERENCES:
        raise field_problem(
            "features", f"{len(features)} references; the limit is {MAX_REFERENCES}"
        )
    by_set: dict[tuple[str, int | None], Wanted] = {}
    for index, ref in enumerate(features):
        if not isinstance(ref, str) or ":" not in ref:
            raise field_problem(
                f"features[{index}]",
                f"{ref!r} is not a reference; write set:feature, set:* or set@3:feature",
            )
        head, _, feature = ref.partition(":")
        name, at, pin = head.partition("@")
        pinned = None
        if at and pin.lower() != "latest":  # Feast's set@latest:feature is the live version
            # ASCII only: "²".isdigit() holds, but int() refuses it.
            if not (pin.isascii() and pin.isdigit()) or not 1 <= int(pin) <= MAX_VERSION:
                raise field_problem(
                    f"features[{index}]",
                    f"{ref!r}: the version after @ is a number from 1 to {MAX_VERSION}, or latest",
                )
            pinned = int(pin)
        if not name or not feature:
            raise field_problem(f"features[{index}]", f"{ref!r} names no set or no feature")
        wanted = by_set.setdefault((name, pinned), Wanted(name, pinned, []))
        if feature == "*":
            wanted.star = True
        elif feature not in wanted.features:
            wanted.features.append(feature)
    names = [w.name for w in by_set.values()]
    for name in names:
        if names.count(name) > 1:
            raise field_problem("features", f"set {name!r} is referenced at two versions; use one")
    return list(by_set.values())

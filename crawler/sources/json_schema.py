"""A schema inferred from sample JSON messages (a Kafka topic's newest messages)."""

from __future__ import annotations

from typing import Any

import orjson

from cairn.models import MAX_COLUMNS


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "struct"
    if isinstance(value, list):
        return "list"
    return "null"


def _merge(a: str, b: str) -> str:
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"int64", "double"}:
        return "double"
    return "json"  # values of different kinds: any JSON value


def infer_json_schema(messages: list[bytes]) -> list[dict[str, Any]] | None:
    """Top-level fields of the messages that are JSON objects, in first-seen order, with a
    type each (``int64``, ``double``, ``bool``, ``string``, ``struct``, ``list``, or ``json``
    for mixed kinds); a field is nullable when some object lacks it or holds null. None when
    no message is a JSON object (binary or Avro-encoded topics)."""
    kinds: dict[str, str] = {}
    seen: dict[str, int] = {}
    nulls: set[str] = set()
    objects = 0
    for raw in messages:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(value, dict):
            continue
        objects += 1
        for key, item in value.items():
            kind = _kind(item)
            if kind == "null":
                nulls.add(key)
            kinds[key] = _merge(kinds.get(key, "null"), kind)
            seen[key] = seen.get(key, 0) + 1
    if not objects:
        return None
    return [
        {
            "name": key,
            "type": "string" if kind == "null" else kind,
            "nullable": key in nulls or seen[key] < objects,
        }
        for key, kind in list(kinds.items())[:MAX_COLUMNS]
        if key
    ]

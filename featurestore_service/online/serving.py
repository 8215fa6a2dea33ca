"""Online lookups (``POST /api/v1/online-features`` and Feast's ``POST /get-online-features``).

The request and the answer are Feast feature server's JSON, so Feast's SDK reads it as is
(its remote online store; tests/test_feast_client.py):
``{"features": ["set:feature", "set:*", "set@3:feature"], "entities": {"key": [...]},
"full_feature_names": false}`` -> ``{"metadata": {"feature_names": [...]}, "results": [{"values",
"statuses", "event_timestamps"}, ...]}``, one result per column, entity columns first.

Latency is the point: the body is parsed with orjson, no pydantic model is built per request,
each table is one indexed read of the requested keys, and stored rows are already JSON. The
layout of each set's live version is cached and re-read only when a read reports another live
version.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from cairn.errors import Conflict, InvalidRequest, NotFound
from cairn.web import body_not_shaped, parse_json
from featurestore_service.online.base import OnlineRows, OnlineStore, OnlineTable
from featurestore_service.online.references import Wanted, parse_references
from featurestore_service.online.references import field_problem as _field

PRESENT = "PRESENT"
NOT_FOUND = "NOT_FOUND"
OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"
EPOCH_TEXT = "1970-01-01T00:00:00Z"
REFERENCE_CACHE = 256


def rfc3339(micros: int) -> str:
    """Microseconds since 1970 as RFC 3339 text. Its year has four digits (``%Y`` wrote
    "500"); a year past 0-9999, which a feature table may hold (its microseconds span
    292,000 years either side of 1970), has no RFC 3339 form and is written as ISO 8601's
    expanded year, signed and six digits wide, as JavaScript's Date writes it."""
    seconds, fraction = divmod(micros, 1_000_000)
    moment = time.gmtime(seconds)
    year = moment.tm_year
    text = f"{year:04d}" if 0 <= year <= 9999 else f"{year:+07d}"
    text += time.strftime("-%m-%dT%H:%M:%S", moment)
    return f"{text}.{fraction:06d}Z" if fraction else f"{text}Z"


_INT_TYPE = re.compile(r"(u?)int(8|16|32|64)")
_INT_TEXT = re.compile(r"-?[0-9]+")


def _int_range(dtype: str) -> tuple[int, int]:
    """The values an Arrow integer type holds (``int8`` ... ``uint64``; 64 bits otherwise)."""
    match = _INT_TYPE.fullmatch(dtype)
    bits = int(match.group(2)) if match else 64
    if match and match.group(1):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _outside(column: str, dtype: str, shown: str) -> InvalidRequest:
    low, high = _int_range(dtype)
    return _field(
        f"entities.{column}",
        f"{shown} is outside the range of the column's type {dtype} ({low} to {high})",
    )


def _coerce(value: Any, dtype: str, column: str) -> Any:
    """A request's key value as the stored column holds it (ints for int columns)."""
    if "int" in dtype:
        if isinstance(value, str) and _INT_TEXT.fullmatch(value):
            if len(value) > 24:  # far past 64 bits: not worth converting
                raise _outside(column, dtype, "the key")
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise _field(f"entities.{column}", f"{value!r} is not an integer key")
        low, high = _int_range(dtype)
        if not low <= value <= high:
            # No row holds it, and past 64 bits it could not even be encoded as a key.
            raise _outside(column, dtype, str(value))
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        if not -(2**63) <= value < 2**64:
            # The answer echoes the request's keys, and JSON encoders stop at 64 bits.
            raise _field(
                f"entities.{column}", f"{value} has more than 64 bits; send the key as a string"
            )
        return str(value)
    raise _field(f"entities.{column}", f"{value!r} is not a string key")


def _claim(origins: dict[str, str], column: str, origin: str) -> None:
    """Records that ``origin`` answers ``column``; a 422 when another part already does.

    Feast refuses such a request too: a client keying the answer by column name (``to_dict()``,
    a DataFrame) would silently keep one of the two columns.
    """
    taken = origins.setdefault(column, origin)
    if taken != origin:
        raise _field(
            "features",
            f"two columns of the answer would be named {column!r} ({taken} and {origin}); "
            "ask with full_feature_names=true for set__feature names, or ask for one of them",
        )


class OnlineService:
    def __init__(
        self,
        store: OnlineStore,
        max_entities: int,
        version_of: Callable[[str, int], Awaitable[object]] | None = None,
    ):
        """``version_of(name, version)``: the registry's read of a version, a NotFound when
        it does not exist; it tells a pinned version that is not online from one that never
        was (the online store knows only the live version)."""
        self.store = store
        self.max_entities = max_entities
        self.version_of = version_of
        self._layouts: dict[str, OnlineTable] = {}
        # Clients send the same reference lists over and over: parse each list once.
        self._references: dict[tuple[str, ...], list[Wanted]] = {}
        self._positions: dict[tuple[str, int], dict[str, int]] = {}

    def _wanted(self, features: Any) -> list[Wanted]:
        if isinstance(features, list) and all(isinstance(f, str) for f in features):
            key = tuple(features)
            found = self._references.get(key)
            if found is None:
                found = parse_references(features)
                if len(self._references) >= REFERENCE_CACHE:
                    self._references.clear()
                self._references[key] = found
            return found
        return parse_references(features)

    def _index(self, name: str, layout: OnlineTable) -> dict[str, int]:
        key = (name, layout.version)
        found = self._positions.get(key)
        if found is None:
            found = self._positions[key] = {f: i for i, f in enumerate(layout.features)}
        return found

    async def _layout(self, name: str, refresh: bool = False) -> OnlineTable:
        if not refresh:
            cached = self._layouts.get(name)
            if cached is not None:
                return cached
        state = await self.store.state(name)
        if state is None or state.live is None:
            self._layouts.pop(name, None)
            raise NotFound(
                f"Feature set {name!r} is not online: no such feature table, or none of its "
                f"versions is materialized yet (cairn featureset materialize {name})."
            )
        self._layouts[name] = state.live
        return state.live

    async def lookup(self, body: bytes, served: list[tuple[str, int]] | None = None) -> bytes:
        """The answer's JSON. With ``served``, also fills it with (set name, column count)
        per requested set, in answer order after the entity columns: which set each column
        came from, whether or not names are full (the skew sampler's need)."""
        # Integers past 64 bits stay exact (orjson alone would round them to floats), so a key
        # the column cannot hold is refused by name rather than looked up as another number.
        request = parse_json(body)
        if not isinstance(request, dict):
            raise body_not_shaped('a JSON object: {"features": [...], "entities": {...}}')
        if request.get("features") is None and request.get("feature_service") is not None:
            raise _field(
                "feature_service",
                "feature services are Feast registry objects Cairn does not have; list the "
                'references in features instead, e.g. ["customer_features:tenure_days"]',
            )
        wanted = self._wanted(request.get("features"))
        entities = request.get("entities")
        if not isinstance(entities, dict) or not entities:
            raise _field("entities", 'give the keys by column, e.g. {"customer_id": ["C00001"]}')
        count = -1
        for column, values in entities.items():
            if not isinstance(values, list):
                raise _field(f"entities.{column}", "give a list of key values")
            if count not in (-1, len(values)):
                raise _field("entities", "every entity column needs the same number of values")
            count = len(values)
        if count > self.max_entities:
            raise _field(
                "entities",
                f"{count} entity rows; the limit is {self.max_entities} per request "
                "(CAIRN_ONLINE_MAX_ENTITIES); split the request",
            )
        full = request.get("full_feature_names", False)
        if not isinstance(full, bool):
            raise _field("full_feature_names", "must be true or false")
        now_us = int(time.time() * 1_000_000)
        names: list[str] = []
        results: list[dict[str, Any]] = []
        origins: list[str] = []  # which reference each feature column answers
        used: set[str] = set()
        for want in wanted:
            layout, rows, keys = await self._read(want, entities, count)
            used.update(layout.entities)
            features = layout.features if want.star else want.features
            if want.star:
                features = [*want.features, *(f for f in layout.features if f not in want.features)]
            index = self._index(want.name, layout)
            for feature in features:
                if feature not in index:
                    raise _field(
                        "features",
                        f"feature {feature!r} is not a column of {want.name!r} (version "
                        f"{layout.version}); it has: {', '.join(layout.features[:50])}",
                    )
            present: list[bytes] = []  # stored rows, decoded below in one call
            slots: list[int] = []  # per entity row: its index in ``present``, or -1
            statuses: list[str] = []
            stamps: list[str] = []
            ttl_us = layout.ttl * 1_000_000 if layout.ttl else None
            texts: dict[int, str] = {}
            for key in keys:
                found = rows.rows.get(key)
                if found is None:
                    slots.append(-1)
                    statuses.append(NOT_FOUND)
                    stamps.append(EPOCH_TEXT)
                    continue
                ts, value = found
                ts = layout.micros(ts)
                text = texts.get(ts)
                if text is None:
                    text = texts[ts] = rfc3339(ts)
                stamps.append(text)
                if ttl_us is not None and now_us - ts > ttl_us:
                    slots.append(-1)
                    statuses.append(OUTSIDE_MAX_AGE)
                else:
                    slots.append(len(present))
                    present.append(value)
                    statuses.append(PRESENT)
            decoded = orjson.loads(b"[" + b",".join(present) + b"]")
            empty = [None] * len(layout.features)
            table = [decoded[slot] if slot >= 0 else empty for slot in slots]
            # Rows to columns in C; with no entity rows every column is empty.
            by_column = list(zip(*table, strict=True)) if table else [()] * len(empty)
            if served is not None:
                served.append((want.name, len(features)))
            for feature in features:
                names.append(f"{want.name}__{feature}" if full else feature)
                origins.append(f"{want.name}:{feature}")
                results.append(
                    {
                        "values": by_column[index[feature]],
                        "statuses": statuses,
                        "event_timestamps": stamps,
                    }
                )
        # As Feast's server: an entity column no requested set is keyed by (a label, request
        # data) is neither an error nor echoed; a missing key column is refused in ``_keys``.
        key_columns = [column for column in entities if column in used]
        claimed = dict.fromkeys(key_columns, "the entities")
        for column, origin in zip(names, origins, strict=True):
            _claim(claimed, column, origin)
        answer = [
            {
                "values": entities[column],
                "statuses": [PRESENT] * count,
                "event_timestamps": [EPOCH_TEXT] * count,
            }
            for column in key_columns
        ]
        return orjson.dumps(
            {"metadata": {"feature_names": key_columns + names}, "results": answer + results}
        )

    async def _read(
        self, want: Wanted, entities: dict[str, list[Any]], count: int
    ) -> tuple[OnlineTable, OnlineRows, list[bytes]]:
        refresh = False
        for _ in range(3):
            layout = await self._layout(want.name, refresh)
            if want.pinned is not None and want.pinned != layout.version:
                if not refresh:
                    refresh = True
                    continue
                if self.version_of is not None:
                    await self.version_of(want.name, want.pinned)  # 404 when there is none
                raise Conflict(
                    f"Version {want.pinned} of {want.name!r} is not the one online (version "
                    f"{layout.version} is); the online store serves the live version only."
                )
            keys = self._keys(want.name, layout, entities, count)
            rows = await self.store.read(want.name, list(dict.fromkeys(keys)))
            if rows.live == layout.version:
                return layout, rows, keys
            refresh = True  # switched since the layout was cached: read it again
        raise NotFound(f"Feature set {want.name!r} went offline during the request; retry.")

    @staticmethod
    def _keys(
        name: str, layout: OnlineTable, entities: dict[str, list[Any]], count: int
    ) -> list[bytes]:
        columns = []
        for column in layout.entities:
            values = entities.get(column)
            if values is None:
                raise _field(
                    "entities",
                    f"feature set {name!r} is keyed by {', '.join(layout.entities)}; "
                    f"give {column!r}",
                )
            dtype = layout.dtypes.get(column, "string")
            columns.append([_coerce(v, dtype, column) for v in values])
        dumps = orjson.dumps
        if len(columns) == 1:
            return [dumps([v]) for v in columns[0]]
        return [dumps(list(row)) for row in zip(*columns, strict=True)]

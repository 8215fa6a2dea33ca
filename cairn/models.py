"""The data model (DESIGN section 3), defined once and shared by every part.

``Manifest`` is what a person writes beside data. ``AssetWrite`` adds what a writer (the
crawler or an API client) knows about where the asset came from; ``Asset`` adds what only the
catalogue assigns. Mastro's hyphenated field names are accepted as aliases everywhere.
"""

from __future__ import annotations

import hashlib
import math
import re
from datetime import date, datetime
from functools import cache
from typing import Any, Literal

import orjson
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from cairn.settings import get_settings

MAX_NAME = 256
MAX_DESCRIPTION = 64 * 1024
MAX_SHORT = 1024  # tags, owners, label keys and values, column names, URLs' pieces
MAX_LIST = 1000
MAX_LOCATION = 4096

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

LabelValue = str | int | float | bool | None
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Fields Mastro's crawler writes into manifests; meaningless in a manifest, so dropped quietly.
MASTRO_CRAWLER_FIELDS = frozenset({"last-discovered-at"})
NULL_MEANS_EMPTY = (
    "description",
    "tags",
    "labels",
    "owners",
    "depends_on",
    "depends-on",
    "versions",
    "extra",
)


def _check_text(value: str, what: str, limit: int) -> str:
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters long; the limit is {limit}")
    if _CONTROL.search(value):
        raise ValueError(f"{what} must not contain control characters")
    return value


class SchemaField(BaseModel):
    """One column of a dataset's schema."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_SHORT)
    type: str = Field("unknown", max_length=MAX_SHORT)
    nullable: bool = True
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)


class Manifest(BaseModel):
    """The fields a person writes in a manifest file (DESIGN section 2)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=MAX_NAME)
    type: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=MAX_DESCRIPTION)
    tags: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=MAX_LIST)
    owners: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    location: str | None = Field(None, max_length=MAX_LOCATION)
    format: str | None = Field(None, max_length=64)
    schema_: list[SchemaField] | None = Field(
        None,
        max_length=10_000,
        validation_alias=AliasChoices("schema", "schema_"),
        serialization_alias="schema",
    )
    depends_on: list[str] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        validation_alias=AliasChoices("depends_on", "depends-on"),
    )
    versions: dict[str, str] = Field(default_factory=dict, max_length=MAX_LIST)
    published_on: datetime | None = Field(
        None, validation_alias=AliasChoices("published_on", "published-on")
    )
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_unknown(cls, data: Any) -> Any:
        """Unknown keys go to ``extra`` rather than failing, as DESIGN section 2 asks."""
        if not isinstance(data, dict):
            return data
        for first, second in _alias_pairs(cls):
            if first in data and second in data:
                raise ValueError(f"give either {first} or {second}, not both")
        known = _known_fields(cls)
        data = {k: v for k, v in data.items() if k in known or k not in MASTRO_CRAWLER_FIELDS}
        # Mastro writes empty fields as null; they mean "none", not an error.
        for name in NULL_MEANS_EMPTY:
            if name in data and data[name] is None:
                del data[name]
        unknown = {k: v for k, v in data.items() if k not in known}
        if not unknown:
            return data
        kept = {k: v for k, v in data.items() if k in known}
        extra = kept.get("extra")
        if extra is None:
            extra = {}
        if isinstance(extra, dict):
            kept["extra"] = {**extra, **unknown}
        # else: leave a non-mapping ``extra`` as it is, so validation reports it
        return kept

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_text(value, "name", MAX_NAME)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        allowed = get_settings().asset_types
        if value not in allowed:
            raise ValueError(
                f"type {value!r} is not one of: {', '.join(sorted(allowed))} "
                "(CAIRN_EXTRA_TYPES can allow more)"
            )
        return value

    @field_validator("tags", "owners", "depends_on")
    @classmethod
    def _short_list(cls, values: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        for value in values:
            if not value:
                raise ValueError("entries must not be empty")
            _check_text(value, "an entry", MAX_SHORT)
            seen.setdefault(value, None)
        return list(seen)

    @field_validator("labels")
    @classmethod
    def _labels(cls, values: dict[str, LabelValue]) -> dict[str, LabelValue]:
        for key, value in values.items():
            _check_text(key, "a label key", MAX_SHORT)
            if isinstance(value, str):
                _check_text(value, f"label {key!r}", MAX_SHORT)
            elif isinstance(value, int) and not isinstance(value, bool):
                if not INT64_MIN <= value <= INT64_MAX:
                    raise ValueError(f"label {key!r} is outside the 64-bit integer range")
            elif isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"label {key!r} must be a finite number")
        return values

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema_mapping(cls, value: Any) -> Any:
        """``schema: {col: type}`` is accepted as a shorthand for the list form."""
        if isinstance(value, dict):
            return [{"name": str(k), "type": v} for k, v in value.items()]
        return value

    @field_validator("versions", mode="before")
    @classmethod
    def _versions(cls, value: Any) -> Any:
        if isinstance(value, dict):
            # Numbers and dates read from YAML become text; anything else must fail validation.
            return {
                str(k): str(v) if isinstance(v, int | float | date) and v is not None else v
                for k, v in value.items()
            }
        return value


@cache
def _alias_pairs(cls: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """Pairs of spellings of one field (``depends_on``/``depends-on``)."""
    pairs = []
    for finfo in cls.model_fields.values():
        alias = finfo.validation_alias
        if isinstance(alias, AliasChoices):
            names = [a for a in alias.choices if isinstance(a, str)]
            pairs += [(names[0], other) for other in names[1:] if other != names[0] + "_"]
    return tuple(pairs)


@cache
def _known_fields(cls: type[BaseModel]) -> frozenset[str]:
    """Field names and aliases a model accepts (computed once per class)."""
    known: set[str] = set()
    for fname, finfo in cls.model_fields.items():
        known.add(fname)
        alias = finfo.validation_alias
        if isinstance(alias, AliasChoices):
            known.update(a for a in alias.choices if isinstance(a, str))
        elif isinstance(alias, str):
            known.add(alias)
    return frozenset(known)


class AssetWrite(Manifest):
    """What a writer sends: the manifest plus where it came from."""

    id: str | None = Field(None, min_length=1, max_length=MAX_NAME, pattern=r"^[A-Za-z0-9._:@-]+$")
    volume: str | None = Field(None, max_length=MAX_LOCATION)
    manifest_path: str | None = Field(None, max_length=MAX_LOCATION)
    size_bytes: int | None = Field(None, ge=0)
    modified_at: datetime | None = None
    crawled_at: datetime | None = Field(
        None, validation_alias=AliasChoices("crawled_at", "last-discovered-at")
    )
    deleted: bool = False

    def ensure_id(self) -> str:
        """API writers may omit the id; the name then gives a stable one."""
        if not self.id:
            self.id = name_id(self.name)
        return self.id

    def storage_doc(self) -> dict[str, Any]:
        """The JSON document as stored, without the catalogue's own fields."""
        self.ensure_id()
        return self.model_dump(mode="json", by_alias=True)

    def content_hash(self, doc: dict[str, Any] | None = None) -> str:
        """Hash of everything but ``crawled_at``: equal hashes mean nothing changed."""
        body = dict(doc if doc is not None else self.storage_doc())
        body.pop("crawled_at", None)
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class Asset(AssetWrite):
    """An asset as the catalogue stores and returns it."""

    id: str
    revision: int = 1
    updated_at: datetime | None = None


def name_id(name: str) -> str:
    return "n-" + hashlib.sha256(name.encode()).hexdigest()[:24]


def crawled_id(volume: str, manifest_path: str, index: int) -> str:
    """Stable id of the ``index``-th document of a manifest on a volume."""
    key = f"{volume}\n{manifest_path}\n{index}".encode()
    return "a-" + hashlib.sha256(key).hexdigest()[:24]


# --- API shapes -------------------------------------------------------------------------------

BulkStatus = Literal["created", "updated", "unchanged", "deleted", "error"]


class BulkItemResult(BaseModel):
    index: int
    id: str | None = None
    name: str | None = None
    status: BulkStatus
    revision: int | None = None
    error: str | None = None


class BulkResponse(BaseModel):
    results: list[BulkItemResult]
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0


class Facets(BaseModel):
    tags: dict[str, int] = Field(default_factory=dict)
    types: dict[str, int] = Field(default_factory=dict)


class SearchPage(BaseModel):
    items: list[Asset]
    total: int
    facets: Facets
    next_cursor: str | None = None


class LineageNode(BaseModel):
    id: str
    name: str
    type: str | None = None
    deleted: bool = False
    missing: bool = False  # a depends_on entry that names no asset in the catalogue
    depth: int = 0


class LineageEdge(BaseModel):
    source: str  # upstream node id
    target: str  # downstream node id


class Lineage(BaseModel):
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]


class TagCount(BaseModel):
    tag: str
    count: int

"""The data model (DESIGN section 3), defined once and shared by every part.

``Manifest`` is what a person writes beside data. ``AssetWrite`` adds what a writer (the
crawler or an API client) knows about where the asset came from; ``Asset`` adds what only the
catalogue assigns. Mastro's hyphenated field names are accepted as aliases everywhere.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, date, datetime
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import to_jsonable_python

from cairn.numbers import INT64_MAX, INT64_MIN
from cairn.paging import MAX_PAGE
from cairn.settings import get_settings

T = TypeVar("T")

MAX_NAME = 256
MAX_DESCRIPTION = 64 * 1024
MAX_COLUMNS = 10_000  # columns in one asset's schema
MAX_SHORT = 1024  # tags, owners, label keys and values, column names, URLs' pieces
MAX_LIST = 1000
MAX_LOCATION = 4096
# Nesting of ``extra`` values, asset label values and versions (maps and lists inside maps and
# lists; Mastro's Hive crawler writes a table's schema as a label map).
# Deeper values cannot be stored (orjson stops at 255 levels) and no reader needs them.
MAX_EXTRA_DEPTH = 32

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

LabelValue = str | int | float | bool | None

# Fields Mastro's crawler writes into manifests; dropped quietly (accepted, as DESIGN 2 asks):
# a crawl stamps its own crawled_at, and the API takes last-discovered-at as that field.
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
NULL_FIELDS = frozenset(NULL_MEANS_EMPTY)


def _check_text(value: str, what: str, limit: int) -> str:
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters long; the limit is {limit}")
    # isprintable first: one pass in C that settles most texts without the regular expression.
    if not value.isprintable() and _CONTROL.search(value):
        raise ValueError(f"{what} must not contain control characters")
    return value


# Where a URL's authority ends: its path, query or fragment (an '@' there is no user info).
_AUTHORITY_END = re.compile(r"[/?#]")


# Query parameters that carry a secret: signed URLs (S3, GCS, Azure SAS), tokens, passwords
# (a JDBC URL's). Also found escaped ("%3F"): a crawler makes a path of a URL it cannot open.
_SECRET_PARAMETER = re.compile(
    r"(?:[?&;]|%3F|%26)(password|passwd|pwd|secret|token|access_token|api_?key|sig|signature"
    r"|x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature"
    r"|x-goog-credential)=",
    re.IGNORECASE,
)


def credential_in(url: str) -> str | None:
    """What in ``url`` is a credential, or None: a password in its authority
    (``user:secret@host``) or a secret query parameter (``?sig=``). A user name alone
    (``hdfs://etl@nn``) and ADLS's ``filesystem@account`` are not secrets."""
    _, sep, rest = url.partition("://")
    if sep and "@" in rest:
        authority = _AUTHORITY_END.split(rest, 1)[0]
        if ":" in authority.rpartition("@")[0]:
            return "a password (user:password@ in the URL)"
    # Every written asset's location comes here: most have no parameter at all.
    found = _SECRET_PARAMETER.search(url) if "=" in url else None
    if found is not None:
        return f"a credential (its {found.group(1)}= parameter)"
    return None


def _no_credentials(url: str, what: str) -> str:
    """``url``, unless it holds a credential: credentials never go into the catalogue
    (DESIGN section 8)."""
    found = credential_in(url)
    if found is not None:
        raise ValueError(
            f"{what} holds {found}; credentials are never stored in the catalogue: remove "
            "them from the URL"
        )
    return url


def searchable_labels(labels: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The (key, text) pairs a label filter can match: scalar values only (a nested map or
    list is kept and shown, not searched)."""
    pairs = []
    # Every write runs this over every label: exact type tests settle the usual values
    # (text, flags) without the isinstance checks ``label_text`` makes.
    for key, value in (labels or {}).items():
        kind = type(value)
        if kind is str:
            pairs.append((key, value))
        elif kind is bool:
            pairs.append((key, "true" if value else "false"))
        elif not isinstance(value, dict | list):
            pairs.append((key, label_text(value)))
    return pairs


def label_text(value: Any) -> str:
    """A label value as text, as label filters compare it (``label=pii:false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _plain_texts(joined: str, limit: int) -> bool:
    """Whether every piece of ``joined`` surely passes ``_check_text``: no piece is longer
    than their concatenation, and ``str.isprintable`` (one pass in C, cheaper than the regular
    expression) is false for every control character. It is false for some other characters
    too (non-ASCII spaces, say): those texts take the exact check."""
    return len(joined) <= limit and joined.isprintable()


def _check_texts(values: list[str], what: str, limit: int) -> str:
    """``_check_text`` over many values, settled on their concatenation (no control
    character can arise from joining); the item-by-item check only runs to name the first
    failure. Answers the concatenation."""
    joined = "".join(values)
    if _plain_texts(joined, limit):
        return joined
    if values and (max(map(len, values)) > limit or _CONTROL.search(joined)):
        for value in values:
            _check_text(value, what, limit)
    return joined


def composed(text: str) -> str:
    """``text`` with its accents composed (NFC): "è" typed as e + U+0300 (some keyboards,
    pastes, macOS file names) is the same name or tag as the precomposed "è" to whoever
    reads it, so it is stored and looked up as one text."""
    if text.isascii() or unicodedata.is_normalized("NFC", text):
        return text
    return unicodedata.normalize("NFC", text)


# The asset types a write may have, as the Settings of the app serving the request say: the
# catalogue binds them for each request (``write_types``), so an app built with its own Settings
# checks against those. Unbound (the crawler, the CLI, a client), this process's settings.
_WRITE_TYPES: ContextVar[frozenset[str] | None] = ContextVar("cairn_write_types", default=None)


@contextmanager
def write_types(types: frozenset[str]) -> Iterator[None]:
    """Within: the asset types ``unknown_type`` (and so a write model) allows are ``types``."""
    token = _WRITE_TYPES.set(types)
    try:
        yield
    finally:
        _WRITE_TYPES.reset(token)


def unknown_type(value: str, allowed: frozenset[str] | None = None) -> str | None:
    """Why ``value`` is not an asset type a write may have (Mastro's and CAIRN_EXTRA_TYPES'),
    or None when it is one. ``allowed``: those types, else the ones bound by ``write_types``,
    else this process's settings'."""
    if allowed is None:
        allowed = _WRITE_TYPES.get() or get_settings().asset_types
    if value in allowed:
        return None
    return (
        f"type {value!r} is not one of: {', '.join(sorted(allowed))} "
        "(CAIRN_EXTRA_TYPES can allow more)"
    )


def check_entries(values: list[str]) -> list[str]:
    """A list of short strings (tags, owners, depends_on): none empty, accents composed,
    duplicates dropped."""
    if not all(values):
        raise ValueError("entries must not be empty")
    if not _check_texts(values, "an entry", MAX_SHORT).isascii():
        values = [composed(v) for v in values]
    return list(dict.fromkeys(values))


def check_extra(values: T, what: str = "extra") -> T:
    """``extra`` (or another nested value) as stores can keep it: nested at most
    ``MAX_EXTRA_DEPTH`` levels, integers in 64 bits, finite numbers. Walked without recursion,
    so no input can exhaust the stack."""
    stack: list[tuple[Any, int, str]] = [(values, 1, what)]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_EXTRA_DEPTH:
                raise ValueError(
                    f"{where} is nested more than {MAX_EXTRA_DEPTH} levels deep; flatten the value"
                )
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack += [(v, depth + 1, f"{where}.{k}") for k, v in items]
        elif isinstance(value, int) and not isinstance(value, bool):
            if not INT64_MIN <= value <= INT64_MAX:
                raise ValueError(f"{where} is outside the 64-bit integer range")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number")
    return values


# A tuple, not ``dict | list``: that union would be built again on every call, and this check
# runs once per label value of every asset written.
_CONTAINERS = (dict, list)


def _nested_label(value: Any) -> Any:
    return check_extra(value, "the label value") if isinstance(value, _CONTAINERS) else value


# An asset's label value: a scalar (searchable), or a map or list kept and shown as written.
AssetLabelValue = Annotated[LabelValue | dict[str, Any] | list[Any], AfterValidator(_nested_label)]


def _plain_labels(values: dict[str, Any]) -> bool:
    """Whether every label value surely passes ``check_labels``: text checked as one string,
    numbers by exact type. Anything else (or a failure) leaves it to the item-by-item check,
    which names the first bad label."""
    texts = []
    for value in values.values():
        kind = type(value)
        if kind is str:
            texts.append(value)
        elif kind is int:
            if not INT64_MIN <= value <= INT64_MAX:
                return False
        elif kind is float:
            if not math.isfinite(value):
                return False
        elif not (kind is bool or value is None or kind is dict or kind is list):
            return False
    if not texts:
        return True
    joined = "".join(texts)
    return _plain_texts(joined, MAX_SHORT) or (
        max(map(len, texts)) <= MAX_SHORT and not _CONTROL.search(joined)
    )


def check_labels(values: dict[str, Any]) -> dict[str, Any]:
    _check_texts(list(values), "a label key", MAX_SHORT)
    if _plain_labels(values):
        return values
    for key, value in values.items():
        if isinstance(value, str):
            _check_text(value, f"label {key!r}", MAX_SHORT)
        elif isinstance(value, int) and not isinstance(value, bool):
            if not INT64_MIN <= value <= INT64_MAX:
                raise ValueError(f"label {key!r} is outside the 64-bit integer range")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"label {key!r} must be a finite number")
    return values


class SchemaField(BaseModel):
    """One column of a dataset's schema."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_SHORT)
    type: str = Field("unknown", max_length=MAX_SHORT)
    nullable: bool = True
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)


class DuplicateColumn(ValueError):
    """A schema names a column twice; ``index`` is the second column's place in the list, so a
    manifest's problem can point at that column's line (crawler/manifest.py)."""

    def __init__(self, name: str, first: int, index: int):
        super().__init__(
            f"schema names column {name!r} twice (columns {first + 1} and {index + 1}); "
            "give each column once"
        )
        self.index = index


def check_unique_columns(columns: list[SchemaField]) -> list[SchemaField]:
    seen: dict[str, int] = {}
    for index, column in enumerate(columns):
        first = seen.setdefault(column.name, index)
        if first != index:
            raise DuplicateColumn(column.name, first, index)
    return columns


class Manifest(BaseModel):
    """The fields a person writes in a manifest file (DESIGN section 2)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=MAX_NAME)
    type: str = Field(min_length=1, max_length=64)
    description: str = Field("", max_length=MAX_DESCRIPTION)
    tags: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    labels: dict[str, AssetLabelValue] = Field(default_factory=dict, max_length=MAX_LIST)
    owners: list[str] = Field(default_factory=list, max_length=MAX_LIST)
    location: str | None = Field(None, max_length=MAX_LOCATION)
    format: str | None = Field(None, max_length=64)
    schema_: list[SchemaField] | None = Field(
        None,
        max_length=MAX_COLUMNS,
        validation_alias=AliasChoices("schema", "schema_"),
        serialization_alias="schema",
    )
    depends_on: list[str] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        validation_alias=AliasChoices("depends_on", "depends-on"),
    )
    # A location per version, or a map (mvc writes {timestamp: {file: sha256}}).
    versions: dict[str, str | dict[str, Any]] = Field(default_factory=dict, max_length=MAX_LIST)
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
        if known.issuperset(data):
            # The common case: every key is a field. Only Mastro's nulls need dropping.
            if None in data.values() and any(data.get(n, "") is None for n in NULL_MEANS_EMPTY):
                data = {k: v for k, v in data.items() if v is not None or k not in NULL_FIELDS}
            return data
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
        return composed(_check_text(value, "name", MAX_NAME))

    @field_validator("location")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        return value if value is None else _no_credentials(value, "location")

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        problem = unknown_type(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("tags", "owners", "depends_on")
    @classmethod
    def _short_list(cls, values: list[str]) -> list[str]:
        return check_entries(values)

    @field_validator("labels")
    @classmethod
    def _labels(cls, values: dict[str, AssetLabelValue]) -> dict[str, AssetLabelValue]:
        return check_labels(values)

    @field_validator("extra")
    @classmethod
    def _extra(cls, values: dict[str, Any]) -> dict[str, Any]:
        # Most manifests have none; the walk's setup would cost more than the check.
        return check_extra(values) if values else values

    @field_validator("schema_", mode="before")
    @classmethod
    def _schema_mapping(cls, value: Any) -> Any:
        """``schema: {col: type}`` is accepted as a shorthand for the list form."""
        if isinstance(value, dict):
            return [{"name": str(k), "type": v} for k, v in value.items()]
        return value

    @field_validator("schema_")
    @classmethod
    def _unique_columns(cls, value: list[SchemaField] | None) -> list[SchemaField] | None:
        # Readers key columns by name (profiles, drift, the UI): a second 'id' is ambiguous.
        return value if value is None else check_unique_columns(value)

    @field_validator("versions", mode="before")
    @classmethod
    def _versions(cls, value: Any) -> Any:
        if isinstance(value, dict):
            # Numbers and dates read from YAML become text; anything else must fail validation.
            value = {
                str(k): str(v) if isinstance(v, int | float | date) and v is not None else v
                for k, v in value.items()
            }
            check_extra(value, "versions")
        return value

    @field_validator("versions")
    @classmethod
    def _versions_hold_no_credentials(
        cls, value: dict[str, str | dict[str, Any]]
    ) -> dict[str, str | dict[str, Any]]:
        for key, version in value.items():
            if isinstance(version, str):  # a variant's location, checked as a location is
                _no_credentials(version, f"versions.{key}")
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


# What an asset id may hold, however it is written (a bulk item's id, PUT /assets/{id}).
ASSET_ID_PATTERN = r"^[A-Za-z0-9._:@-]+$"
# Ids a URL path cannot carry: browsers and HTTP clients resolve "." and ".." (and %2E%2E)
# to the folder itself and its parent, so the asset's page and API address are unreachable.
DOT_SEGMENTS = frozenset({".", ".."})
DOT_ID_MESSAGE = (
    "'.' and '..' cannot be asset ids: in a URL they mean the folder itself and its parent, "
    "so the asset could never be read; add a letter or a digit"
)


class AssetWrite(Manifest):
    """What a writer sends: the manifest plus where it came from."""

    id: str | None = Field(None, min_length=1, max_length=MAX_NAME, pattern=ASSET_ID_PATTERN)
    volume: str | None = Field(None, max_length=MAX_LOCATION)
    manifest_path: str | None = Field(None, max_length=MAX_LOCATION)
    size_bytes: int | None = Field(None, ge=0)
    modified_at: datetime | None = None
    crawled_at: datetime | None = Field(
        None, validation_alias=AliasChoices("crawled_at", "last-discovered-at")
    )
    deleted: bool = False

    @field_validator("id")
    @classmethod
    def _addressable_id(cls, value: str | None) -> str | None:
        if value in DOT_SEGMENTS:
            raise ValueError(DOT_ID_MESSAGE)
        return value

    def ensure_id(self) -> str:
        """API writers may omit the id; the name then gives a stable one."""
        if not self.id:
            self.id = name_id(self.name)
        return self.id

    def storage_doc(self) -> dict[str, Any]:
        """The JSON document as stored, without the catalogue's own fields:
        ``model_dump(mode="json", by_alias=True)``, built by hand for the usual asset."""
        self.ensure_id()
        doc = _plain_doc(self)
        if doc is None:
            doc = self.model_dump(mode="json", by_alias=True)
        return doc

    def content_hash(self, doc: dict[str, Any] | None = None) -> str:
        """Hash of everything but ``crawled_at``: equal hashes mean nothing changed."""
        body = dict(doc if doc is not None else self.storage_doc())
        body.pop("crawled_at", None)
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


# AssetWrite's fields in order, each with its name in the stored document.
_DOC_FIELDS = tuple(AssetWrite.model_fields)
_DOC_KEYS = tuple(f.serialization_alias or n for n, f in AssetWrite.model_fields.items())
_SCALARS = frozenset({str, int, float, bool, type(None)})
_TIME_KEYS = tuple(
    key
    for key, finfo in zip(_DOC_KEYS, AssetWrite.model_fields.values(), strict=True)
    if finfo.annotation == datetime | None
)


def _plain_doc(asset: AssetWrite) -> dict[str, Any] | None:
    """``asset.model_dump(mode="json", by_alias=True)`` for an asset whose values are all
    JSON already but its times (no nested label values, no ``extra``; what a bulk write of
    API assets or a crawl's mostly holds), else None. pydantic's serializer walks every field
    and each column's model, and cost more than half as much as validating the asset did;
    this copies them in a few C calls (``test_catalogue_bulk_prepare`` compares the two on
    many assets)."""
    values = asset.__dict__
    schema = values["schema_"]
    if (
        type(asset) is not AssetWrite
        or tuple(values) != _DOC_FIELDS
        or values["extra"]
        or not _SCALARS.issuperset(map(type, values["labels"].values()))
        or not {str}.issuperset(map(type, values["versions"].values()))
        or (schema is not None and not {SchemaField}.issuperset(map(type, schema)))
    ):
        return None
    doc = dict(zip(_DOC_KEYS, values.values(), strict=True))
    # Containers are copied, as model_dump copies them: the document never shares a list
    # with the model.
    for key in ("tags", "owners", "depends_on"):
        doc[key] = list(doc[key])
    doc["labels"] = dict(doc["labels"])
    doc["versions"] = dict(doc["versions"])
    doc["extra"] = {}
    if schema is not None:
        doc["schema"] = [dict(column.__dict__) for column in schema]
    # Every crawled asset has two (modified_at, crawled_at): each is written by pydantic's own
    # serializer for a time, so the text is the one model_dump gives, at a tenth of its cost.
    for key in _TIME_KEYS:
        if doc[key] is not None:
            doc[key] = to_jsonable_python(doc[key])
    return doc


class DriftFlag(BaseModel):
    """A crawled dataset's drift verdict: its newest profile against the one before (DESIGN 10).

    Sent by the crawl's profile step (``PUT /api/v1/assets/{id}/drift``), kept by the catalogue
    beside the asset: it is not part of the asset's content (its hash, its revision), and a
    later write of the manifest keeps it, so it stays until the next profile says otherwise.
    """

    model_config = ConfigDict(extra="forbid")

    drifted: bool
    columns: list[Annotated[str, Field(max_length=MAX_SHORT)]] = Field(
        default_factory=list, max_length=MAX_COLUMNS, description="The columns that drifted"
    )
    profile_version: int = Field(
        ge=1, le=2**63 - 1, description="The profile's version in the metric store"
    )
    against: int | None = Field(
        None, ge=1, le=2**63 - 1, description="The profile version it was compared with"
    )


class Asset(AssetWrite):
    """An asset as the catalogue stores and returns it."""

    id: str
    revision: int = 1
    updated_at: datetime | None = None
    drift: DriftFlag | None = Field(
        None, description="Crawled datasets: the drift verdict of the newest profile"
    )

    @field_validator("location")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        # Same name: replaces the write check. An asset stored before that check is read back
        # as it was stored, not refused.
        return value

    @field_validator("versions")
    @classmethod
    def _versions_hold_no_credentials(
        cls, value: dict[str, str | dict[str, Any]]
    ) -> dict[str, str | dict[str, Any]]:
        return value  # as _location: versions stored before the write check are read back

    @field_validator("id")
    @classmethod
    def _addressable_id(cls, value: str | None) -> str | None:
        return value  # as _location: an id stored before the write check is read back

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        # As _location: a type CAIRN_EXTRA_TYPES allowed when the asset was written stays
        # readable once the setting no longer lists it.
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return value  # as _location: read back as stored (checked, and composed, when written)

    @field_validator("tags", "owners", "depends_on")
    @classmethod
    def _short_list(cls, values: list[str]) -> list[str]:
        return values  # as _name

    @field_validator("schema_")
    @classmethod
    def _unique_columns(cls, value: list[SchemaField] | None) -> list[SchemaField] | None:
        return value  # as _name: a schema stored before the check is read back as it was


def name_id(name: str) -> str:
    return "n-" + hashlib.sha256(name.encode()).hexdigest()[:24]


def crawled_id(volume: str, manifest_path: str, index: int) -> str:
    """Stable id of the ``index``-th document of a manifest on a volume."""
    key = f"{volume}\n{manifest_path}\n{index}".encode()
    return "a-" + hashlib.sha256(key).hexdigest()[:24]


# --- API shapes -------------------------------------------------------------------------------

BulkStatus = Literal["created", "updated", "unchanged", "deleted", "error"]
# Why a store refused an item: its name is live elsewhere; its id belongs to another manifest
# or to an API writer; or the asset changed since the revision the write was based on.
ConflictKind = Literal["name", "owner", "revision"]


class BulkItemResult(BaseModel):
    index: int
    id: str | None = None
    name: str | None = None
    status: BulkStatus
    revision: int | None = None
    error: str | None = None
    conflict: ConflictKind | None = Field(
        None, description="Set when the item conflicts with the catalogue's current state"
    )


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
    drift: dict[str, int] = Field(
        default_factory=dict,
        description='Profiled crawled datasets: "drifted" and "stable" counts',
    )


class SearchPage(BaseModel):
    items: list[Asset]
    total: int
    facets: Facets
    next_cursor: str | None = None
    did_you_mean: str | None = Field(
        None,
        description="The query with its misspelt words corrected, when `q` found fewer assets "
        "than CAIRN_SEARCH_TYPO_BELOW and the corrected query finds more.",
    )
    fuzzy: bool = Field(
        False,
        description="True when `q` found nothing and these results are `did_you_mean`'s.",
    )


class LineageNode(BaseModel):
    id: str
    name: str
    type: str | None = None
    deleted: bool = False
    missing: bool = False  # a depends_on entry that names no asset in the catalogue
    depth: int = 0


# Where a lineage edge was learnt: a manifest's ``depends_on``, an OpenLineage run event, or a
# Hive Metastore (database -> table). Edges of every origin but "manifest" are kept apart from
# the assets (``ReportedEdge``), so a crawl, which rewrites assets, never erases them.
EdgeOrigin = Literal["manifest", "openlineage", "metastore"]


class LineageEdge(BaseModel):
    source: str  # upstream node id
    target: str  # downstream node id
    origin: EdgeOrigin = "manifest"
    run_id: str | None = Field(None, description="The last run that reported the edge")
    reported_at: datetime | None = None


class ReportedEdge(BaseModel):
    """An edge between two assets learnt from outside the manifests, as stored; the last
    report wins (a later event time replaces the run that reported it)."""

    upstream: str  # asset id, or a name from an edge report
    downstream: str  # as upstream
    origin: EdgeOrigin
    run_id: str | None = None
    reported_at: datetime


# Origins a crawler may report over ``POST /api/v1/lineage/edges``: "manifest" edges are an
# asset's ``depends_on``, and "openlineage" ones come from run events only.
CrawlerEdgeOrigin = Literal["metastore"]
MAX_EDGE_TARGETS = 10_000  # downstream assets in one edge report
EdgeEnd = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SHORT)]


class EdgeReport(BaseModel):
    """``POST /api/v1/lineage/edges``: a crawler's edges of one origin, as the complete list
    of upstream assets of each downstream asset it names. Edges of that origin into a named
    asset that the list leaves out are removed; an empty list removes them all. Either end is
    an asset id or a name, resolved when lineage is read, as ``depends_on`` is."""

    model_config = ConfigDict(extra="forbid")

    origin: CrawlerEdgeOrigin
    upstreams: dict[EdgeEnd, list[EdgeEnd]] = Field(
        max_length=MAX_EDGE_TARGETS,
        description="Downstream asset (id or name) -> all its upstreams of this origin (ids "
        "or names, as in depends_on)",
    )

    @field_validator("upstreams")
    @classmethod
    def _bounded(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for downstream, ups in value.items():
            if len(ups) > MAX_LIST:
                raise ValueError(
                    f"{downstream!r} lists {len(ups)} upstreams; at most {MAX_LIST} in one report"
                )
        return value


class EdgeReceipt(BaseModel):
    """What ``POST /api/v1/lineage/edges`` recorded."""

    origin: CrawlerEdgeOrigin
    downstream: int = Field(description="Downstream assets whose edges were replaced")
    edges: int = Field(description="Edges recorded")


class AssetsByLocation(BaseModel):
    """``GET /api/v1/assets/by-location``: the live assets at each URL asked (crawled assets
    first, then by id; a file's asset and a table over it are both there); URLs no live asset
    is at are left out."""

    assets: dict[str, list[Asset]]


class Lineage(BaseModel):
    root: str
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    truncated: bool = Field(
        False,
        description="The walk stopped at the node limit (2,000): there is more lineage than "
        "the answer holds; ask a smaller depth or walk on from a node",
    )


class TagCount(BaseModel):
    tag: str
    count: int


class CatalogueInstance(BaseModel):
    """Which catalogue answers: its store's identity, created with the store."""

    instance_id: str
    backend: str


# --- feature sets (DESIGN section 3) ---------------------------------------------------------

FEATURESET_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
MAX_FEATURESET_NAME = 200  # the catalogue asset is named "featureset:<name>" (256 at most)
MAX_FEATURES = 10_000
MAX_VALUE_ITEMS = 100_000  # entries of one list or map value
MAX_VERSION = INT64_MAX  # a version number is a 64-bit integer in both stores
MAX_STRING_VALUE = MAX_DESCRIPTION

SCALAR_DTYPES = ("int", "float", "bool", "string", "timestamp")
# Spellings other tools use, accepted on the way in and stored under Cairn's name.
DTYPE_ALIASES = {
    **{name: name for name in SCALAR_DTYPES},
    **dict.fromkeys(
        ("integer", "long", "bigint", "int8", "int16", "int32", "int64", "uint8", "uint16"),
        "int",
    ),
    **dict.fromkeys(("uint32", "short", "smallint", "tinyint"), "int"),
    **dict.fromkeys(("double", "float32", "float64", "real", "number"), "float"),
    "boolean": "bool",
    **dict.fromkeys(("str", "text", "utf8", "varchar"), "string"),
    "datetime": "timestamp",
}
_DTYPE = re.compile(r"^(?:(list|map)\s*<\s*(?:string\s*,\s*)?([a-z0-9]+)\s*>|([a-z0-9]+))$")
DTYPE_HELP = (
    "use one of int, float, bool, string, timestamp, list<T> or map<T> "
    "(T one of those five; map keys are strings), or json (any JSON value)"
)


def normalize_dtype(text: str) -> str:
    """``int64`` -> ``int``, ``map<string, double>`` -> ``map<float>``; unknown -> ValueError."""
    if text.strip().lower() == "json":
        return "json"
    found = _DTYPE.match(text.strip().lower())
    if found:
        container, inner, scalar = found.groups()
        base = DTYPE_ALIASES.get(inner or scalar)
        if base is not None:
            return f"{container}<{base}>" if container else base
    raise ValueError(f"dtype {text!r} is not known; {DTYPE_HELP}")


def _scalar(dtype: str, value: Any) -> Any:
    if value is None:
        return None
    if dtype == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            if INT64_MIN <= value <= INT64_MAX:
                return value
            raise ValueError(f"{value} is outside the 64-bit integer range")
    elif dtype == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isfinite(number):
                return number
            raise ValueError(f"{value} is not a finite number")
    elif dtype == "bool":
        if isinstance(value, bool):
            return value
    elif dtype == "string":
        if isinstance(value, str):
            if len(value) > MAX_STRING_VALUE:
                raise ValueError(f"a string value is longer than {MAX_STRING_VALUE} characters")
            return value
    elif dtype == "timestamp":
        return _timestamp(value)
    raise ValueError(f"{_show(value)} is not {'an' if dtype == 'int' else 'a'} {dtype}")


def _timestamp(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"{_show(value)} is not an RFC 3339 timestamp such as 2025-06-16T05:45:00Z"
            ) from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, datetime):
        raise ValueError(f"{_show(value)} is not a timestamp")
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value.isoformat()} has no time zone; add one, e.g. Z for UTC")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _show(value: Any) -> str:
    try:
        text = orjson.dumps(value, default=str).decode()
    except TypeError:  # nested past orjson's depth limit
        text = f"a {type(value).__name__} nested too deeply to show"
    return text if len(text) <= 60 else text[:57] + "..."


def coerce_value(dtype: str, value: Any) -> Any:
    """``value`` checked against a normalized ``dtype`` (null is allowed for any dtype)."""
    if value is None:
        return None
    if dtype == "json":
        check_extra({"value": value}, "feature")
        return value
    if dtype.startswith("list<"):
        inner = dtype[5:-1]
        if not isinstance(value, list):
            raise ValueError(f"{_show(value)} is not a list")
        if len(value) > MAX_VALUE_ITEMS:
            raise ValueError(f"a list value holds more than {MAX_VALUE_ITEMS} items")
        return [_scalar(inner, item) for item in value]
    if dtype.startswith("map<"):
        inner = dtype[4:-1]
        if not isinstance(value, dict):
            raise ValueError(f"{_show(value)} is not a map of string keys to {inner}")
        if len(value) > MAX_VALUE_ITEMS:
            raise ValueError(f"a map value holds more than {MAX_VALUE_ITEMS} entries")
        return {
            _check_text(str(k), "a map key", MAX_SHORT): _scalar(inner, v) for k, v in value.items()
        }
    return _scalar(dtype, value)


class Feature(BaseModel):
    """One named value of a feature set. Mastro's ``data_type`` is accepted for ``dtype``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=MAX_SHORT)
    dtype: str = Field(
        max_length=64,
        validation_alias=AliasChoices("dtype", "data_type", "data-type"),
        description="int, float, bool, string, timestamp, list<T>, map<T> or json",
    )
    value: Any = None
    mastro_type: str | None = Field(
        None,
        max_length=64,
        exclude_if=lambda v: v is None,
        description="Mastro's data_type as written (e.g. array, dataframe), shown back on "
        "Mastro's routes; set by them",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_text(value, "a feature name", MAX_SHORT)

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, value: str) -> str:
        return normalize_dtype(value)

    @model_validator(mode="after")
    def _value(self) -> Feature:
        try:
            self.value = coerce_value(self.dtype, self.value)
        except ValueError as exc:
            raise ValueError(f"feature {self.name!r} ({self.dtype}): {exc}") from None
        return self


class Check(BaseModel):
    """A data check (DESIGN 10), evaluated on each new version or crawled file."""

    # Strict: "5" or true for a bound is a mistake to report, not a number to guess.
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["row_count", "not_null", "unique", "range", "allowed_values", "freshness"]
    column: str | None = Field(None, max_length=1024)
    name: str | None = Field(
        None, max_length=200, description="Shown in results; a default is made"
    )
    on_fail: Literal["warn", "reject"] = "warn"
    min: float | None = None
    max: float | None = None
    values: list[str | int | float | bool] | None = Field(None, max_length=10_000)
    max_age: float | None = Field(None, gt=0, description="Seconds (freshness)")

    def label(self) -> str:
        if self.name:
            return self.name
        return f"{self.type}({self.column})" if self.column else self.type

    @model_validator(mode="after")
    def _can_pass(self) -> Check:
        # A check no table can pass is a typo, refused where it is declared, not a failure
        # found at every later evaluation.
        problem = self.never_passes()
        if problem:
            raise ValueError(f"check {self.label()!r} can never pass: {problem}")
        return self

    def never_passes(self) -> str | None:
        """What makes this check fail on every table, as the fix to make; None if it can pass."""
        if self.type != "row_count" and self.column is None:
            return f"a {self.type} check needs a column; give column: <name>"
        if self.type == "allowed_values" and self.values is None:
            return "an allowed_values check needs values; give values: [...]"
        if self.type == "freshness" and self.max_age is None:
            return "a freshness check needs max_age (seconds); give max_age: <seconds>"
        bounds = [b for b in (self.min, self.max) if b is not None]
        if any(b != b for b in bounds):
            return "min and max must be numbers, not NaN"
        if self.type == "row_count" and any(b < 0 for b in bounds):
            return "a row count is never negative; give min and max of 0 or more"
        if self.min is not None and self.max is not None and self.min > self.max:
            return f"min {self.min:g} is greater than max {self.max:g}; swap them"
        return None


class StoredCheck(Check):
    """A check as the metric store kept it: read back as it was stored, even one declared
    before the checks above refused it (its evaluation fails and says why)."""

    @model_validator(mode="after")
    def _can_pass(self) -> StoredCheck:
        # Same name: replaces the declaration check.
        return self


class CheckList(BaseModel):
    checks: list[Check] = Field(default_factory=list, max_length=200)


class FeatureSetMeta(BaseModel):
    """What describes a new version, whatever its payload (JSON values or a Parquet upload)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=MAX_FEATURESET_NAME, pattern=FEATURESET_NAME)
    version: int | None = Field(
        None,
        ge=1,
        le=MAX_VERSION,
        description="Optional: the version this write expects to create; 409 when it exists.",
    )
    version_label: str | None = Field(None, max_length=MAX_SHORT)
    description: str = Field("", max_length=MAX_DESCRIPTION)
    labels: dict[str, LabelValue] = Field(default_factory=dict, max_length=MAX_LIST)
    depends_on: list[str] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        validation_alias=AliasChoices("depends_on", "depends-on"),
        description="Catalogue asset ids or names this set is computed from.",
    )
    created_by: str | None = Field(None, max_length=MAX_SHORT)
    checks: list[Check] | None = Field(
        None,
        max_length=200,
        description="Checks every version of the set is held to from this one on (replacing "
        "those declared before, as PUT /featuresets/{name}/checks does); this version is held "
        "to them first: one with on_fail: reject that fails refuses it (422). Left out, the "
        "declared checks stay.",
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, values: dict[str, LabelValue]) -> dict[str, LabelValue]:
        return check_labels(values)

    @field_validator("depends_on")
    @classmethod
    def _depends_on(cls, values: list[str]) -> list[str]:
        return check_entries(values)

    @field_validator("version_label", "created_by")
    @classmethod
    def _line(cls, value: str | None) -> str | None:
        return None if value is None else _check_text(value, "this field", MAX_SHORT)


class FeatureSetWrite(FeatureSetMeta):
    """``POST /api/v1/featuresets``: a set of named values; creates the next version."""

    features: list[Feature] = Field(min_length=1, max_length=MAX_FEATURES)

    @field_validator("features")
    @classmethod
    def _unique(cls, features: list[Feature]) -> list[Feature]:
        seen: set[str] = set()
        for feature in features:
            if feature.name in seen:
                raise ValueError(f"feature {feature.name!r} appears twice; names must be unique")
            seen.add(feature.name)
        return features


class MastroFeatureSetWrite(BaseModel):
    """Mastro's ``PUT /featureset/`` body: its string ``version`` becomes ``version_label``."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str
    version: str | None = None
    description: str = ""
    labels: dict[str, LabelValue] = Field(default_factory=dict)
    features: list[dict[str, Any]] = Field(default_factory=list)
    depends_on: list[str] = Field(
        default_factory=list, validation_alias=AliasChoices("depends_on", "depends-on")
    )

    def write_data(self) -> dict[str, Any]:
        """The body as ``FeatureSetWrite`` input (validated by the caller)."""
        return {
            "name": from_mastro_name(self.name),
            "version_label": self.version,
            "description": self.description,
            "labels": self.labels,
            "features": [_from_mastro_feature(f) for f in self.features],
            "depends_on": self.depends_on,
        }


def _from_mastro_feature(feature: dict[str, Any]) -> dict[str, Any]:
    """A Mastro feature as Cairn's: a ``data_type`` Cairn knows is used when the value fits
    it; any other (``array``, ``dataframe``, ...) stores the value as ``json``. The spelling
    is kept in ``mastro_type`` whenever Cairn's name for it differs."""
    out = {k: v for k, v in feature.items() if k not in ("data_type", "data-type", "dtype")}
    spelling = feature.get("data_type", feature.get("data-type", feature.get("dtype")))
    if not isinstance(spelling, str):
        return {**out, "dtype": spelling}  # validation names the field
    try:
        dtype = normalize_dtype(spelling)
        coerce_value(dtype, feature.get("value"))
    except ValueError:
        dtype = "json"
    out["dtype"] = dtype
    if spelling != dtype:
        out["mastro_type"] = spelling
    return out


# Mastro allows any feature-set name; Cairn's are FEATURESET_NAME. A name Cairn does not allow
# (or one that starts with the prefix) is stored as the prefix and the name with every byte
# other than a letter, digit or '.' written as _hh_ (its UTF-8 hex): "fraud:v1" is stored as
# "x--fraud_3a_v1", still found by its words in a text search.
MASTRO_NAME_PREFIX = "x--"
_MASTRO_KEPT = re.compile(rb"[A-Za-z0-9.]")
_MASTRO_ESCAPE = re.compile(r"_([0-9a-f]{2})_")


def from_mastro_name(name: str) -> str:
    if re.match(FEATURESET_NAME, name) and not name.startswith(MASTRO_NAME_PREFIX):
        return name
    escaped = "".join(
        chr(byte) if _MASTRO_KEPT.match(bytes([byte])) else f"_{byte:02x}_"
        for byte in name.encode()
    )
    return MASTRO_NAME_PREFIX + escaped


def to_mastro_name(name: str) -> str:
    if not name.startswith(MASTRO_NAME_PREFIX):
        return name
    body = name[len(MASTRO_NAME_PREFIX) :]
    raw, pos = bytearray(), 0
    for escape in _MASTRO_ESCAPE.finditer(body):
        raw += body[pos : escape.start()].encode() + bytes([int(escape.group(1), 16)])
        pos = escape.end()
    raw += body[pos:].encode()
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return name
    return name


FeatureSetKind = Literal["values", "table"]

MAX_ENTITIES = 16
# ASCII digits only (re.ASCII): \d also matches "²", which int() refuses.
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$", re.ASCII)
_ISO_DURATION = re.compile(
    r"^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", re.ASCII
)
_DURATION_UNITS = (7 * 86400, 86400, 3600, 60, 1)


def parse_moment(text: str) -> datetime:
    """``text`` as an aware time: RFC 3339 (ISO 8601 with a time zone), as the feature store
    reads ``as_of``. The ValueError says what is wrong after the value, which it leaves out:
    the server and the command line each quote what they were given."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("is not an RFC 3339 timestamp such as 2025-06-16T05:45:00Z") from None
    if moment.tzinfo is None:
        raise ValueError("has no time zone; add one, e.g. Z for UTC")
    return moment


def parse_duration(value: Any) -> int | None:
    """Seconds from ``90``, ``"90"``, ``"7d"``, ``"1d12h"``, ``"30m"`` or ISO 8601 ``"P7D"``."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 7d, 12h or P7D")
    if isinstance(value, int | float):
        seconds = value
    else:
        text = str(value).strip()
        if text.isascii() and text.isdigit():  # "²".isdigit() holds, but int() refuses it
            seconds = int(text)
        else:
            found = _DURATION.match(text.lower()) or _ISO_DURATION.match(text.upper())
            if not found or not any(found.groups()):
                raise ValueError(
                    f"{text!r} is not a duration; write seconds or text such as 7d, 12h, "
                    "1d12h, 30m or P7D"
                )
            parts = zip(found.groups(), _DURATION_UNITS, strict=True)
            seconds = sum(int(g or 0) * unit for g, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("a duration must be positive (leave ttl out for unlimited)")
    return int(seconds)


class FeatureTableSpec(BaseModel):
    """What makes a tabular set a feature table (DESIGN 9): its keys and its event time.

    Declared with a version and inherited by later versions that do not declare one.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    entities: list[str] = Field(
        min_length=1,
        max_length=MAX_ENTITIES,
        description="Join-key columns, e.g. [customer_id]; several make a composite key.",
    )
    timestamp: str = Field(
        min_length=1, max_length=MAX_SHORT, description="Event-time column (UTC)."
    )
    created_timestamp: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_SHORT,
        description="Tie-break between rows of one key with equal event time.",
    )
    ttl: int | None = Field(
        None,
        gt=0,
        le=INT64_MAX,  # the stores' integers
        description="Seconds a row stays servable after its event time; none means unlimited. "
        "Accepts 7d, 12h, 1d12h, 30m or ISO 8601 (P7D) on input.",
    )

    @field_validator("ttl", mode="before")
    @classmethod
    def _ttl(cls, value: Any) -> int | None:
        return parse_duration(value)

    @field_validator("entities")
    @classmethod
    def _entities(cls, values: list[str]) -> list[str]:
        for value in values:
            _check_text(value, "an entity column", MAX_SHORT)
            if not value:
                raise ValueError("entity column names must not be empty")
        if len(set(values)) != len(values):
            raise ValueError("an entity column appears twice")
        return values

    @model_validator(mode="after")
    def _distinct(self) -> FeatureTableSpec:
        if self.timestamp in self.entities:
            raise ValueError(
                f"column {self.timestamp!r} cannot be both an entity and the timestamp"
            )
        if self.created_timestamp is not None and self.created_timestamp in (
            *self.entities,
            self.timestamp,
        ):
            raise ValueError(
                f"created_timestamp {self.created_timestamp!r} must be a column of its own"
            )
        return self

    def key_columns(self) -> list[str]:
        """Columns that are not features: the entities and the time columns."""
        extra = [self.created_timestamp] if self.created_timestamp else []
        return [*self.entities, self.timestamp, *extra]


class TableInfo(BaseModel):
    """The tabular payload of a version: a Parquet file, described."""

    rows: int
    columns: list[SchemaField]
    row_groups: int
    size_bytes: int
    sha256: str


class TableRows(BaseModel):
    """A page of a tabular set's rows, in the JSON representation."""

    columns: list[str]
    rows: list[dict[str, Any]]
    offset: int
    limit: int
    total_rows: int
    next_offset: int | None = None


class FeatureSetSummary(BaseModel):
    """One version, without its values: what listings and searches return."""

    name: str
    version: int
    version_label: str | None = None
    kind: FeatureSetKind
    description: str = ""
    labels: dict[str, LabelValue] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list)
    feature_count: int = Field(description="Features of a values set; columns of a table")
    table: TableInfo | None = None
    feature_table: FeatureTableSpec | None = Field(
        None, description="Entities, event time and ttl of a feature table (DESIGN 9)"
    )
    created_at: datetime
    created_by: str | None = None
    deleted: bool = False
    deleted_at: datetime | None = None
    etag: str = Field(description="ETag of the version's JSON representation")


class FeatureSet(FeatureSetSummary):
    """One immutable version of a feature set."""

    features: list[Feature] = Field(default_factory=list)
    data: TableRows | None = Field(None, description="Rows of a table, in JSON responses only")


class FeatureSetPage(BaseModel):
    items: list[FeatureSetSummary]
    total: int
    next_cursor: str | None = None


class FeatureSetVersions(BaseModel):
    name: str
    items: list[FeatureSetSummary]
    total: int
    next_cursor: str | None = None


class FeatureChange(BaseModel):
    name: str
    changed: list[Literal["dtype", "value"]]
    old: Feature
    new: Feature


class ColumnChange(BaseModel):
    name: str
    old: SchemaField
    new: SchemaField


class SchemaDiff(BaseModel):
    added: list[SchemaField] = Field(default_factory=list)
    removed: list[SchemaField] = Field(default_factory=list)
    changed: list[ColumnChange] = Field(default_factory=list)


class RowCounts(BaseModel):
    old: int
    new: int
    delta: int


class MapDiff(BaseModel):
    added: dict[str, Any] = Field(default_factory=dict)
    removed: dict[str, Any] = Field(default_factory=dict)
    changed: dict[str, list[Any]] = Field(default_factory=dict, description="key: [old, new]")


class FeatureSetDiff(BaseModel):
    """What changed from one version to another."""

    name: str
    old_version: int
    new_version: int
    old_kind: FeatureSetKind
    new_kind: FeatureSetKind
    added: list[Feature] = Field(default_factory=list)
    removed: list[Feature] = Field(default_factory=list)
    changed: list[FeatureChange] = Field(default_factory=list)
    unchanged: int = 0
    columns: SchemaDiff | None = Field(None, description="Schema changes of tabular sets")
    rows: RowCounts | None = None
    data_changed: bool = Field(description="False when both versions hold the same payload")
    description_changed: bool = False
    labels: MapDiff = Field(default_factory=MapDiff)
    depends_on_added: list[str] = Field(default_factory=list)
    depends_on_removed: list[str] = Field(default_factory=list)


# --- Mastro's page-numbered queries (both services' Mastro-compatible routes) ----------------

# Mastro's queries reach Elasticsearch, whose result window holds 10,000 hits; its clients
# must send limit and page (Mastro answers 400 without them) and its UI starts at page 0.
MASTRO_MAX_PER_PAGE = 10_000
MastroLimit = Annotated[int, Field(ge=1, le=MASTRO_MAX_PER_PAGE)]
MastroPage = Annotated[int, Field(ge=0, le=MAX_PAGE, description="0 is read as 1, as Mastro does")]


class MastroTextQuery(BaseModel):
    query: str = Field(min_length=1, max_length=1024)
    limit: MastroLimit
    page: MastroPage


class MastroLabelsQuery(BaseModel):
    labels: dict[str, LabelValue] = Field(min_length=1, max_length=100)
    limit: MastroLimit
    page: MastroPage


# --- OpenLineage (spec 2-0-x): events Cairn accepts, and what it keeps of them ---------------

# Facets on one run, job or dataset; inputs and outputs of one event.
OL_MAX_FACETS = 100
OL_MAX_DATASETS = MAX_LIST
# Transformations kept per upstream column of a column-lineage facet.
OL_MAX_TRANSFORMATIONS = 16

RunEventType = Literal["START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER"]
TERMINAL_EVENTS = ("COMPLETE", "ABORT", "FAIL")
OpenLineageKind = Literal["RunEvent", "JobEvent", "DatasetEvent"]
DATE_TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}"
_DATE_TIME = re.compile(DATE_TIME_PATTERN)
RUN_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _utc(value: datetime) -> datetime:
    # The spec's times carry a zone; one without is read as UTC rather than refused.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _facets(values: dict[str, Any]) -> dict[str, Any]:
    for key in values:
        _check_text(key, "a facet name", MAX_SHORT)
    return check_extra(values, "the facet")


def _none_is_empty(value: Any, empty: Any) -> Any:
    # Some producers write an absent list or map as null.
    return empty if value is None else value


class OpenLineageModel(BaseModel):
    # Fields Cairn does not read (and facets' own future fields) are ignored, not refused:
    # producers are free to add them.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @field_validator("facets", "inputFacets", "outputFacets", mode="before", check_fields=False)
    @classmethod
    def _null_facets(cls, value: Any) -> Any:
        return _none_is_empty(value, {})

    @field_validator("facets", "inputFacets", "outputFacets", check_fields=False)
    @classmethod
    def _bounded_facets(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _facets(value)


class OpenLineageNamed(OpenLineageModel):
    """A job or a dataset: unique by (namespace, name)."""

    namespace: str = Field(min_length=1, max_length=MAX_SHORT)
    name: str = Field(min_length=1, max_length=MAX_SHORT)
    facets: dict[str, Any] = Field(default_factory=dict, max_length=OL_MAX_FACETS)

    @field_validator("namespace", "name")
    @classmethod
    def _text(cls, value: str, info: Any) -> str:
        value = _check_text(value, info.field_name, MAX_SHORT)
        # A namespace becomes an asset's name and label (postgres://user:pw@host): as a location
        # would, a credential in it refuses the event.
        return _no_credentials(value, "namespace") if info.field_name == "namespace" else value


class OpenLineageJob(OpenLineageNamed):
    pass


class OpenLineageDataset(OpenLineageNamed):
    inputFacets: dict[str, Any] = Field(default_factory=dict, max_length=OL_MAX_FACETS)
    outputFacets: dict[str, Any] = Field(default_factory=dict, max_length=OL_MAX_FACETS)


class OpenLineageRun(OpenLineageModel):
    runId: str = Field(pattern=RUN_ID_PATTERN, description="A UUID")
    facets: dict[str, Any] = Field(default_factory=dict, max_length=OL_MAX_FACETS)


class OpenLineageEvent(OpenLineageModel):
    eventTime: datetime
    producer: str = Field(min_length=1, max_length=MAX_LOCATION)
    schemaURL: str = Field(min_length=1, max_length=MAX_LOCATION)

    @field_validator("eventTime", mode="before")
    @classmethod
    def _time_text(cls, value: Any) -> Any:
        # Only the spec's date-time text: not a bare date, nor seconds since 1970.
        if not isinstance(value, str) or not _DATE_TIME.match(value):
            raise ValueError("must be an ISO 8601 date-time such as 2026-01-01T03:00:00Z")
        return value

    @field_validator("eventTime")
    @classmethod
    def _time(cls, value: datetime) -> datetime:
        return _utc(value)

    @field_validator("producer", "schemaURL")
    @classmethod
    def _line(cls, value: str, info: Any) -> str:
        return _check_text(value, info.field_name, MAX_LOCATION)

    @field_validator("inputs", "outputs", mode="before", check_fields=False)
    @classmethod
    def _null_list(cls, value: Any) -> Any:
        return _none_is_empty(value, [])


class OpenLineageRunEvent(OpenLineageEvent):
    """A run of a job changed state, reading ``inputs`` and writing ``outputs``."""

    eventType: RunEventType | None = None
    run: OpenLineageRun
    job: OpenLineageJob
    inputs: list[OpenLineageDataset] = Field(default_factory=list, max_length=OL_MAX_DATASETS)
    outputs: list[OpenLineageDataset] = Field(default_factory=list, max_length=OL_MAX_DATASETS)


class OpenLineageJobEvent(OpenLineageEvent):
    """A job's design (its inputs and outputs), outside any run."""

    job: OpenLineageJob
    inputs: list[OpenLineageDataset] = Field(default_factory=list, max_length=OL_MAX_DATASETS)
    outputs: list[OpenLineageDataset] = Field(default_factory=list, max_length=OL_MAX_DATASETS)


class OpenLineageDatasetEvent(OpenLineageEvent):
    """A dataset's metadata (its schema, say), outside any run."""

    dataset: OpenLineageDataset


class LineageReceipt(BaseModel):
    """What ``POST /api/v1/lineage`` did with an event."""

    kind: OpenLineageKind
    duplicate: bool = Field(
        description="True when this event (run id, event time and type) was recorded before; "
        "nothing was changed"
    )
    job: str | None = Field(None, description="The job's pipeline asset id")
    inputs: list[str] = Field(default_factory=list, description="Asset ids of the inputs")
    outputs: list[str] = Field(default_factory=list, description="Asset ids of the outputs")
    edges: int = 0


class RunUpdate(BaseModel):
    """One run event's contribution to its run's state."""

    job_id: str
    run_id: str
    event_type: RunEventType
    event_time: datetime
    error: str | None = None


class JobRun(BaseModel):
    """A run of a job, as its events so far describe it."""

    job_id: str
    run_id: str
    state: RunEventType = Field(description="The type of the run's latest event")
    started_at: datetime | None = None
    ended_at: datetime | None = None
    updated_at: datetime
    events: dict[str, datetime] = Field(description="Event type -> the time of that event")
    error: str | None = None

    @classmethod
    def of(cls, job_id: str, run_id: str, events: dict[str, Any], error: str | None) -> JobRun:
        """The state is the latest event's type; a terminal event wins a tie, and OTHER (extra
        metadata) never changes the state of a run that has another event."""
        events = {
            k: _utc(v if isinstance(v, datetime) else datetime.fromisoformat(v))
            for k, v in events.items()
        }
        ranked = {k: v for k, v in events.items() if k != "OTHER"} or events
        state = max(ranked, key=lambda k: (ranked[k], k in TERMINAL_EVENTS))
        ends = [events[k] for k in TERMINAL_EVENTS if k in events]
        return cls(
            job_id=job_id,
            run_id=run_id,
            state=state,
            started_at=events.get("START"),
            ended_at=max(ends) if ends else None,
            updated_at=max(events.values()),
            events=events,
            error=error,
        )


class ColumnSource(BaseModel):
    """An upstream column that feeds a column."""

    namespace: str
    name: str
    field: str
    asset_id: str | None = Field(None, description="The upstream dataset's asset, when known")
    transformations: list[str] = Field(
        default_factory=list, description="As the producer names them, e.g. DIRECT/AGGREGATION"
    )


FacetKind = Literal["schema", "columnLineage"]


class ReportedFacet(BaseModel):
    """A dataset facet as last reported for an asset (the latest event time wins)."""

    asset_id: str
    kind: FacetKind
    value: Any
    run_id: str | None = None
    reported_at: datetime


class ColumnLineage(BaseModel):
    """``GET /assets/{id}/columns``: an asset's schema and the column lineage OpenLineage
    reported."""

    asset_id: str
    schema_: list[SchemaField] | None = Field(
        None,
        validation_alias=AliasChoices("schema", "schema_"),
        serialization_alias="schema",
        description="The schema an OpenLineage event reported, else the asset's own (a "
        "manifest's, or what the crawler read from its Parquet or CSV file)",
    )
    schema_source: Literal["openlineage", "asset"] | None = Field(
        None, description="Where ``schema`` comes from; null when there is none"
    )
    columns: dict[str, list[ColumnSource]] = Field(
        default_factory=dict, description="Column -> the upstream columns it is computed from"
    )
    run_id: str | None = None
    reported_at: datetime | None = None

"""A topic's schema from a schema registry that speaks Confluent's REST API.

``GET /subjects/<subject>/versions/latest`` answers the latest registered schema with its
type (AVRO when absent, JSON or PROTOBUF). Avro records and JSON Schema objects become
columns; a Protobuf schema is kept by reference only (its text needs a .proto parser).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from cairn.models import MAX_COLUMNS
from cairn.redact import redact_url
from crawler.sources.base import SourceError


class RegistryTrouble(SourceError):
    """The registry could not say what the subject's schema is now (no answer, or a server
    error): what was read from it before still holds."""


class RegistryUnreachable(RegistryTrouble):
    """The registry did not answer at all (refused, timed out): asking again for the next
    subject would wait as long again."""


@dataclass(slots=True)
class RegistrySchema:
    subject: str
    version: int
    schema_id: int
    schema_type: str  # AVRO, JSON or PROTOBUF
    columns: list[dict[str, Any]] | None

    @property
    def format(self) -> str:
        return {"AVRO": "avro", "JSON": "json", "PROTOBUF": "protobuf"}.get(
            self.schema_type, self.schema_type.lower()
        )

    def reference(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "version": self.version,
            "id": self.schema_id,
            "type": self.schema_type,
        }


def fetch_registry_schema(base_url: str, subject: str, timeout: float) -> RegistrySchema | None:
    """The subject's latest schema; None when the registry has no such subject."""
    url = f"{base_url.rstrip('/')}/subjects/{quote(subject, safe='')}/versions/latest"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.TransportError as exc:
        # The URL may hold the registry's key and secret (user info): never in a report.
        raise RegistryUnreachable(
            f"schema registry at {redact_url(base_url)} did not answer: {exc!r}"
        ) from exc
    except httpx.HTTPError as exc:
        raise SourceError(
            f"schema registry at {redact_url(base_url)} failed the request: {exc!r}"
        ) from exc
    if response.status_code == 404:
        return None
    if response.status_code >= 500:
        raise RegistryTrouble(
            f"schema registry answered HTTP {response.status_code} for subject {subject!r}: "
            f"{response.text[:200]}"
        )
    if response.status_code != 200:
        raise SourceError(
            f"schema registry answered HTTP {response.status_code} for subject {subject!r}: "
            f"{response.text[:200]}"
        )
    try:
        body = response.json()
        schema_type = str(body.get("schemaType") or "AVRO").upper()
        text = body["schema"]
        version, schema_id = int(body["version"]), int(body["id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(
            f"schema registry's answer for subject {subject!r} is not a schema: {exc!r}"
        ) from exc
    return RegistrySchema(subject, version, schema_id, schema_type, columns_of(schema_type, text))


def columns_of(schema_type: str, text: str) -> list[dict[str, Any]] | None:
    """Columns of an Avro record or a JSON Schema object; None for anything else."""
    try:
        schema = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if schema_type == "AVRO":
        return _avro_columns(schema)
    if schema_type == "JSON":
        return _json_schema_columns(schema)
    return None


def _avro_type(avro: Any) -> tuple[str, bool]:
    """(type name, nullable) of an Avro field type."""
    if isinstance(avro, list):  # a union: ["null", "string"] is a nullable string
        others = [t for t in avro if t != "null"]
        name = _avro_type(others[0])[0] if len(others) == 1 else "union"
        return name, "null" in avro
    if isinstance(avro, dict):
        return str(avro.get("logicalType") or avro.get("type") or "unknown"), False
    return str(avro), avro == "null"


def _avro_columns(schema: Any) -> list[dict[str, Any]] | None:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    columns = []
    for field in schema.get("fields") or []:
        if not isinstance(field, dict) or not field.get("name"):
            continue
        type_name, nullable = _avro_type(field.get("type"))
        column: dict[str, Any] = {"name": field["name"], "type": type_name, "nullable": nullable}
        if field.get("doc"):
            column["description"] = str(field["doc"])
        columns.append(column)
    return columns[:MAX_COLUMNS]


def _json_schema_columns(schema: Any) -> list[dict[str, Any]] | None:
    if not isinstance(schema, dict) or not isinstance(schema.get("properties"), dict):
        return None
    required = set(schema.get("required") or ())
    columns = []
    for name, spec in schema["properties"].items():
        spec = spec if isinstance(spec, dict) else {}
        kind = spec.get("type", "json")
        if isinstance(kind, list):
            nullable = "null" in kind
            kinds = [k for k in kind if k != "null"]
            kind = kinds[0] if len(kinds) == 1 else "json"
        else:
            nullable = name not in required
        column: dict[str, Any] = {
            "name": name,
            "type": str(kind),
            "nullable": nullable or name not in required,
        }
        if spec.get("description"):
            column["description"] = str(spec["description"])
        columns.append(column)
    return columns[:MAX_COLUMNS]

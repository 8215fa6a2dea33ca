"""A folder of feature-set versions, stored as a whole: ``cairn featureset put FOLDER`` and the
example sets ``cairn up`` seeds.

A folder holds one set: its versions as ``v1.yaml``, ``v2.parquet``, ... (numbered from 1
without gaps; a YAML file is a whole set of named values, a Parquet file a table) and, when it
has tables, ``featureset.yaml`` beside them: the set's ``name`` (default: the folder's),
``description``, ``labels``, ``depends_on``, ``feature_table`` (``entities``, ``timestamp``,
``created_timestamp``, ``ttl``) and ``versions`` (``v1.parquet: {version_label, created_by}``).

Storing a folder again stores only the files the set does not have yet: file N is sent as
version N, which the feature store takes only while N is the next one, so two runs at once
never store a file twice, and a set changed elsewhere stops the run with a 409.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cairn.client import FeatureStoreClient
    from cairn.models import FeatureSet

FOLDER_META = "featureset.yaml"
_VERSION_FILE = re.compile(r"^v(\d+)\.(yaml|yml|parquet)$")
_META_KEYS = frozenset({"name", "description", "labels", "depends_on", "feature_table", "versions"})


def version_files(folder: Path) -> list[Path]:
    """The folder's version files in version order; gaps in their numbers are refused."""
    found = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _VERSION_FILE.match(p.name))
    )
    for expected, (number, path) in enumerate(found, 1):
        if number != expected:
            raise ValueError(
                f"{folder}: {path.name} is version {number}, but there is no v{expected}; "
                "number the version files v1, v2, ... without gaps"
            )
    return [p for _, p in found]


def read_yaml(path: Path) -> Any:
    """The YAML document of ``path``; a ``ValueError`` naming the file when it cannot be read."""
    import yaml

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        # The codec's own words say nothing of what was expected.
        raise ValueError(
            f"{path} is neither a Parquet file (a table) nor UTF-8 text (a YAML set of named "
            "values)"
        ) from None
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def load_yaml_set(path: Path) -> dict[str, Any]:
    """A feature-set YAML file: ``{name?, description, labels, depends_on, features: [...]}``."""
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise ValueError(f"{path} must be a mapping with a features list of {{name, dtype, value}}")
    labels = data.get("labels")
    if labels is not None and not isinstance(labels, dict):
        # `labels: [a, b]` ended in a TypeError traceback when merged with --label.
        raise ValueError(
            f"{path}: labels must be a map of key: value, not a {type(labels).__name__}"
        )
    return data


def feature_table_args(declared: Mapping[str, Any] | None) -> dict[str, Any]:
    """``put_table`` arguments from a ``feature_table:`` mapping in ``featureset.yaml``."""
    if not declared:
        return {}
    keys = ("entities", "timestamp", "created_timestamp", "ttl")
    return {key: declared.get(key) for key in keys}


def text(value: Any) -> str | None:
    """A YAML scalar as text: YAML reads ``name: 123`` as a number."""
    return None if value is None else str(value)


def _folder_meta(folder: Path) -> dict[str, Any]:
    path = folder / FOLDER_META
    if not path.exists():
        return {}
    meta = read_yaml(path) or {}
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must be a mapping of {', '.join(sorted(_META_KEYS))}")
    unknown = sorted(set(meta) - _META_KEYS)
    if unknown:
        # A misspelt key (desciption:) would otherwise be dropped without a word.
        raise ValueError(
            f"{path}: unknown key {unknown[0]!r}; the keys are {', '.join(sorted(_META_KEYS))}"
        )
    for key, kind in (("labels", dict), ("feature_table", dict), ("versions", dict)):
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            raise ValueError(f"{path}: {key} must be a mapping, not {type(meta[key]).__name__}")
    return meta


def put_folder(
    client: FeatureStoreClient,
    folder: Path,
    *,
    name: str | None = None,
    created_by: str | None = None,
) -> list[FeatureSet]:
    """Stores the folder's versions the set does not have yet, in order; returns them.

    ``name`` overrides the set's name; ``created_by`` is the author of versions that name none.
    Raises ``ValueError`` for a folder that cannot be read, before anything is stored.
    """
    from cairn.errors import NotFound

    meta = _folder_meta(folder)
    files = version_files(folder)
    if not files:
        raise ValueError(f"{folder} holds no version files (v1.yaml, v1.parquet, ...)")
    # Every YAML version is read first: a broken v3 stops the run before v1 is stored.
    sets = {p: load_yaml_set(p) for p in files if p.suffix != ".parquet"}
    if not name:
        named = [text(data.get("name")) for data in sets.values() if data.get("name")]
        name = text(meta.get("name")) or (named[0] if named else None) or folder.name
        for path, data in sets.items():
            if data.get("name") and text(data["name"]) != name:
                raise ValueError(
                    f"{path} names the set {data['name']!r}, but the folder's set is {name!r}; "
                    "a folder holds one set (--name stores it under another name)"
                )
    try:
        newest = client.versions(name, limit=1).items
    except NotFound:
        newest = []
    have = newest[0].version if newest else 0
    per_file = meta.get("versions") or {}
    stored = []
    for number, path in enumerate(files, 1):
        if number <= have:
            continue
        if path.suffix == ".parquet":
            extra = per_file.get(path.name) or {}
            stored.append(
                client.put_table(
                    name,
                    path,
                    description=meta.get("description"),
                    labels=meta.get("labels"),
                    depends_on=meta.get("depends_on"),
                    version_label=text(extra.get("version_label")),
                    created_by=text(extra.get("created_by")) or created_by,
                    version=number,
                    **feature_table_args(meta.get("feature_table")),
                )
            )
        else:
            data = sets[path]
            stored.append(
                client.put(
                    name,
                    data["features"],
                    description=data.get("description") or meta.get("description"),
                    labels=data.get("labels") or meta.get("labels"),
                    depends_on=data.get("depends_on") or meta.get("depends_on"),
                    version_label=text(data.get("version_label")),
                    created_by=text(data.get("created_by")) or created_by,
                    version=number,
                )
            )
    return stored

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

import itertools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cairn.client import FeatureStoreClient
    from cairn.models import FeatureSet

FOLDER_META = "featureset.yaml"
_VERSION_FILE = re.compile(r"^v(\d+)\.(yaml|yml|parquet)$")
_META_KEYS = frozenset({"name", "description", "labels", "depends_on", "feature_table", "versions"})
_TABLE_KEYS = frozenset({"entities", "timestamp", "created_timestamp", "ttl"})
_VERSION_KEYS = frozenset({"version_label", "created_by"})


def version_files(folder: Path) -> list[Path]:
    """The folder's version files in version order; gaps in their numbers are refused."""
    found = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _VERSION_FILE.match(p.name))
    )
    for (number, path), (after, other) in itertools.pairwise(found):
        if number == after:
            raise ValueError(f"{folder}: {path.name} and {other.name} are both version {number}")
    for expected, (number, path) in enumerate(found, 1):
        if number != expected:
            raise ValueError(
                f"{folder}: {path.name} is version {number}, but there is no v{expected}; "
                "number the version files v1, v2, ... without gaps"
            )
    return [p for _, p in found]


def holds_versions(folder: Path) -> bool:
    return any(_VERSION_FILE.match(p.name) for p in folder.iterdir())


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
    except yaml.MarkedYAMLError as exc:
        # PyYAML's own text spans lines and names "<unicode string>", not the file: one line
        # naming the file, line and column, as the crawler words a manifest's.
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        context = f" ({exc.context})" if exc.context else ""
        raise ValueError(f"{where}: YAML syntax error: {exc.problem}{context}") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def load_yaml_set(path: Path) -> dict[str, Any]:
    """A feature-set YAML file: ``{name?, description, labels, depends_on, features: [...]}``."""
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise ValueError(f"{path} must be a mapping with a features list of {{name, dtype, value}}")
    # `labels: [a, b]` ended in a TypeError traceback when merged with --label.
    _check_labels(data.get("labels"), path)
    return data


def _check_labels(labels: Any, path: Path) -> None:
    if labels is not None and not isinstance(labels, dict):
        raise ValueError(
            f"{path}: labels must be a map of key: value, not a {type(labels).__name__}"
        )


def feature_table_args(declared: Mapping[str, Any] | None) -> dict[str, Any]:
    """``put_table`` arguments from a ``feature_table:`` mapping in ``featureset.yaml``."""
    return {key: (declared or {}).get(key) for key in sorted(_TABLE_KEYS)}


def text(value: Any) -> str | None:
    """A YAML scalar as text: YAML reads ``name: 123`` as a number."""
    return None if value is None else str(value)


def _mapping(value: Any, keys: frozenset[str], where: str) -> dict[str, Any]:
    """``value`` as a mapping whose keys are among ``keys``: a misspelt key (desciption:)
    is an error rather than dropped without a word."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping of {', '.join(sorted(keys))}")
    unknown = sorted(str(k) for k in set(value) - keys)
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(sorted(keys))}"
        )
    return value


def _folder_meta(folder: Path, files: list[Path]) -> dict[str, Any]:
    path = folder / FOLDER_META
    if not path.exists():
        return {}
    meta = _mapping(read_yaml(path) or {}, _META_KEYS, str(path))
    _mapping(meta.get("feature_table"), _TABLE_KEYS, f"{path}: feature_table")
    _check_labels(meta.get("labels"), path)
    names = {p.name for p in files}
    per_file = meta.get("versions") or {}
    if not isinstance(per_file, dict):
        raise ValueError(f"{path}: versions must be a mapping of version file: {{...}}")
    for file_name, extra in per_file.items():
        if file_name not in names:
            raise ValueError(f"{path}: versions names {file_name}, which {folder} does not hold")
        _mapping(extra, _VERSION_KEYS, f"{path}: versions: {file_name}")
    return meta


def put_folder(
    client: FeatureStoreClient,
    folder: Path,
    *,
    name: str | None = None,
    created_by: str | None = None,
) -> Iterator[FeatureSet]:
    """Stores the folder's versions the set does not have yet, in order, yielding each.

    ``name`` overrides the set's name; ``created_by`` is the author of versions that name none.
    Every version is read and checked (its YAML, names, dtypes, labels) before the first is
    sent: a ``ValueError`` naming the file, and nothing stored. What only the feature store can
    check (a Parquet file's columns) stops the run at that version, the ones before it stored.
    """
    from cairn.cli_errors import validation_line
    from cairn.client.featurestore import make_meta, make_write
    from cairn.errors import NotFound

    files = version_files(folder)
    if not files:
        raise ValueError(f"{folder} holds no version files (v1.yaml, v1.parquet, ...)")
    meta = _folder_meta(folder, files)
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
    per_file = meta.get("versions") or {}
    versions = []
    for number, path in enumerate(files, 1):
        # The version's own YAML first, then what featureset.yaml says of it, then of all.
        own = sets.get(path, {})
        extra = per_file.get(path.name) or {}
        fields: dict[str, Any] = {
            "description": own.get("description") or meta.get("description"),
            "labels": own.get("labels") or meta.get("labels"),
            "depends_on": own.get("depends_on") or meta.get("depends_on"),
            "version_label": text(own.get("version_label") or extra.get("version_label")),
            "created_by": text(own.get("created_by") or extra.get("created_by")) or created_by,
            "version": number,
        }
        try:
            if path in sets:
                make_write(name, own["features"], **fields)
            else:
                make_meta(name, **fields)
        except ValueError as exc:
            raise ValueError(f"{path}: {validation_line(exc)}") from None
        versions.append((path, fields))

    try:
        newest = client.versions(name, limit=1).items
    except NotFound:
        newest = []
    have = newest[0].version if newest else 0
    for path, fields in versions[have:]:
        if path in sets:
            yield client.put(name, sets[path]["features"], **fields)
        else:
            yield client.put_table(
                name, path, **fields, **feature_table_args(meta.get("feature_table"))
            )

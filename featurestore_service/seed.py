"""Seeds the example feature sets (``examples/featuresets/``) for ``cairn up``.

Each folder is one set; its versions are ``v1.yaml``, ``v2.yaml``, ... (self-contained sets of
named values) or ``v1.parquet``, ... (tables, described by ``featureset.yaml`` beside them),
stored in order. Seeding is idempotent: a set that already has N versions gets only the files
after the N-th, so running ``cairn up`` again adds nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "featuresets"
_VERSION_FILE = re.compile(r"^v(\d+)\.(yaml|yml|parquet)$")


def version_files(folder: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _VERSION_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def feature_table_args(declared: Mapping[str, Any] | None) -> dict[str, Any]:
    """``put_table`` arguments from a ``feature_table:`` mapping in ``featureset.yaml``."""
    if not declared:
        return {}
    keys = ("entities", "timestamp", "created_timestamp", "ttl")
    return {key: declared.get(key) for key in keys}


def seed_featuresets(base_url: str, root: Path = EXAMPLES) -> int:
    """Stores the example versions the feature store does not have yet; returns how many."""
    from cairn.client import FeatureStoreClient
    from cairn.errors import NotFound

    stored = 0
    with FeatureStoreClient(base_url) as client:
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            meta_file = folder / "featureset.yaml"
            meta: dict[str, Any] = (
                yaml.safe_load(meta_file.read_text()) if meta_file.exists() else {}
            )
            files = version_files(folder)
            name = meta.get("name") or folder.name
            try:
                have = client.versions(name, limit=1).total
            except NotFound:
                have = 0
            for path in files[have:]:
                if path.suffix == ".parquet":
                    extra = (meta.get("versions") or {}).get(path.name) or {}
                    client.put_table(
                        name,
                        path,
                        description=meta.get("description"),
                        labels=meta.get("labels"),
                        depends_on=meta.get("depends_on"),
                        version_label=extra.get("version_label"),
                        created_by=extra.get("created_by") or "cairn-examples",
                        **feature_table_args(meta.get("feature_table")),
                    )
                else:
                    data = yaml.safe_load(path.read_text())
                    client.put(
                        data.get("name") or name,
                        data["features"],
                        description=data.get("description"),
                        labels=data.get("labels"),
                        depends_on=data.get("depends_on"),
                        version_label=data.get("version_label"),
                        created_by=data.get("created_by") or "cairn-examples",
                    )
                stored += 1
    return stored


def seed_examples(urls: Mapping[str, str]) -> None:
    """``cairn up``'s seeding step (``UP_SEEDS``): the example feature sets."""
    import typer

    count = seed_featuresets(urls["featurestore"])
    typer.echo(f"Seeded {count} example feature set version(s) from {EXAMPLES}")

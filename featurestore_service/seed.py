"""Seeds the example feature sets (``examples/featuresets/``) for ``cairn up``.

Each folder is one set, stored as ``cairn featureset put FOLDER`` stores one
(``featurestore_service/folders.py``): a set that already has N versions gets only the files
after the N-th, so running ``cairn up`` again adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cairn.wording import counted
from featurestore_service.folders import holds_versions, put_folder

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "featuresets"


def seed_featuresets(base_url: str, root: Path = EXAMPLES) -> int:
    """Stores the example versions the feature store does not have yet; returns how many."""
    from cairn.client import FeatureStoreClient

    with FeatureStoreClient(base_url) as client:
        return sum(
            1
            for folder in sorted(p for p in root.iterdir() if p.is_dir() and holds_versions(p))
            for _ in put_folder(client, folder, created_by="cairn-examples")
        )


def seed_examples(urls: Mapping[str, str]) -> None:
    """``cairn up``'s seeding step (``UP_SEEDS``): the example feature sets."""
    import typer

    count = seed_featuresets(urls["featurestore"])
    typer.echo(f"Seeded {counted(count, 'example feature set version')} from {EXAMPLES}")

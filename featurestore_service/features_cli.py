"""``cairn features ...``: entity-keyed feature serving from the command line (DESIGN 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cairn.errors import CairnError
from featurestore_service.cli import UrlOption, _client, _fail

app = typer.Typer(
    help="Point-in-time training sets and online lookups of feature tables "
    "(CAIRN_FEATURESTORE_URL).",
    no_args_is_help=True,
)


@app.command()
def historical(
    entity_frame: Annotated[
        Path,
        typer.Argument(
            help="Parquet file of join keys, event_timestamp (naive is UTC) and any other "
            "columns, which are passed through.",
            exists=True,
            dir_okay=False,
        ),
    ],
    feature: Annotated[
        list[str],
        typer.Option(
            "--feature", "-f", help="set:feature, set:* or set@3:feature; repeat for more."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Parquet file to write the training set to.")
    ],
    full_feature_names: Annotated[
        bool, typer.Option("--full-feature-names", help="Name feature columns set__feature.")
    ] = False,
    url: UrlOption = None,
) -> None:
    """Build a point-in-time correct training set: each row of ENTITY_FRAME gets each feature's
    value as it was at the row's event_timestamp (never a later one), rows kept in order."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    err = Console(stderr=True)
    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    try:
        with _client(url) as client, Progress(*columns, console=err, transient=True) as bar:
            tasks = {
                "sent": bar.add_task("sending", total=entity_frame.stat().st_size),
                "received": bar.add_task("receiving", total=None),
            }
            found = client.download_historical_features(
                entity_frame,
                feature,
                output,
                full_feature_names=full_feature_names,
                progress=lambda what, count: bar.advance(tasks[what], count),
            )
    except CairnError as exc:
        _fail(exc.detail)
    rows = found.get("x-cairn-rows", "?")
    versions = found.get("cairn-feature-versions", "")
    typer.echo(f"wrote {output}: {rows} rows, feature versions {versions}", err=True)

"""``cairn features ...``: entity-keyed feature serving from the command line (DESIGN 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cairn.errors import CairnError
from cairn.wording import scalar
from featurestore_service.cli import JsonOption, UrlOption, _client, _fail, _print_json, _usage

app = typer.Typer(
    help="Point-in-time training sets and online lookups of feature tables "
    "(CAIRN_FEATURESTORE_URL).",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as `cairn --help` (cairn/cli.py says why)
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
            "--feature",
            "-f",
            help="set:feature, set:* or set@3:feature; repeat for more.",
            metavar="FEATURE",
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Parquet file to write the training set to.", metavar="FILE"
        ),
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

    _check_references(feature)
    err = Console(stderr=True)
    columns = (
        TextColumn("{task.description:<10}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    # Off when stderr is not a terminal: a transient bar still ends with an empty line there.
    progress = Progress(*columns, console=err, transient=True, disable=not err.is_terminal)
    try:
        with _client(url) as client, progress as bar:
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
        _fail(exc)
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}")
    rows = found.get("x-cairn-rows", "?")
    versions = found.get("cairn-feature-versions", "")
    typer.echo(f"wrote {output}: {rows} rows, feature versions {versions}", err=True)


def _check_references(references: list[str]) -> None:
    """Exit 2 naming --feature for a reference the service would refuse naming its field
    (``features[0]``), which the user never typed."""
    from featurestore_service.online.references import parse_references

    try:
        parse_references(references)
    except CairnError as exc:
        _usage(exc.errors[0]["message"] if exc.errors else exc.detail, "--feature")


def _entities(pairs: list[str]) -> dict[str, list[Any]]:
    """``customer_id=C00001`` repeated: one entity row per value, columns in order given."""
    columns: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _usage(f"{pair!r} must look like column=value, e.g. customer_id=C00001", "--entity")
        columns.setdefault(key, []).append(value)
    sizes = {len(values) for values in columns.values()}
    if len(sizes) > 1:
        _usage(
            "give every entity column the same number of values (one per entity row)", "--entity"
        )
    return columns


@app.command()
def online(
    feature: Annotated[
        list[str],
        typer.Option(
            "--feature",
            "-f",
            help="set:feature, set:* or set@3:feature; repeatable.",
            metavar="FEATURE",
        ),
    ],
    entity: Annotated[
        list[str],
        typer.Option(
            "--entity",
            "-e",
            help="column=value of one entity row, e.g. customer_id=C00001; repeat for more "
            "rows, and per column of a composite key.",
            metavar="COLUMN=VALUE",
        ),
    ],
    full_feature_names: Annotated[
        bool, typer.Option("--full-feature-names", help="Name columns set__feature.")
    ] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Latest values of entity keys from the online store (Feast's get-online-features)."""
    _check_references(feature)
    entities = _entities(entity)
    try:
        with _client(url) as client:
            answer = client.get_online_features(feature, entities, full_feature_names)
    except CairnError as exc:
        _fail(exc)
    if as_json:
        _print_json(answer.raw)
        return
    from rich.console import Console
    from rich.table import Column, Table
    from rich.text import Text

    statuses = [result["statuses"] for result in answer.raw["results"]]
    values = [result["values"] for result in answer.raw["results"]]
    # Names and values are the user's text: Text keeps Rich from reading them as markup.
    rows = [
        [
            Text(_cell(column[row], status[row]))
            for column, status in zip(values, statuses, strict=True)
        ]
        for row in range(len(values[0]) if values else 0)
    ]
    console = Console()
    table = Table(*(Column(header=Text(name)) for name in answer.feature_names))
    for cells in rows:
        table.add_row(*cells)
    # Measured as if the terminal were unbounded: a measure at its width is cut to fit it.
    unbounded = console.options.update(max_width=1 << 16)
    if console.measure(table, options=unbounded).maximum <= console.width:
        console.print(table)
        return
    # Too wide for the terminal: Rich would cut every name and value to a few letters (two
    # keys C00001 and C00002 both read "C000…"). One line per feature instead, each entity
    # row a section of its own, as psql's expanded display does.
    long = Table(Column(header="row"), Column(header="feature"), Column(header="value"))
    for number, cells in enumerate(rows, 1):
        for index, (name, cell) in enumerate(zip(answer.feature_names, cells, strict=True)):
            cell.overflow = "fold"
            long.add_row(
                str(number) if index == 0 else "",
                Text(name, overflow="fold"),
                cell,
                end_section=index == len(cells) - 1,
            )
    console.print(long)


def _cell(value: Any, status: str) -> str:
    """A value as the JSON answer spells it (``null``, ``true``), nothing for a key not
    found."""
    if status == "NOT_FOUND":
        return ""
    shown = scalar(value)
    return shown + " (too old)" if status == "OUTSIDE_MAX_AGE" else shown

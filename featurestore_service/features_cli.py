"""``cairn features ...``: entity-keyed feature serving from the command line (DESIGN 9)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cairn.errors import CairnError
from featurestore_service.cli import JsonOption, UrlOption, _client, _fail, _print_json

app = typer.Typer(
    help="Point-in-time training sets and online lookups of feature tables "
    "(CAIRN_FEATURESTORE_URL).",
    no_args_is_help=True,
)


def _entities(pairs: list[str]) -> dict[str, list[Any]]:
    """``customer_id=C00001`` repeated: one entity row per value, columns in order given."""
    columns: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--entity {pair!r} must look like column=value, e.g. customer_id=C00001")
        columns.setdefault(key, []).append(value)
    sizes = {len(values) for values in columns.values()}
    if len(sizes) > 1:
        _fail("give every entity column the same number of values (one per entity row)")
    return columns


@app.command()
def online(
    feature: Annotated[
        list[str],
        typer.Option("--feature", "-f", help="set:feature, set:* or set@3:feature; repeatable."),
    ],
    entity: Annotated[
        list[str],
        typer.Option(
            "--entity",
            "-e",
            help="column=value of one entity row, e.g. customer_id=C00001; repeat for more "
            "rows, and per column of a composite key.",
        ),
    ],
    full_feature_names: Annotated[
        bool, typer.Option("--full-feature-names", help="Name columns set__feature.")
    ] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Latest values of entity keys from the online store (Feast's get-online-features)."""
    entities = _entities(entity)
    try:
        with _client(url) as client:
            answer = client.get_online_features(feature, entities, full_feature_names)
    except CairnError as exc:
        _fail(exc.detail)
    if as_json:
        _print_json(answer.raw)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*answer.feature_names)
    statuses = [result["statuses"] for result in answer.raw["results"]]
    values = [result["values"] for result in answer.raw["results"]]
    for row in range(len(values[0]) if values else 0):
        table.add_row(
            *(
                ""
                if status[row] == "NOT_FOUND"
                else f"{column[row]}" + (" (too old)" if status[row] == "OUTSIDE_MAX_AGE" else "")
                for column, status in zip(values, statuses, strict=True)
            )
        )
    Console().print(table)

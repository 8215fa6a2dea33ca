"""``cairn metrics show|drift``: a tabular feature-set version's profile and drift."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cairn.errors import CairnError
from featurestore_service.cli import (
    JsonOption,
    UrlOption,
    _client,
    _fail,
    _print_json,
    within_int64,
)

app = typer.Typer(
    help="Profiles, drift and checks of feature-set versions (CAIRN_FEATURESTORE_URL).",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as `cairn --help` (cairn/cli.py says why)
)


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _latest_profiled(fs: Any, name: str) -> int:
    items = fs.metrics_history(name, 50)["items"]
    done = [i["version"] for i in items if i["status"] == "done"]
    if not done:
        _fail(f"no version of {name!r} is profiled yet")
    return int(done[0])


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Feature set name.")],
    version: Annotated[
        int | None,
        typer.Option(
            min=1, callback=within_int64, help="Version (default: newest profiled).", metavar="N"
        ),
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Per-column statistics of a version, then its checks."""
    try:
        with _client(url) as fs:
            chosen = version or _latest_profiled(fs, name)
            profile = fs.profile(name, chosen)
    except CairnError as exc:
        _fail(exc)
    if as_json:
        _print_json(profile)
        return
    if profile["status"] != "done":
        typer.echo(f"{name} v{chosen}: {profile['status']} {profile.get('error') or ''}".rstrip())
        return
    sampled = f", profiled {profile['profiled_rows']} (sampled)" if profile["sampled"] else ""
    typer.echo(f"{name} v{chosen}: {profile['rows']} rows{sampled}")
    typer.echo(f"{'column':24} {'type':12} {'nulls':>8} {'distinct':>9} {'min':>10} {'max':>10}")
    for c in profile["columns"]:
        typer.echo(
            f"{c['name'][:24]:24} {c['type'][:12]:12} {c['null_rate']:>8.1%} "
            f"{_number(c['distinct']):>9} {_number(c['min'])[:10]:>10} {_number(c['max'])[:10]:>10}"
        )
    for check in profile.get("checks") or []:
        state = "pass" if check["passed"] else f"FAIL ({check['on_fail']})"
        typer.echo(f"check {check['name']}: {state}; observed {check['observed']}")


def _drift_line(column: dict[str, Any]) -> str:
    if "null_rate" not in column:  # added or removed: nothing to compare
        return str(column.get("change") or "not compared")
    flag = "DRIFT" if column["drifted"] else "ok"
    if column["test"] is None:  # no values in common; the share of nulls is still tested
        values = "type changed" if column.get("change") == "type" else "values not compared"
    else:
        values = f"{column['test']} p={column['p_value']:.3g}, psi={column['psi']:.3f}"
    nulls = f"nulls {column['null_rate'][0]:.1%} -> {column['null_rate'][1]:.1%}"
    return f"{flag} ({values}, {nulls})"


@app.command()
def drift(
    name: Annotated[str, typer.Argument(help="Feature set name.")],
    version: Annotated[
        int, typer.Argument(min=1, callback=within_int64, help="The version to compare.")
    ],
    against: Annotated[
        int | None,
        typer.Option(
            min=1, callback=within_int64, help="Reference version (default: previous).", metavar="N"
        ),
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Drift of a version against another; exits 3 when a column drifted."""
    try:
        with _client(url) as fs:
            answer = fs.drift(name, version, against)
    except CairnError as exc:
        _fail(exc)
    result = answer.get("drift")
    if as_json:
        _print_json(answer)
    elif result is None:
        typer.echo(f"{name} v{version}: no drift computed yet (no earlier profiled version?)")
    else:
        typer.echo(f"{name} v{version} against v{result['against']}:")
        for c in result["columns"]:
            typer.echo(f"  {c['name']}: {_drift_line(c)}")
    if result is not None and result["drifted"]:
        raise typer.Exit(3)

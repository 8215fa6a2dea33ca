"""``cairn featureset ...``: put, get, list, versions, diff and delete feature sets."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer

from cairn.cli_errors import validation_line
from cairn.errors import CairnError, NotAcceptable
from cairn.numbers import INT64_MAX
from cairn.service_cli import JsonOption, ServiceCommands
from cairn.service_cli import key_values as _labels
from cairn.service_cli import print_json as _print_json
from cairn.service_cli import usage as _usage
from cairn.wording import counted
from featurestore_service.folders import FOLDER_META, load_yaml_set, put_folder, text

app = typer.Typer(
    help="Put and fetch versioned feature sets in the feature store (CAIRN_FEATURESTORE_URL).",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as `cairn --help` (cairn/cli.py says why)
)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", metavar="URL", help="Feature store base URL (default CAIRN_FEATURESTORE_URL)."
    ),
]


def _feature_store_client(base_url: str) -> Any:
    from cairn.client import FeatureStoreClient

    return FeatureStoreClient(base_url)


def _featurestore_url() -> str:
    from cairn.settings import get_settings  # here: `cairn --help` needs no settings

    return get_settings().featurestore_url


_commands = ServiceCommands(
    "feature store",
    "CAIRN_FEATURESTORE_URL",
    "http://127.0.0.1:8002",
    _feature_store_client,
    _featurestore_url,
)


def _client(url: str | None) -> Any:
    return _commands.client(url)


def _fail(problem: str | CairnError) -> NoReturn:
    """Exit 1 with one error line: ``problem``, or a service's problem as the CLI words it."""
    _commands.fail(problem)


def within_int64(value: int | None) -> int | None:
    """A callback for a version or row count: the stores hold 64-bit integers. It stands in for
    click's ``max=``, whose help would print the bound's 19 digits beside every option."""
    if value is not None and value > INT64_MAX:
        raise typer.BadParameter(f"{value} is more than {INT64_MAX}, the largest a store holds")
    return value


def _check_moment(value: str, option: str) -> None:
    """Exit 2 naming ``option`` for a time the service would refuse (it reads RFC 3339 as
    ``parse_moment`` does): its own message names its query parameter, not the option."""
    from cairn.models import parse_moment

    try:
        parse_moment(value)
    except ValueError as exc:
        _usage(f"{value!r} {exc}", option)


def _write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON into ``path``, written beside it and renamed, so a failed
    write leaves an earlier file whole (as a Parquet download does)."""
    partial = path.with_name(f".{path.name}.part")
    try:
        partial.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        partial.replace(path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    typer.echo(f"wrote {path} ({path.stat().st_size} bytes)", err=True)


def is_parquet(path: Path) -> bool:
    """Whether ``path`` is a Parquet table: by its name, or by its first bytes, which are
    Parquet's magic whatever the file is called (an export saved as data.txt)."""
    if path.suffix.lower() in (".parquet", ".parq"):
        return True
    try:
        with path.open("rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False  # read as YAML then, which says what went wrong


@app.command()
def put(
    file: Annotated[
        Path,
        typer.Argument(
            help="A YAML set of named values, a Parquet table (whatever its name), or a folder "
            "of versions (v1.yaml, v2.parquet, ... and featureset.yaml)."
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option(help="Feature set name (default: the YAML's name).", metavar="NAME"),
    ] = None,
    depends_on: Annotated[
        list[str] | None,
        typer.Option(
            "--depends-on",
            help="Catalogue asset this set is built from; repeatable.",
            metavar="ASSET",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="key:value label; repeatable.", metavar="KEY:VALUE"),
    ] = None,
    description: Annotated[
        str | None, typer.Option(help="What the set holds.", metavar="TEXT")
    ] = None,
    version_label: Annotated[
        str | None,
        typer.Option(help="Free text for this version, e.g. 2025-06-16.", metavar="TEXT"),
    ] = None,
    created_by: Annotated[
        str | None, typer.Option(help="Who writes it (default: your login name).", metavar="WHO")
    ] = None,
    entity: Annotated[
        list[str] | None,
        typer.Option(
            "--entity",
            help="Feature table: a join-key column; repeat for a composite key.",
            metavar="COLUMN",
        ),
    ] = None,
    timestamp: Annotated[
        str | None,
        typer.Option(help="Feature table: the event-time column (UTC).", metavar="COLUMN"),
    ] = None,
    created_timestamp: Annotated[
        str | None,
        typer.Option(
            help="Feature table: tie-break column for equal event times.", metavar="COLUMN"
        ),
    ] = None,
    ttl: Annotated[
        str | None,
        typer.Option(
            help="Feature table: how old a row may be when served (e.g. 7d, 3600).",
            metavar="DURATION",
        ),
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Store FILE as the next version of a feature set (versions are never overwritten).

    A Parquet table becomes a feature table with --entity and --timestamp; later versions
    inherit the declaration when these are left out.

    A folder is one set: its version files v1.yaml, v2.parquet, ... are stored in order, those
    the set already has skipped, with what featureset.yaml beside them declares (name,
    description, labels, depends_on, feature_table, versions: {v1.parquet: {version_label,
    created_by}}). Run it again after adding v3 and only v3 is stored.
    """
    table_only = {
        "--entity": entity,
        "--timestamp": timestamp,
        "--created-timestamp": created_timestamp,
        "--ttl": ttl,
    }
    if file.is_dir():
        per_set = {
            "--depends-on": depends_on,
            "--label": label,
            "--description": description,
            "--version-label": version_label,
            **table_only,
        }
        for option, value in per_set.items():
            if value:
                # featureset.yaml says it once for every version the folder holds.
                _usage(f"a folder declares it in {file / FOLDER_META}", option)
        _put_folder(file, name, created_by, url, as_json)
        return
    if not file.is_file():
        _fail(f"{file} is not a file or a folder")
    is_table = is_parquet(file)
    given = [option for option, value in table_only.items() if value]
    if given and not is_table:
        # They were sent nowhere: a YAML set of named values has no rows to key.
        _usage(f"only a Parquet table takes it; {file} is a set of named values", given[0])
    if is_table and not name:
        _usage("required with a Parquet file, which carries no set name", "--name")
    if ttl is not None:
        _check_ttl(ttl)
    author = created_by or _login()
    try:
        with _client(url) as client:
            if is_table:
                assert name is not None
                result = client.put_table(
                    name,
                    file,
                    description=description,
                    labels=_labels(label) or None,
                    depends_on=depends_on,
                    version_label=version_label,
                    created_by=author,
                    entities=entity,
                    timestamp=timestamp,
                    created_timestamp=created_timestamp,
                    ttl=ttl,
                )
            else:
                data = load_yaml_set(file)
                # Text as version_label is: YAML reads `name: 123` as a number, which the
                # model refused as "not a valid string".
                name = name or text(data.get("name"))
                if not name:
                    _fail(f"{file} has no name; pass --name")
                result = client.put(
                    name,
                    data["features"],
                    description=description or data.get("description"),
                    labels={**(data.get("labels") or {}), **_labels(label)} or None,
                    depends_on=depends_on or data.get("depends_on") or data.get("depends-on"),
                    version_label=version_label or text(data.get("version_label")),
                    created_by=author,
                )
    except CairnError as exc:
        _fail(exc)
    except ValueError as exc:  # the set failed validation before it was sent
        _fail(validation_line(exc))
    if as_json:
        _print_json(result.model_dump(mode="json"))
    else:
        _say_stored(result)


def _check_ttl(ttl: str) -> None:
    """Exit 2 naming --ttl for a duration the service would refuse naming its field ttl."""
    from cairn.models import parse_duration

    try:
        seconds = parse_duration(ttl)
    except ValueError as exc:
        _usage(str(exc), "--ttl")
    if seconds is not None and seconds > INT64_MAX:
        _usage(f"{ttl!r} is more than {INT64_MAX} seconds", "--ttl")


def _say_stored(result: Any) -> None:
    typer.echo(f"{result.name} version {result.version} stored ({result.kind}, etag {result.etag})")


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _put_folder(
    folder: Path, name: str | None, created_by: str | None, url: str | None, as_json: bool
) -> None:
    stored = []
    try:
        with _client(url) as client:
            for result in put_folder(client, folder, name=name, created_by=created_by or _login()):
                stored.append(result.model_dump(mode="json"))
                if not as_json:  # each as it is stored: a failure later leaves these said
                    _say_stored(result)
    except CairnError as exc:
        _fail(exc)
    except ValueError as exc:
        _fail(validation_line(exc))
    if as_json:
        _print_json(stored)
    elif not stored:
        typer.echo(f"{folder}: nothing to store, the set has every version in it")


@app.command()
def get(
    name: Annotated[str, typer.Argument(help="Feature set name.")],
    version: Annotated[
        int | None,
        typer.Option(
            min=1, callback=within_int64, help="A version number (default: latest).", metavar="N"
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The version current at this RFC 3339 time, e.g. 2025-06-16T00:00:00Z.",
            metavar="TIME",
        ),
    ] = None,
    format: Annotated[
        str,
        typer.Option(
            "--format", help="json (values, or a page of rows) or parquet.", metavar="FORMAT"
        ),
    ] = "json",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file instead of standard output.", metavar="FILE"
        ),
    ] = None,
    columns: Annotated[
        str | None, typer.Option(help="Comma-separated columns of a table.", metavar="COLUMNS")
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1, callback=within_int64, help="Rows of a table to fetch.", metavar="ROWS"
        ),
    ] = None,
    url: UrlOption = None,
) -> None:
    """Print a feature set (JSON), or save a table as Parquet with --format parquet -o FILE."""
    if version is not None and as_of is not None:
        _usage("give either --version or --as-of, not both", "--as-of")
    if as_of is not None:
        _check_moment(as_of, "--as-of")
    if format not in ("json", "parquet"):
        _usage(f"{format!r} is not json or parquet", "--format")
    wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    try:
        with _client(url) as client:
            if format == "json":
                found = client.get(name, version=version, as_of=as_of, columns=wanted, limit=limit)
                if output is None:
                    _print_json(found.model_dump(mode="json", exclude_none=True))
                else:
                    _write_json(output, found.model_dump(mode="json", exclude_none=True))
            else:
                if output is None:
                    if sys.stdout.isatty():
                        _fail("Parquet is binary: pass -o FILE (or redirect the output)")
                    target = Path("/dev/stdout")
                else:
                    target = output
                try:
                    client.download(
                        name, target, version=version, as_of=as_of, columns=wanted, limit=limit
                    )
                except NotAcceptable:
                    # The service words it for HTTP (send Accept: application/json); here the
                    # fix is an option.
                    _fail(
                        f"{name} is a set of named values, served as JSON only: "
                        "leave out --format parquet"
                    )
                if output is not None:
                    typer.echo(f"wrote {output} ({output.stat().st_size} bytes)", err=True)
    except CairnError as exc:
        _fail(exc)
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}")


@app.command("list")
def list_sets(
    name: Annotated[str | None, typer.Option(help="Name prefix.", metavar="PREFIX")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="key:value; repeat for AND.", metavar="KEY:VALUE"),
    ] = None,
    q: Annotated[str | None, typer.Option("--q", help="Free text.", metavar="TEXT")] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="Most sets to list.", metavar="N")
    ] = 100,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List feature sets (their latest live versions)."""
    try:
        with _client(url) as client:
            page = client.search(name=name, labels=_labels(label) or None, q=q, limit=limit)
    except CairnError as exc:
        _fail(exc)
    if as_json:
        _print_json(page.model_dump(mode="json"))
        return
    typer.echo(f"{'name':<32} {'version':>7}  {'kind':<6} {'features':>8}  created_at")
    for item in page.items:
        created = item.created_at.strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(
            f"{item.name:<32} {item.version:>7}  {item.kind:<6} {item.feature_count:>8}  {created}"
        )
    shown = len(page.items)
    more = f"; the first {shown} shown, raise --limit for more" if page.total > shown else ""
    typer.echo(f"{counted(page.total, 'feature set')}{more}")


VERSIONS_PAGE = 1000  # the most GET /featuresets/{name}/versions gives at once


@app.command()
def versions(
    name: Annotated[str, typer.Argument(help="Feature set name.")],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List every version of a feature set, newest first, with who created it and when."""
    try:
        with _client(url) as client:
            listing = client.versions(name, limit=VERSIONS_PAGE)
            # A page holds 1,000 versions at most; the command promises every one.
            while listing.next_cursor:
                page = client.versions(name, limit=VERSIONS_PAGE, cursor=listing.next_cursor)
                listing.items.extend(page.items)
                listing.next_cursor = page.next_cursor
    except CairnError as exc:
        _fail(exc)
    if as_json:
        _print_json(listing.model_dump(mode="json"))
        return
    typer.echo(f"{'version':>7}  {'created_at':<20} {'created_by':<20} label / state")
    for item in listing.items:
        state = " ".join(
            part for part in (item.version_label or "", "DELETED" if item.deleted else "") if part
        )
        created = item.created_at.strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{item.version:>7}  {created:<20} {item.created_by or '-':<20} {state}")


@app.command()
def diff(
    name: Annotated[str, typer.Argument(help="Feature set name.")],
    old: Annotated[int, typer.Argument(min=1, callback=within_int64, help="The older version.")],
    new: Annotated[int, typer.Argument(min=1, callback=within_int64, help="The newer version.")],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what changed between two versions: features, dtypes, values, schema, rows."""
    try:
        with _client(url) as client:
            result = client.diff(name, old, new)
    except CairnError as exc:
        _fail(exc)
    if as_json:
        _print_json(result.model_dump(mode="json"))
        return
    typer.echo(f"{name}: version {old} -> {new}")
    for feature in result.added:
        typer.echo(f"  + {feature.name} ({feature.dtype}) = {_show(feature.value)}")
    for feature in result.removed:
        typer.echo(f"  - {feature.name} ({feature.dtype})")
    for change in result.changed:
        before, after = change.old, change.new
        typer.echo(
            f"  ~ {change.name}: {before.dtype} {_show(before.value)} -> "
            f"{after.dtype} {_show(after.value)}"
        )
    if result.columns is not None:
        for column in result.columns.added:
            typer.echo(f"  + column {column.name} ({column.type})")
        for column in result.columns.removed:
            typer.echo(f"  - column {column.name} ({column.type})")
        for col in result.columns.changed:
            typer.echo(f"  ~ column {col.name}: {col.old.type} -> {col.new.type}")
    if result.rows is not None:
        typer.echo(f"  rows: {result.rows.old} -> {result.rows.new} ({result.rows.delta:+d})")
    for key, value in result.labels.added.items():
        typer.echo(f"  + label {key}={value}")
    for key in result.labels.removed:
        typer.echo(f"  - label {key}")
    for key, (before, after) in result.labels.changed.items():
        typer.echo(f"  ~ label {key}: {before} -> {after}")
    for dep in result.depends_on_added:
        typer.echo(f"  + depends on {dep}")
    for dep in result.depends_on_removed:
        typer.echo(f"  - depends on {dep}")
    if not result.data_changed:
        typer.echo("  (same data)")


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="Feature set name.")],
    version: Annotated[
        int, typer.Argument(min=1, callback=within_int64, help="The version to soft-delete.")
    ],
    url: UrlOption = None,
) -> None:
    """Soft-delete one version: it stays listed, marked deleted, and is never latest again."""
    try:
        with _client(url) as client:
            result = client.delete(name, version)
    except CairnError as exc:
        _fail(exc)
    typer.echo(f"{result.name} version {result.version} deleted")


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


@app.command()
def materialize(
    name: Annotated[str, typer.Argument(help="Feature table name.")],
    version: Annotated[
        int | None,
        typer.Option(
            min=1,
            callback=within_int64,
            help="Version to serve (default: the latest); stays until the next write.",
            metavar="N",
        ),
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a feature table's latest row per entity key into the online store now."""
    try:
        with _client(url) as client:
            state = client.materialize(name, version)
    except CairnError as exc:
        _fail(exc)
    if as_json:
        _print_json(state)
    else:
        typer.echo(
            f"{name} version {state['live_version']} is online: {state['key_count']} keys, "
            f"materialized at {state['materialized_at']}"
        )

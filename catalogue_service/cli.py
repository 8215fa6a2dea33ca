"""``cairn assets ...``: search the catalogue, show an asset, its lineage, the tags in use, and
soft-delete an asset, from the shell (the web UI's search and asset pages, as text)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cairn.errors import CairnError, NotFound
from cairn.service_cli import JsonOption, ServiceCommands, key_values, print_json
from cairn.wording import counted, scalar

if TYPE_CHECKING:
    from cairn.models import Asset, Lineage, SearchPage

app = typer.Typer(
    help="Search the catalogue and show its assets and their lineage (CAIRN_CATALOGUE_URL).",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as `cairn --help` (cairn/cli.py says why)
)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", metavar="URL", help="Catalogue base URL (default CAIRN_CATALOGUE_URL)."),
]
# A tags cell longer than this ends in "...": `cairn assets get` shows them all.
TAGS_SHOWN = 40


def _catalogue_client(base_url: str) -> Any:
    from cairn.client import CatalogueClient

    return CatalogueClient(base_url)


def _catalogue_url() -> str:
    from cairn.settings import get_settings  # here: `cairn --help` needs no settings

    return get_settings().catalogue_url


_commands = ServiceCommands(
    "catalogue", "CAIRN_CATALOGUE_URL", "http://127.0.0.1:8001", _catalogue_client, _catalogue_url
)


def _columns(rows: Sequence[Sequence[str]]) -> Iterator[str]:
    """``rows`` (the header first) as lines of left-aligned columns as wide as their widest
    cell; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        yield "  ".join([*cells, row[-1]]).rstrip()


def _clipped(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _when(asset: Asset) -> str:
    return asset.updated_at.strftime("%Y-%m-%d %H:%M") if asset.updated_at else "-"


@app.command()
def search(
    query: Annotated[
        str | None,
        typer.Argument(help="Words to find in names, tags, descriptions and column names."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Name prefix (case-insensitive).", metavar="PREFIX")
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="A tag; repeat for AND.", metavar="TAG")
    ] = None,
    asset_type: Annotated[
        str | None, typer.Option("--type", help="dataset, table, model, ...", metavar="TYPE")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="An owner.", metavar="OWNER")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="key:value; repeat for AND.", metavar="KEY:VALUE"),
    ] = None,
    deleted: Annotated[
        bool, typer.Option("--include-deleted", help="List soft-deleted assets too.")
    ] = False,
    drifted: Annotated[
        bool | None,
        typer.Option(
            "--drifted/--stable",
            help="Only assets whose last profile drifted from the one before (or did not).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=1000, help="Most assets to list.", metavar="N")
    ] = 20,
    cursor: Annotated[
        str | None,
        typer.Option(
            help="Go on after the page that printed it (the same search, same filters).",
            metavar="CURSOR",
        ),
    ] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find assets by words, name, tag, type, owner or label (best matches first); with no
    filter at all, list every asset by name. A page that has more after it ends with the
    --cursor that lists them."""
    labels = key_values(label)
    try:
        with _commands.client(url) as client:
            page = client.search(
                q=query,
                name=name,
                tags=tag,
                type=asset_type,
                labels=labels or None,
                owner=owner,
                include_deleted=deleted,
                limit=limit,
                cursor=cursor,
                drifted=drifted,
            )
    except CairnError as exc:
        _commands.fail(exc)
    if as_json:
        print_json(page.model_dump(mode="json", by_alias=True))
        return
    for line in _search_lines(page, query, paging=cursor is not None):
        typer.echo(line)


def _search_lines(page: SearchPage, query: str | None, paging: bool = False) -> Iterator[str]:
    """``paging``: this page was asked with a cursor, so it is not the first."""
    if page.fuzzy:
        yield f"Nothing matches {query!r}; these match {page.did_you_mean!r}:"
    if not page.items:
        yield "No asset matches." if page.total == 0 else "No asset on this page."
    else:
        rows = [("name", "type", "tags", "updated")]
        rows += [
            (
                a.name + (" (deleted)" if a.deleted else ""),
                a.type,
                _clipped(", ".join(a.tags), TAGS_SHOWN) or "-",
                _when(a),
            )
            for a in page.items
        ]
        yield from _columns(rows)
        shown = len(page.items)
        where = "these" if paging else "the first"
        if page.next_cursor:
            more = f"; {where} {shown} shown, the next with --cursor {page.next_cursor}"
        elif paging:
            more = f"; the last {shown} shown"
        elif page.total > shown:
            more = f"; the first {shown} shown, raise --limit for more"
        else:
            more = ""
        yield f"{counted(page.total, 'asset')}{more}"
    if page.did_you_mean and not page.fuzzy:
        yield f"Did you mean {page.did_you_mean!r}?"


def _find(client: Any, key: str) -> Asset:
    """The asset with id ``key``, else the one named ``key``."""
    try:
        asset: Asset = client.get_asset(key)
        return asset
    except NotFound as exc:
        if _commands.wrong_service(exc):
            raise
    try:
        named: Asset = client.get_asset_by_name(key)
        return named
    except NotFound as exc:
        if _commands.wrong_service(exc):
            raise
        raise NotFound(
            f"No asset has id or name {key!r} (names are case-sensitive); "
            f"`cairn assets search {key}` finds similar ones."
        ) from exc


@app.command()
def get(
    asset: Annotated[str, typer.Argument(help="The asset's id or its name.")],
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one asset: where it is, who owns it, its tags, labels, schema and dependencies."""
    try:
        with _commands.client(url) as client:
            found = _find(client, asset)
    except CairnError as exc:
        _commands.fail(exc)
    if as_json:
        print_json(found.model_dump(mode="json", by_alias=True))
        return
    for line in _asset_lines(found):
        typer.echo(line)


def _asset_lines(asset: Asset) -> Iterator[str]:
    state = ", DELETED" if asset.deleted else ""
    yield f"{asset.name} ({asset.type}, revision {asset.revision}{state})"
    fields: list[tuple[str, str]] = [("id", asset.id)]
    if asset.description:
        fields.append(("description", asset.description))
    if asset.location:
        fields.append(("location", asset.location + (f" ({asset.format})" if asset.format else "")))
    if asset.owners:
        fields.append(("owners", ", ".join(asset.owners)))
    if asset.tags:
        fields.append(("tags", ", ".join(asset.tags)))
    for key, value in asset.labels.items():
        fields.append((f"label {key}", scalar(value)))
    if asset.depends_on:
        fields.append(("depends on", ", ".join(asset.depends_on)))
    if asset.manifest_path:
        fields.append(("manifest", f"{asset.manifest_path} in {asset.volume}"))
    if asset.drift is not None:
        verdict = "drifted: " + ", ".join(asset.drift.columns) if asset.drift.drifted else "stable"
        fields.append(("drift", f"{verdict} (profile {asset.drift.profile_version})"))
    fields.append(("updated", _when(asset)))
    width = max(len(key) for key, _ in fields) + 1
    for key, value in fields:
        yield f"  {key + ':':<{width}} {value}"
    if asset.schema_:
        yield f"  schema, {counted(len(asset.schema_), 'column')}:"
        rows = [
            ("    " + c.name, c.type, "" if c.nullable else "not null", c.description or "")
            for c in asset.schema_
        ]
        yield from _columns(rows)


class Direction(StrEnum):
    up = "up"
    down = "down"
    both = "both"


@app.command()
def lineage(
    asset: Annotated[str, typer.Argument(help="The asset's id or its name.")],
    direction: Annotated[
        Direction,
        typer.Option(
            help="up (what it is made from), down (what uses it) or both.", metavar="DIRECTION"
        ),
    ] = Direction.both,
    depth: Annotated[int, typer.Option(min=1, max=10, help="Steps to follow.", metavar="N")] = 3,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what an asset is made from and what is made from it, as two trees."""
    try:
        with _commands.client(url) as client:
            root = _find(client, asset)
            graph = client.lineage(root.id, direction=direction.value, depth=depth)
    except CairnError as exc:
        _commands.fail(exc)
    if as_json:
        print_json(graph.model_dump(mode="json"))
        return
    for line in _lineage_lines(graph, direction.value):
        typer.echo(line)


def _lineage_lines(graph: Lineage, direction: str) -> Iterator[str]:
    nodes = {node.id: node for node in graph.nodes}
    ups: dict[str, list[tuple[str, str]]] = {}
    downs: dict[str, list[tuple[str, str]]] = {}
    for edge in graph.edges:
        ups.setdefault(edge.target, []).append((edge.source, edge.origin))
        downs.setdefault(edge.source, []).append((edge.target, edge.origin))

    def shown(node_id: str, origin: str) -> str:
        node = nodes.get(node_id)
        if node is None:
            return node_id
        text = node.name + (f" ({node.type})" if node.type else "")
        if node.missing:
            text += ", not in the catalogue"
        elif node.deleted:
            text += ", deleted"
        return text + (f"  [{origin}]" if origin != "manifest" else "")

    def by_name(link: tuple[str, str]) -> str:
        node = nodes.get(link[0])
        return node.name if node else link[0]

    def tree(links: dict[str, list[tuple[str, str]]]) -> Iterator[str]:
        # Breadth first, so each asset is listed once, under a parent on a shortest path from
        # the root (the walk's depth of it); any longer path to it is shown as a reference.
        listed = {graph.root}
        children: dict[str, list[tuple[str, str, bool]]] = {}
        level = [graph.root]
        while level:
            following = []
            for node_id in level:
                for other, origin in sorted(links.get(node_id, ()), key=by_name):
                    again = other in listed
                    children.setdefault(node_id, []).append((other, origin, again))
                    if not again:
                        listed.add(other)
                        following.append(other)
            level = following

        def under(node_id: str, pad: str) -> Iterator[str]:
            for other, origin, again in children.get(node_id, ()):
                yield f"{pad}{shown(other, origin)}{'  (listed on its own line)' if again else ''}"
                if not again:
                    yield from under(other, pad + "  ")

        return under(graph.root, "    ")

    yield shown(graph.root, "manifest")
    for name, links, asked in (
        ("made from", ups, direction in ("up", "both")),
        ("used by", downs, direction in ("down", "both")),
    ):
        if not asked:
            continue
        lines = list(tree(links))
        yield f"  {name}:" if lines else f"  {name}: nothing"
        yield from lines
    if graph.truncated:
        yield "  (the walk stopped at its node limit: ask a smaller --depth for the whole answer)"


@app.command()
def tags(
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Most tags.", metavar="N")] = 50,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the tags in use, most used first, with how many live assets carry each."""
    try:
        with _commands.client(url) as client:
            counts = client.tags(limit)
    except CairnError as exc:
        _commands.fail(exc)
    if as_json:
        print_json([count.model_dump() for count in counts])
        return
    if not counts:
        typer.echo("No asset carries a tag.")
        return
    rows = [("tag", "assets"), *((c.tag, f"{c.count:,}") for c in counts)]
    for line in _columns(rows):
        typer.echo(line)


@app.command()
def delete(
    asset: Annotated[str, typer.Argument(help="The asset's id.")],
    url: UrlOption = None,
) -> None:
    """Soft-delete an asset: it leaves search and lineage, and its name is free again; it stays
    readable by id (marked deleted)."""
    try:
        with _commands.client(url) as client:
            gone = client.delete_asset(asset)
    except CairnError as exc:
        _commands.fail(exc)
    typer.echo(f"{gone.name} (id {gone.id}) deleted, revision {gone.revision}")
    if gone.manifest_path:
        # The crawler pushes a manifest again only when it changes.
        typer.echo(
            f"It was crawled from {gone.manifest_path} in {gone.volume}: a crawl brings it back "
            "when that manifest changes; remove the manifest to keep it gone."
        )

"""The ``cairn`` command line: one entry point for every part of Cairn."""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from typer.core import TyperCommand

from cairn import __version__
from catalogue_service.cli import app as assets_app
from featurestore_service.cli import app as featureset_app
from featurestore_service.features_cli import app as features_app
from featurestore_service.metrics.cli import app as metrics_app

if TYPE_CHECKING:
    import asyncio

    from cairn.colocate import Colocated
    from cairn.settings import Settings

# Settings (pydantic) and httpx are imported where a command needs them: `cairn --help` and
# `cairn crawl --help` should not pay for them.

# httpx imports its own command line (click, pygments, rich's progress and syntax) whenever
# they are installed, as they are here: about 30 ms of CPU in every crawl's start-up, for a
# CLI this process never runs. Blocked as if missing (httpx then defines a stub
# ``httpx.main``); in the ``cairn`` process only, and only before httpx is imported.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


class _Cli(typer.Typer):
    """The ``cairn`` command: a CAIRN_* setting no command can run with is one error line."""

    def __call__(self, *args: object, **kwargs: object) -> object:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            # Imported only on an error: `cairn --help` does not load the settings' pydantic.
            from cairn.settings import SettingsError

            if not isinstance(exc, SettingsError):
                raise
            typer.echo(f"error: {exc}", err=True)
            sys.exit(1)


app = _Cli(
    help="Cairn: a data catalogue and feature store. Crawl manifests beside your data, "
    "search them, serve feature sets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: typer's rich help imports rich's markdown and table rendering first,
    # which cost more CPU than the rest of `cairn crawl --help` together.
    rich_markup_mode=None,
)


# click's exit code for a command line it cannot parse.
USAGE_EXIT = 2


class _CrawlCommand(TyperCommand):
    """``cairn crawl`` exits 2 when some manifests were bad (README), and click exits 2 for a
    command line it cannot parse (an unknown option, an option without its value). A cron job
    reading the code could not tell the two apart; such a command line is one the crawl could
    not run with, so it exits 1, as the crawl's own usage errors (no volume) do."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except Exception as exc:
            # click's usage errors carry their exit code; typer keeps its click private, so
            # they are known by that code rather than by their class.
            if getattr(exc, "exit_code", None) == USAGE_EXIT:
                exc.exit_code = 1  # type: ignore[attr-defined]
            raise


class Service(StrEnum):
    catalogue = "catalogue"
    featurestore = "featurestore"
    ui = "ui"


# service -> (app factory, settings prefix for host and port)
SERVICES = {
    Service.catalogue: ("catalogue_service.app:create_app", "catalogue"),
    Service.featurestore: ("featurestore_service.app:create_app", "featurestore"),
    Service.ui: ("ui.app:create_app", "ui"),
}


def _setup_logging() -> None:
    from cairn.settings import get_settings

    level = get_settings().log_level.upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO; our own logs already say what happened.
    logging.getLogger("httpx").setLevel(logging.WARNING)


# What `cairn up` starts, in order, and what it prints for each.
UP_SERVICES: tuple[Service, ...] = (Service.catalogue, Service.featurestore, Service.ui)
UP_LINKS = {
    Service.catalogue: "/api/v1/assets?q=sales   (API docs at /docs)",
    Service.featurestore: "/api/v1/featuresets   (API docs at /docs)",
    Service.ui: "   <- open this in a browser",
}
# Called with the services' URLs once the example volume is crawled.
UP_SEEDS: list[Callable[[dict[Service, str]], None]] = []


def _seed_featuresets(urls: dict[Service, str]) -> None:
    from featurestore_service.seed import seed_examples

    seed_examples({str(service): url for service, url in urls.items()})


UP_SEEDS.append(_seed_featuresets)


app.add_typer(assets_app, name="assets")
app.add_typer(featureset_app, name="featureset")
app.add_typer(features_app, name="features")
app.add_typer(metrics_app, name="metrics")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cairn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Settings come from CAIRN_* environment variables; see the README."""


@app.command()
def serve(
    service: Annotated[Service, typer.Argument(help="Which service to run.")],
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default from settings).", metavar="HOST")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port (default from settings).", metavar="PORT"),
    ] = None,
) -> None:
    """Run one service in the foreground.

    Defaults: catalogue 127.0.0.1:8001, featurestore 127.0.0.1:8002, ui 127.0.0.1:8080.
    """
    import socket

    import uvicorn

    from cairn.backends import BackendError
    from cairn.http_head import BoundedHttpToolsProtocol
    from cairn.memory import limit_arenas
    from cairn.settings import get_settings

    _setup_logging()
    # Before any thread starts: each would otherwise get (and keep) a malloc arena of its own.
    limit_arenas()
    settings = get_settings()
    target, prefix = SERVICES[service]
    host = host or getattr(settings, f"{prefix}_host")
    port = port or getattr(settings, f"{prefix}_port")
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        # uvicorn would say only "[Errno -2] Name or service not known", and exit 3.
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        typer.echo(
            f"error: cannot listen on {host}:{port}: {reason}; give --host (or "
            f"CAIRN_{prefix.upper()}_HOST) an address or name of this machine",
            err=True,
        )
        raise typer.Exit(1) from None
    module, _, factory = target.partition(":")
    # The app is built here, not by uvicorn, so a missing extra or a wrong CAIRN_BACKEND is one
    # line naming the fix instead of a traceback from inside the server's start-up.
    try:
        service_app = getattr(importlib.import_module(module), factory)()
    except BackendError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    uvicorn.run(
        service_app,
        host=host,
        port=port,
        http=BoundedHttpToolsProtocol,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@app.command(cls=_CrawlCommand)
def crawl(
    volume: Annotated[
        str | None,
        typer.Argument(
            help="A folder, file:// URL, or another volume URL to crawl; or a source: "
            "kafka://broker:9092 (topics) or thrift://metastore:9083 (Hive tables)."
        ),
    ] = None,
    catalogue: Annotated[
        str | None,
        typer.Option(help="Catalogue base URL (default CAIRN_CATALOGUE_URL).", metavar="URL"),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(help="Crawl again on this schedule, e.g. 15m or 1h.", metavar="INTERVAL"),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Crawl again within 2 s of every change (local).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: Annotated[
        Path | None,
        typer.Option(help="A crawl.yaml listing several volumes to crawl.", metavar="FILE"),
    ] = None,
    pattern: Annotated[
        list[str] | None,
        typer.Option(
            help="Manifest file-name glob, or re:<regex>; repeatable "
            "(default: MANIFEST.yaml, MANIFEST.yml, *.cairn.yaml, *.cairn.yml).",
            metavar="PATTERN",
        ),
    ] = None,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile", help="Profile changed Parquet/CSV data and evaluate manifest checks."
        ),
    ] = False,
    fail_on_checks: Annotated[
        bool,
        typer.Option(
            "--fail-on-checks", help="Exit 2 when a manifest check fails (implies --profile)."
        ),
    ] = False,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="Delete the assets of a volume that now holds no file at all or no manifest, "
            "or of a source that now lists no asset (without it, such a crawl fails and keeps "
            "them: an unmounted mount point looks empty, a mistyped --pattern finds nothing).",
        ),
    ] = False,
) -> None:
    """Crawl a volume for manifests and push what changed to the catalogue.

    Sources describe their assets themselves: kafka://b1:9092[,b2:9092] makes each topic a
    stream asset (partitions, replication, retention, configs, a schema from the schema
    registry or from sampled JSON messages); thrift://host:9083 makes each Hive Metastore
    database a database asset and each table a table asset named db.table (columns, partition
    keys, location, format, owner), which depends on its database. Assets that vanish from a
    source are soft-deleted, as with files; a source that cannot be reached fails the crawl
    and keeps what was there.

    Exit codes: 0 clean, 2 when some manifests were bad (or a check failed with
    --fail-on-checks), 1 when the crawl could not run (a command line it cannot parse too),
    130 when interrupted (Ctrl-C; the next crawl re-sends what this one may not have landed).
    With --every or --watch, Ctrl-C between two crawls stops the schedule with 0.
    """
    from cairn.settings import get_settings
    from crawler import runner

    # The crawler reads its settings from the environment (cairn/settings.py).
    if profile or fail_on_checks:
        os.environ["CAIRN_CRAWL_PROFILES"] = "true"
    if fail_on_checks:
        os.environ["CAIRN_CRAWL_FAIL_ON_CHECKS"] = "true"
    if allow_empty:
        os.environ["CAIRN_CRAWL_ALLOW_EMPTY"] = "true"
    get_settings.cache_clear()
    _setup_logging()
    code = runner.run_cli(
        volume=volume,
        catalogue=catalogue,
        every=every,
        watch=watch,
        as_json=as_json,
        config=config,
        patterns=pattern,
    )
    # The report is out and everything the crawl opened is closed: what is left is the
    # interpreter's exit, whose last collections scan every object still alive (the imports:
    # pydantic's, httpx's...), 50 ms of every crawl, a fifth of an empty folder's crawl.
    # Frozen, they are skipped; atexit handlers and module teardown still run.
    gc.freeze()
    raise typer.Exit(code)


@app.command()
def snapshot(
    url: Annotated[
        str,
        typer.Argument(
            help="A dataset's folder (holding its manifest) or its manifest, as a path or a "
            "volume URL (file://, s3://, hdfs://, abfss://)."
        ),
    ],
    pattern: Annotated[
        list[str] | None,
        typer.Option(
            help="Manifest file-name glob, or re:<regex>; repeatable "
            "(default: CAIRN_MANIFEST_PATTERNS).",
            metavar="PATTERN",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Hash and report, but leave the manifest unchanged."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Record the SHA-256 of a dataset's files as a new version in its manifest.

    Hashes every file of the dataset (the manifest's location, else its folder) and, when the
    content differs from the latest snapshot, adds versions.v<N+1> with the digest, the time,
    the size and each file's hash; an unchanged dataset adds nothing. Writes the manifest
    back whole on every volume kind (readers see the old file or the new). Exit codes: 0 done
    (or nothing changed), 1 when the dataset or its manifest could not be read or written.
    """
    from cairn.settings import get_settings
    from crawler.snapshot import SnapshotError, take_snapshot

    _setup_logging()
    settings = get_settings()
    try:
        snap = take_snapshot(url, pattern or settings.manifest_patterns, write=not dry_run)
    except SnapshotError as exc:
        typer.echo(f"snapshot: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(orjson.dumps(snap.to_dict()).decode())
        return
    size = f"{len(snap.files)} files, {snap.bytes} bytes"
    if not snap.added:
        typer.echo(f"{snap.manifest_url}: unchanged since {snap.version} ({size}); nothing added")
    elif snap.written:
        typer.echo(f"{snap.manifest_url}: added {snap.version} sha256:{snap.digest} ({size})")
    else:
        typer.echo(
            f"{snap.manifest_url}: would add {snap.version} sha256:{snap.digest} ({size}); "
            "dry run, nothing written"
        )


@app.command()
def reindex() -> None:
    """Rebuild the catalogue's search index from its stored assets, with a progress bar.

    On the mongo backend this fills a new Elasticsearch index from MongoDB and then points
    the alias at it in one step, so searches keep working meanwhile; on the embedded backend
    it rebuilds the FTS5 and filter tables in one transaction. Safe while services run.
    Exit codes: 0 done, 1 when the store or the index cannot be reached.
    """
    import asyncio

    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from cairn.errors import CairnError
    from cairn.settings import get_settings
    from catalogue_service.backends import create_store

    _setup_logging()
    settings = get_settings()
    err = Console(stderr=True)
    if settings.backend == "sqlite" and not settings.catalogue_db.is_file():
        # Opening would create an empty catalogue: almost always a command run from the
        # wrong folder, which must not leave a stray .cairn behind.
        err.print(
            f"reindex: no catalogue at {settings.catalogue_db}; run it from the folder that "
            "holds the catalogue's data (.cairn), or set CAIRN_DATA_DIR to that folder",
            markup=False,
            highlight=False,
            soft_wrap=True,  # a path broken over two lines cannot be copied
        )
        raise typer.Exit(1)

    async def run(bar: Progress) -> int:
        store = create_store(settings)
        task = bar.add_task("reindexing assets", total=None)
        await store.open()
        try:
            return await store.reindex(
                lambda done, total: bar.update(task, completed=done, total=total)
            )
        finally:
            await store.close()

    started = time.monotonic()
    columns = (BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        # Off when stderr is not a terminal: a transient bar still ends with an empty line.
        with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as bar:
            count = asyncio.run(run(bar))
    except (CairnError, OSError, RuntimeError) as exc:
        # escape: the message may hold an install hint, cairn[mongo], that is not markup
        err.print(f"[red]reindex failed:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    except Exception as exc:  # a driver's own error type (pymongo, elasticsearch)
        err.print(
            f"[red]reindex failed ({type(exc).__name__}):[/red] {escape(str(exc))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from exc
    typer.echo(
        f"Reindexed {count} assets on the {settings.backend} backend "
        f"in {time.monotonic() - started:.1f}s."
    )


@app.command()
def up(
    lake: Annotated[
        Path, typer.Option(help="Volume to crawl once the services are up.", metavar="DIR")
    ] = Path("examples/lake"),
    crawl_examples: Annotated[
        bool,
        typer.Option(
            "--crawl/--no-crawl",
            help="Crawl the volume, then seed the example feature sets; --no-crawl starts "
            "the services with neither.",
        ),
    ] = True,
) -> None:
    """Start every service on the embedded backend, crawl the example volume and seed the
    example feature sets.

    The catalogue, the feature store and the UI run in this one process, each on its own
    port (log lines name their service); `cairn serve SERVICE` runs one service alone.
    Runs until Ctrl-C; data lives in CAIRN_DATA_DIR (./.cairn by default).
    """
    import asyncio

    from cairn.memory import limit_arenas
    from cairn.settings import get_settings

    _setup_logging()
    _label_logs_by_service()
    # Before any thread starts: each would otherwise get (and keep) a malloc arena of its own.
    limit_arenas()
    settings = get_settings()
    urls = {service: service_url(settings, service) for service in SERVICES}
    # The services (and the crawl child) see each other at the addresses this command gives.
    os.environ["CAIRN_CATALOGUE_URL"] = urls[Service.catalogue]
    os.environ["CAIRN_FEATURESTORE_URL"] = urls[Service.featurestore]
    get_settings.cache_clear()
    if crawl_examples and not lake.is_dir():
        typer.echo(
            f"error: {lake} is not a folder; run from the repository root, pass --lake PATH, "
            "or --no-crawl to start without example data",
            err=True,
        )
        raise typer.Exit(1)
    code = asyncio.run(_up(urls, lake if crawl_examples else None))
    if code:
        raise typer.Exit(code)


def _label_logs_by_service() -> None:
    """`cairn up`'s log lines say which service wrote them: they share one process."""
    from cairn.colocate import ServiceField

    for handler in logging.getLogger().handlers:
        handler.addFilter(ServiceField())
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(service)s] %(name)s: %(message)s")
        )


async def _up(urls: dict[Service, str], lake: Path | None) -> int:
    """Serves every service until SIGINT or SIGTERM; the exit code."""
    import asyncio

    from cairn.backends import BackendError
    from cairn.colocate import Colocated, StartFailed
    from cairn.memory import trim_while_running
    from cairn.settings import get_settings

    settings = get_settings()
    group = Colocated()
    stopping = asyncio.Event()

    def on_signal() -> None:
        # A second Ctrl-C stops without waiting for open requests, as uvicorn alone does.
        group.stop(force=stopping.is_set())
        stopping.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    # Three services' transient peaks (a bulk ingest, a table's profile, an Arrow stream) share
    # this heap: what they free goes back to the system instead of staying with the process.
    trimming = asyncio.create_task(trim_while_running(), name="heap-trim")
    try:
        for service in UP_SERVICES:
            target, prefix = SERVICES[service]
            module, _, factory = target.partition(":")
            try:
                service_app = getattr(importlib.import_module(module), factory)(settings)
                await group.start(
                    service,
                    service_app,
                    getattr(settings, f"{prefix}_host"),
                    getattr(settings, f"{prefix}_port"),
                    settings.log_level.lower(),
                )
                await _until_ready(urls[service], group, service)
            except (StartFailed, BackendError) as exc:
                if stopping.is_set():
                    return 0  # Ctrl-C (or SIGTERM) while it started: a stop, not a failure
                typer.echo(f"error: {exc}", err=True)
                return 1
            typer.echo(f"{service} ready at {urls[service]}")
            if stopping.is_set():
                return 0
        if lake is not None:
            code = await _crawl_child(str(lake), urls, stopping)
            if code is not None:
                return code
        typer.echo("")
        typer.echo("Cairn is up:")
        for service in UP_SERVICES:
            typer.echo(f"  {service:<13} {urls[service]}{UP_LINKS[service]}")
        if sys.prefix != sys.base_prefix:  # run from a virtual environment, as `make up` does
            activate = Path(sys.prefix) / "bin" / "activate"
            with contextlib.suppress(ValueError):
                activate = activate.relative_to(Path.cwd())
            typer.echo(f"In another terminal, `source {activate}` puts `cairn` on your PATH.")
        typer.echo("Press Ctrl-C to stop.")
        waiting = asyncio.create_task(stopping.wait())
        exiting = asyncio.create_task(group.wait_any_exit())
        await asyncio.wait([waiting, exiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        exiting.cancel()
        if not stopping.is_set() and (name := group.exited()) is not None:
            typer.echo(f"error: the {name} service stopped", err=True)
            return 1
        return 0
    finally:
        trimming.cancel()
        await group.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _until_ready(base_url: str, group: Colocated, name: str, timeout: float = 60) -> None:
    import asyncio

    import httpx

    from cairn.colocate import StartFailed

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=1) as client:
        while time.monotonic() < deadline:
            # Any service: a Ctrl-C while this one starts stops the ones started before it
            # first, and this one's /readyz would then be polled on until the deadline.
            if (exited := group.exited()) is not None:
                during = "starting" if exited == name else f"the {name} service started"
                raise StartFailed(f"the {exited} service stopped while {during}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{base_url}/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise StartFailed(f"the {name} service was not ready after {timeout:.0f}s")


async def _crawl_child(lake: str, urls: dict[Service, str], stopping: asyncio.Event) -> int | None:
    """Crawls the example volume and seeds the feature sets in a child process while this one
    serves; an exit code when `cairn up` must end (the crawl failed, or a signal came)."""
    import asyncio

    # In a child: the crawl's parsing would hold up the services' event loop here, and what it
    # allocates goes back to the system when it ends.
    crawl = multiprocessing.get_context("spawn").Process(
        target=_crawl_and_seed, args=(lake, urls), name="cairn-up-crawl"
    )
    crawl.start()
    joined = asyncio.create_task(asyncio.to_thread(crawl.join))
    waiting = asyncio.create_task(stopping.wait())
    await asyncio.wait([joined, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if not joined.done():
        crawl.terminate()
        await joined
        return 0
    if crawl.exitcode != 0:
        return 1
    return None


def _crawl_and_seed(lake: str, urls: dict[Service, str]) -> None:
    """``cairn up``'s crawl of the example volume and its seeding, run in a child process;
    exits with 1 when the crawl failed."""
    import threading

    from crawler import runner
    from crawler.pipeline import exit_once_ended

    # `cairn up` killed with SIGKILL (or by the out-of-memory killer) cannot stop this child:
    # it would crawl on and retry pushes to services that are gone.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=exit_once_ended, args=(parent.sentinel,), name="cairn-up-gone", daemon=True
        ).start()
    # Ctrl-C reaches this child too; stopping it is `cairn up`'s job (it terminates the child
    # when it stops), and a KeyboardInterrupt here printed a traceback among its lines.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _setup_logging()
    if runner.run_cli(volume=lake, catalogue=urls[Service.catalogue]) == 1:
        sys.exit(1)
    for seed in UP_SEEDS:
        seed(urls)


def service_url(settings: Settings, service: Service) -> str:
    prefix = SERVICES[service][1]
    return f"http://{getattr(settings, f'{prefix}_host')}:{getattr(settings, f'{prefix}_port')}"


def _dump(data: object) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()

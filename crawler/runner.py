"""What ``cairn crawl`` does around a crawl: modes, progress bar, report and exit code."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import orjson

from cairn.interrupt import ctrl_c_ends_process
from cairn.settings import get_settings
from cairn.wording import counted
from connectors import VolumeError, redact_url
from crawler.config import ConfigError, CrawlConfig, VolumeConfig, load_config, parse_duration
from crawler.crawl import Crawler, CrawlFailed, CrawlReport, NamePatterns, PatternError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

log = logging.getLogger("cairn.crawler")

EXIT_OK, EXIT_FAILED, EXIT_BAD_MANIFESTS = 0, 1, 2
# From least to most serious (README, crawling): a volume that could not be crawled at all
# outweighs another one's bad manifests, though its code is the smaller number.
_SEVERITY = (EXIT_OK, EXIT_BAD_MANIFESTS, EXIT_FAILED)


def _worse_exit(a: int, b: int) -> int:
    """The more serious of two crawl exit codes."""
    return max(a, b, key=_SEVERITY.index)


MAX_LISTED = 50
INTERRUPTED = (
    "crawl interrupted (Ctrl-C): stopped at once. What it pushed is in the catalogue; "
    "the next crawl of this volume does the rest."
)


def run_cli(
    *,
    volume: str | None,
    catalogue: str | None = None,
    every: str | None = None,
    watch: bool = False,
    as_json: bool = False,
    config: Path | None = None,
    patterns: list[str] | None = None,
) -> int:
    err, out = consoles()
    if (volume is None) == (config is None):
        err.print("error: give either a volume to crawl or --config FILE (see cairn crawl --help)")
        return EXIT_FAILED
    clash = _clashing_options(config is not None, every, watch, patterns)
    if clash:
        err.print(f"error: {clash}")
        return EXIT_FAILED
    try:
        if config is not None:
            loaded = load_config(config)
            _check_patterns(loaded.volumes)
            return _run_config(loaded, catalogue, as_json, out, err)
        interval = parse_duration(every) if every else None
        assert volume is not None
        spec = VolumeConfig(root=volume, patterns=patterns, catalogue_endpoint=catalogue)
        _check_patterns([spec])
    except (ConfigError, PatternError) as exc:
        err.print(f"error: {exc}")
        return EXIT_FAILED
    if watch:
        if "://" in volume and not volume.startswith("file://"):
            err.print(
                "error: --watch needs a local folder; for remote volumes and sources "
                "use --every 15m"
            )
            return EXIT_FAILED
        return _run_forever(spec, None, as_json, out, err, watch=True)
    if interval is not None:
        spec.schedule = every
        return _run_forever(spec, interval, as_json, out, err, watch=False)
    return _crawl_once(spec, as_json, out, err)


def _clashing_options(
    with_config: bool, every: str | None, watch: bool, patterns: list[str] | None
) -> str | None:
    """What is wrong with options that cannot go together (each was silently dropped)."""
    if with_config:
        given = [
            name
            for name, on in (("--pattern", patterns), ("--every", every), ("--watch", watch))
            if on
        ]
        if given:
            return (
                f"{' and '.join(given)} cannot be used with --config: give each volume's "
                "patterns and schedule in the file (patterns:, schedule:)"
            )
    if watch and every:
        return "--watch and --every cannot be used together: pick one"
    return None


def _check_patterns(specs: list[VolumeConfig]) -> None:
    """A ``PatternError`` for the first unusable manifest pattern, before anything is crawled
    (a scheduled crawl would otherwise fail on it at every run)."""
    default = get_settings().manifest_patterns
    for spec in specs:
        NamePatterns(spec.name_patterns(default))


def consoles() -> tuple[Console, Console]:
    """(stderr, stdout) consoles that print text as it is.

    Reports carry user text (paths, names, values, install hints such as ``cairn[hdfs]``);
    Rich markup would read ``[bold]`` in a path as a style, or ``[/]`` as an error.
    """
    return cast("Console", _LazyConsole(stderr=True)), cast("Console", _LazyConsole(stderr=False))


class _LazyConsole:
    """A Rich console made when first used: ``cairn crawl --json`` only writes one line of
    JSON to the file, and importing Rich was 14 ms of CPU of its start-up."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._console: Console | None = None

    @property
    def file(self) -> IO[str]:
        # What Console(file=None).file is: the stream as it is now, not as it was at start.
        if self._console is not None:
            return self._console.file
        return sys.stderr if self._stderr else sys.stdout

    @property
    def real(self) -> Console:
        if self._console is None:
            from rich.console import Console

            # soft_wrap: lines are not broken at the terminal's width, so paths stay whole.
            self._console = Console(
                stderr=self._stderr, markup=False, highlight=False, soft_wrap=True
            )
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def write_json(out: Console, data: object) -> None:
    """One JSON document on one line, straight to the console's file: no Rich rendering."""
    out.file.write(orjson.dumps(data).decode() + "\n")
    out.file.flush()


def _crawler(
    spec: VolumeConfig, progress: Callable[[str, int, int | None], None] | None
) -> Crawler:
    settings = get_settings()
    return Crawler(
        settings,
        catalogue_url=spec.catalogue_endpoint,
        patterns=spec.name_patterns(settings.manifest_patterns),
        progress=progress,
    )


def _crawl_once(spec: VolumeConfig, as_json: bool, out: Console, err: Console) -> int:
    try:
        # Nothing a crawl writes needs unwinding to stay whole: each push is one transaction
        # in the catalogue; the crawl state marks a batch unsettled before it is sent and
        # saves it once answered, each in a transaction of its own (crawler/state.py), so
        # the next crawl re-sends what this one may not have landed; the lock on the state
        # ends with the process, and so do the workers (pipeline._die_with_parent).
        with ctrl_c_ends_process(INTERRUPTED):
            if not as_json and err.is_terminal:
                report = _with_progress(spec, err)
            else:
                report = _crawler(spec, None).crawl(spec.root)
    except CrawlFailed as exc:
        if as_json:
            # The volume too: with --config, one failed volume among several reports.
            write_json(
                out, {"volume": redact_url(spec.root), "error": str(exc), "exit_code": EXIT_FAILED}
            )
        else:
            err.print(f"error: crawl of {redact_url(spec.root)} could not run: {exc}")
        return EXIT_FAILED
    show_report(report, as_json, out)
    return report.exit_code


def _with_progress(spec: VolumeConfig, err: Console) -> CrawlReport:
    # Only a crawl on a terminal draws a bar: --json and cron runs skip importing it.
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        TextColumn("{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    console = err.real if isinstance(err, _LazyConsole) else err
    with Progress(*columns, console=console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int | None) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        return _crawler(spec, progress).crawl(spec.root)


def show_report(report: CrawlReport, as_json: bool, out: Console) -> None:
    if as_json:
        write_json(out, report.to_dict())
        return
    if report.kind == "source":
        out.print(
            f"Crawled {report.volume} in {report.duration_s:.2f}s: "
            f"{counted(report.documents, 'asset')}",
            soft_wrap=True,
        )
    else:
        out.print(
            f"Crawled {report.volume} in {report.duration_s:.2f}s: "
            f"{counted(report.files_seen, 'file')}, {_manifests(report)}, "
            f"{counted(report.documents, 'asset')}",
            soft_wrap=True,
        )
    out.print(
        f"  created {report.created:,}, updated {report.updated:,}, deleted {report.deleted:,}, "
        f"unchanged {report.unchanged:,}, failed {report.failed:,}"
        + (f", manifest errors {report.manifest_errors:,}" if report.manifest_errors else ""),
        soft_wrap=True,
    )
    for label, problems in (("error", report.errors), ("warning", report.warnings)):
        for problem in problems[:MAX_LISTED]:
            out.print(f"  {label}: {problem}", soft_wrap=True)
        if len(problems) > MAX_LISTED:
            out.print(f"  ... and {len(problems) - MAX_LISTED} more {label}s (use --json)")


def _manifests(report: CrawlReport) -> str:
    """How many manifests, and how many had to be read because they are new or changed (not
    those read again only to report their errors, unchanged since)."""
    found, parsed = report.manifests_found, report.manifests_parsed
    text = counted(found, "manifest")
    if parsed == found and not report.manifests_rechecked:
        return text
    read = parsed - report.manifests_rechecked
    return f"{text} ({read:,} new or changed)" if read else f"{text} (none changed)"


def _run_forever(
    spec: VolumeConfig,
    interval: float | None,
    as_json: bool,
    out: Console,
    err: Console,
    *,
    watch: bool,
) -> int:
    from crawler.watch import WatchError, run_every
    from crawler.watch import watch as watch_tree

    stop = threading.Event()

    def job() -> None:
        try:
            # As a one-off crawl (_crawl_once): Ctrl-C during a crawl ends it at once (130);
            # between crawls it stops the schedule (0).
            with ctrl_c_ends_process(INTERRUPTED):
                report = _crawler(spec, None).crawl(spec.root)
        except CrawlFailed as exc:
            err.print(f"error: {exc}")
            return
        show_report(report, as_json, out)

    try:
        if watch:
            try:
                root = _watched_root(spec.root)
            except VolumeError as exc:
                err.print(f"error: cannot watch {redact_url(spec.root)}: {exc}")
                return EXIT_FAILED
            err.print(f"watching {root} for changes (Ctrl-C to stop)")
            # The crawl's own state (and a `cairn up` catalogue's files) may live inside the
            # volume (./.cairn when crawling "."): their writes are no change to crawl.
            watch_tree(root, job, stop, ignore=[get_settings().data_dir])
        else:
            assert interval is not None
            err.print(f"crawling {redact_url(spec.root)} every {spec.schedule} (Ctrl-C to stop)")
            run_every(interval, job, stop, start_now=spec.start_now)
    except WatchError as exc:
        err.print(f"error: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        stop.set()
    return EXIT_OK


def _watched_root(root: str) -> Path:
    """The real path of a local volume's root (a folder or a file:// URL, unquoted), as the
    crawl opens it; VolumeError saying why when it cannot be opened."""
    from connectors import open_volume
    from connectors.local import LocalVolume

    volume = open_volume(root)
    volume.close()  # nothing is held: the root's path is all that is needed
    assert isinstance(volume, LocalVolume)  # run_cli refused the other kinds
    return Path(volume.root)


def _run_config(
    config: CrawlConfig, catalogue: str | None, as_json: bool, out: Console, err: Console
) -> int:
    """One-shot volumes are crawled in turn; scheduled ones then run until Ctrl-C."""
    from crawler.watch import run_every

    worst = EXIT_OK
    scheduled = []
    for spec in config.volumes:
        if catalogue:
            spec.catalogue_endpoint = catalogue
        if spec.interval is None:
            worst = _worse_exit(worst, _crawl_once(spec, as_json, out, err))
        else:
            scheduled.append(spec)
    if not scheduled:
        return worst
    stop = threading.Event()
    threads = []
    for spec in scheduled:

        def job(spec: VolumeConfig = spec) -> None:
            _crawl_once(spec, as_json, out, err)

        err.print(f"crawling {redact_url(spec.root)} every {spec.schedule}")
        t = threading.Thread(
            target=run_every, args=(spec.interval, job, stop, spec.start_now), daemon=True
        )
        t.start()
        threads.append(t)
    try:
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.5)
    except KeyboardInterrupt:
        stop.set()
    return worst

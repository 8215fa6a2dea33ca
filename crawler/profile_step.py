"""The crawl's profile step: a column profile and the declared checks of each changed asset's
data file, sent to the metric store (``CAIRN_CRAWL_PROFILES``), and each asset's drift verdict
sent to the catalogue (``PUT /api/v1/assets/{id}/drift``: a search facet).

Profiling runs off the crawl's own thread: ``ProfileStep.submit`` hands each file to a bounded
pool of threads (``CAIRN_CRAWL_PROFILE_WORKERS``; at most twice as many files wait, so a big
crawl waits for the pool rather than holding every sample), and the crawl goes on pushing its
assets meanwhile. ``finish`` (the end of the ``with`` block, once the assets are pushed) waits
for the profiles, reports their problems in order, and sends the drift verdicts: the catalogue
must hold an asset before its flag. Reading Parquet and computing statistics happen in Arrow
and NumPy, which let go of the interpreter lock, so the threads use the other cores.

Profiles live in the feature store's metric store, reached over HTTP, rather than in the
catalogue: one store keeps every profile with its sketches (drift compares distributions, not
summaries), on both backends, and the catalogue stays an index of metadata. Only assets this
crawl upserted are looked at (an unchanged manifest with unchanged data is never parsed), and
those whose profile an earlier crawl owes (the crawl state's ``profiles_owed``: its profile
step was stopped, a store did not take the profile or the drift flag, or it ran with profiles
off, see CrawlState.owe_untracked_profiles); the metric store
skips a file whose size and mtime it has seen: an unchanged file is not profiled again.
``settled`` names, once the step finished, the assets that owe nothing any more. Problems are
warnings: a file that cannot be profiled, or a metric store that does not answer, never stops
the crawl; failed checks are warnings with field ``checks.<name>``, or errors (exit code 2)
with ``cairn crawl --fail-on-checks``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import ValidationError

from cairn import __version__
from cairn.cli_errors import key_hint
from cairn.models import Check
from cairn.settings import Settings
from connectors import VolumeError
from connectors.base import Entry, Volume
from crawler.crawl import _GLOB_CHAR, glob_regex
from crawler.enrich import csv_dialect
from crawler.problems import Problem, Severity
from featurestore_service.metrics.checks import evaluate
from featurestore_service.metrics.profile import profile_csv, profile_parquet

log = logging.getLogger("cairn.crawler.profile")

PARQUET = (".parquet", ".parq")
CSV_HEAD_BYTES = 64 * 1024  # what a CSV's delimiter is sniffed from, as for its schema
CSV = (".csv", ".tsv")
CHECKS_FIELD = "checks"


# Answers to a profile's PUT that no other file would get otherwise: a key is wanted, or the
# URL serves no metric store (another service's 404 or 405).
_NOT_A_STORE = (401, 403, 404, 405)


def _refused_for_good(status: int) -> bool:
    """Whether the metric store (or the catalogue, for a drift flag) would refuse this file's
    profile again until the data changes (413 too large, 422 not valid): the asset is then
    settled, or every later crawl would re-read, re-send and re-warn an unchanged file. A
    timeout or a rate limit (408, 429), a conflict (409: both services answer it to writes
    that raced, saying to retry), a server error, or an answer ``_NOT_A_STORE`` may pass on
    a later try: those stay owed."""
    return 400 <= status < 500 and status not in (*_NOT_A_STORE, 408, 409, 429)


def _detail(answer: httpx.Response) -> str:
    """A problem answer's ``detail`` (the rest of its JSON says nothing more), else its text."""
    try:
        found = answer.json().get("detail")
    except (ValueError, AttributeError):
        found = None
    return str(found) if found else answer.text[:300]


def _relative(volume: Volume, location: Any) -> str | None:
    if not isinstance(location, str):
        return None
    root = volume.url_for("").rstrip("/") + "/"
    if not location.startswith(root):
        return None
    return location[len(root) :].strip("/")


def _data_entry(tree: Any, rel: str, data_format: str | None) -> Entry | None:
    base = rel.rpartition("/")[0]
    for f in tree.files_by_dir.get(base, ()):
        if f.path == rel:
            return f
    # The file the asset's schema was read from: of its format, not an old export beside it.
    found: Entry | None = tree.first_data_file_below(rel, data_format)
    if found is None and _GLOB_CHAR.search(rel):
        found = _first_glob_match(tree, rel)
    return found


def _first_glob_match(tree: Any, rel: str) -> Entry | None:
    """The first data file, in path order, that a globbed location (``part-*.parquet``)
    matches: the file profiled for it, as the first one below a folder location is."""
    segments = rel.split("/")
    at = next(i for i, seg in enumerate(segments) if _GLOB_CHAR.search(seg))
    base = "/".join(segments[:at])
    pattern = glob_regex(segments[at:])
    matched = (
        f
        for d in tree.dirs_below(base)
        for f in tree.files_by_dir.get(d, ())
        if f.path.lower().endswith(PARQUET + CSV)
        and pattern.fullmatch(f.path[len(base) + 1 :] if base else f.path)
    )
    return min(matched, key=lambda f: f.path, default=None)


def _position(volume: Volume, doc: dict[str, Any], field: str) -> tuple[int | None, int | None]:
    """The line and column of ``field`` in the manifest document of asset ``doc`` (found by
    its name), read again for a problem about it; (None, None) if it cannot be read."""
    from crawler.manifest import MAX_MANIFEST_BYTES, field_position

    path = doc.get("manifest_path")
    if not path:
        return None, None
    try:
        data = volume.read(path, MAX_MANIFEST_BYTES)
    except VolumeError:
        return None, None
    found = field_position(data, field, name=doc.get("name"))
    return found if found is not None else (None, None)


def _checks(doc: dict[str, Any], report: Any, strict: bool, volume: Volume) -> list[Check]:
    """The manifest's valid checks; each invalid one is reported naming its field and line: a
    warning, or with ``strict`` (--fail-on-checks) an error, since a check that cannot be
    evaluated (or can never pass) must not let a gated crawl through."""
    declared = (doc.get("extra") or {}).get("checks")
    if declared is None:
        return []
    path = doc.get("manifest_path", "")
    severity: Severity = "error" if strict else "warning"
    found = report.errors if strict else report.warnings
    if not isinstance(declared, list):
        line, column = _position(volume, doc, CHECKS_FIELD)
        found.append(
            Problem(
                path=path,
                line=line,
                column=column,
                field=CHECKS_FIELD,
                reason="checks must be a list",
                severity=severity,
            )
        )
        return []
    valid = []
    for index, item in enumerate(declared):
        try:
            valid.append(Check.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in (index, *first["loc"]))
            line, column = _position(volume, doc, f"{CHECKS_FIELD}.{where}")
            found.append(
                Problem(
                    path=path,
                    line=line,
                    column=column,
                    field=f"{CHECKS_FIELD}.{where}",
                    reason=f"check not evaluated: {first['msg']}",
                    severity=severity,
                )
            )
    return valid


def _check_index(doc: dict[str, Any], label: str) -> int | str:
    """The position in the manifest's ``checks`` of the check whose result is ``label``
    (``row_count``, ``range(amount)``); ``label`` itself when none is."""
    declared = (doc.get("extra") or {}).get("checks")
    for index, item in enumerate(declared if isinstance(declared, list) else ()):
        try:
            if Check.model_validate(item).label() == label:
                return index
        except ValidationError:
            continue
    return label


@dataclass(slots=True)
class Outcome:
    """What profiling one asset's file came to, reported by the crawl's own thread."""

    asset_id: str
    problems: list[Problem] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)  # failed checks under --fail-on-checks
    flag: dict[str, Any] | None = None  # the drift verdict for the catalogue
    unreachable: bool = False  # the metric store did not answer
    # The metric store holds this file's profile (or its failure) with the checks' results,
    # or refused it for good: once the flag, if any, is in the catalogue too, the asset owes
    # nothing.
    delivered: bool = False


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"user-agent": f"cairn-crawler/{__version__}", "content-type": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def _flag(version: int, drift: dict[str, Any] | None) -> dict[str, Any] | None:
    """The catalogue's DriftFlag from a profile's drift; None for a first profile."""
    if not drift or drift.get("against") is None:
        return None
    return {
        "drifted": bool(drift.get("drifted")),
        "columns": list(drift.get("drifted_columns") or []),
        "profile_version": version,
        "against": drift["against"],
    }


def _data_at_fault(exc: BaseException) -> bool:
    """Whether a failed read says the file itself is bad, so that trying again cannot help.

    Arrow reports unreadable data as ArrowInvalid (a ValueError: a ragged CSV, a bad footer
    length) or as an OSError without an errno (Parquet metadata it cannot decode); a real I/O
    error carries an errno, and the connectors' own errors are not OSErrors at all.
    """
    if isinstance(exc, ValueError):
        return True
    return isinstance(exc, OSError) and exc.errno is None


class ProfileStep:
    """Profiles the data files of upserted assets in a bounded thread pool beside the crawl.

    Use as a context manager around the push: ``submit`` before or while pushing, and the
    block's end waits for the profiles and sends drift flags. ``executor`` may be a thread
    pool the crawl already has (jobs use this step's HTTP clients, so not a process pool);
    without one the step makes its own of ``CAIRN_CRAWL_PROFILE_WORKERS`` threads.
    """

    def __init__(
        self,
        settings: Settings,
        volume: Volume,
        report: Any,
        *,
        catalogue_url: str | None = None,
        api_key: str | None = None,
        executor: Executor | None = None,
    ):
        self.settings = settings
        self.volume = volume
        self.report = report
        workers = settings.crawl_profile_workers
        self._own = executor is None
        self.executor = executor or ThreadPoolExecutor(workers, thread_name_prefix="cairn-profile")
        # Files submitted but not finished: bounded, so the crawl waits rather than piling up.
        self._slots = threading.BoundedSemaphore(2 * workers)
        self._jobs: list[Future[Outcome]] = []
        # Assets that owe no profile any more (see ``settled``).
        self._settled: set[str] = set()
        self._feeders: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._down = threading.Event()  # the metric store did not answer: skip the rest
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        self._store = httpx.Client(headers=_headers(key), timeout=settings.http_timeout)
        self._catalogue = httpx.Client(
            base_url=(catalogue_url or settings.catalogue_url).rstrip("/"),
            headers=_headers(key),
            timeout=settings.http_timeout,
        )
        self._base = settings.featurestore_url.rstrip("/") + "/api/v1/metrics/assets/"

    def __enter__(self) -> ProfileStep:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            self.finish()
        else:  # the crawl failed: its assets may not be in the catalogue; drop what waits
            self._stopping.set()
            with self._lock:
                for job in self._jobs:
                    job.cancel()
            self._close()

    @property
    def settled(self) -> set[str]:
        """Once the step finished: the submitted assets whose profile, checks and drift flag
        the stores took (or refused for good: ``_refused_for_good``), or that have no
        Parquet/CSV file to profile (an owed one whose data file the walk did not see is not
        taken for one). The others still owe theirs (the metric store or the
        catalogue did not answer, or refused for now)."""
        return self._settled

    def submit(self, tree: Any, upserts: list[dict[str, Any]], *, owed: bool = False) -> None:
        """Queues the Parquet/CSV file of each live upserted asset and returns at once: a
        feeder thread hands the files to the pool as its bounded queue has room. ``owed``:
        these assets are unchanged, and sent because an earlier crawl owes their profile."""
        wanted: list[tuple[dict[str, Any], Entry, list[Check], bool]] = []
        for doc in upserts:
            if doc.get("deleted"):
                self._settled.add(doc["id"])
                continue
            rel = _relative(self.volume, doc.get("location"))
            entry = _data_entry(tree, rel, doc.get("format")) if rel is not None else None
            if entry is None and rel is not None and owed:
                # Its manifest is unchanged, so its data was there when it was sent: the walk
                # did not see it this time (a folder it could not list). Still owed; had the
                # data gone from a listing the walk read, the manifest's data key would have
                # changed and the asset been sent afresh, not owed.
                continue
            if entry is None or not entry.path.lower().endswith(PARQUET + CSV):
                self._settled.add(doc["id"])
                continue
            # Invalid ones are reported now.
            checks = _checks(doc, self.report, self.settings.crawl_fail_on_checks, self.volume)
            wanted.append((doc, entry, checks, owed))
        feeder = threading.Thread(
            target=self._feed, args=(wanted,), name="cairn-profile-feeder", daemon=True
        )
        feeder.start()
        self._feeders.append(feeder)

    def _feed(self, wanted: list[tuple[dict[str, Any], Entry, list[Check], bool]]) -> None:
        for doc, entry, checks, owed in wanted:
            self._slots.acquire()
            if self._stopping.is_set():
                self._slots.release()
                return
            try:
                job = self.executor.submit(self._run, doc, entry, checks, owed)
            except RuntimeError:  # the pool shut down: the crawl failed
                self._slots.release()
                return
            job.add_done_callback(lambda _: self._slots.release())
            with self._lock:
                self._jobs.append(job)

    def finish(self) -> None:
        """Waits for every profile, reports problems in submission order, sends drift flags."""
        try:
            for feeder in self._feeders:
                feeder.join()
            flags: list[tuple[str, dict[str, Any]]] = []
            delivered: set[str] = set()
            told = False
            for job in self._jobs:
                outcome = job.result()
                if outcome.delivered:
                    delivered.add(outcome.asset_id)
                if outcome.unreachable and told:
                    continue  # one warning says the metric store is down
                told = told or outcome.unreachable
                self.report.warnings.extend(outcome.problems)
                self.report.errors.extend(outcome.errors)
                if outcome.flag is not None:
                    flags.append((outcome.asset_id, outcome.flag))
            flagged = self._send_flags(flags)
            # An asset whose flag did not land owes it: the next crawl finds its profile in
            # the metric store, unchanged, and sends the verdict from there.
            self._settled |= delivered - ({a for a, _ in flags} - flagged)
        finally:
            self._close()

    def _close(self) -> None:
        for feeder in self._feeders:
            feeder.join()
        if self._own:
            self.executor.shutdown(wait=True, cancel_futures=True)
        self._store.close()
        self._catalogue.close()

    def _send_flags(self, flags: list[tuple[str, dict[str, Any]]]) -> set[str]:
        """Sends the drift flags; returns the assets whose flag the catalogue took or refused
        for good (``_refused_for_good``): those owe it no more."""
        taken: set[str] = set()
        for asset_id, flag in flags:
            url = f"/api/v1/assets/{quote(asset_id, safe='')}/drift"
            try:
                sent = self._catalogue.put(url, content=orjson.dumps(flag))
            except httpx.TransportError as exc:
                self.report.warnings.append(
                    Problem(
                        path=str(self._catalogue.base_url),
                        reason=f"drift flags not sent: the catalogue does not answer ({exc}); "
                        "the next crawl with profiles on sends them",
                        severity="warning",
                    )
                )
                return taken
            if sent.status_code in (401, 403):
                hint = key_hint("authorization" in self._catalogue.headers, "the catalogue")
                self.report.warnings.append(
                    Problem(
                        path=str(self._catalogue.base_url),
                        reason=f"drift flags not sent: the catalogue answered HTTP "
                        f"{sent.status_code}: {hint}",
                        severity="warning",
                    )
                )
                return taken
            if sent.status_code == 200:
                taken.add(asset_id)
                continue
            # Refused for good (a flag the catalogue's model refuses, 422): settled as a
            # profile the metric store refuses is, or every crawl would send and warn it
            # again. A 404 (the asset is not there yet) may pass later: still owed.
            if _refused_for_good(sent.status_code):
                taken.add(asset_id)
                then = "not sent again until the data changes"
            else:
                then = "the next crawl with profiles on sends it again"
            self.report.warnings.append(
                Problem(
                    path=asset_id,
                    reason=f"drift flag refused by the catalogue: HTTP {sent.status_code}: "
                    f"{_detail(sent)}; {then}",
                    severity="warning",
                )
            )
        return taken

    def _run(self, doc: dict[str, Any], entry: Entry, checks: list[Check], owed: bool) -> Outcome:
        outcome = Outcome(doc["id"])
        if self._down.is_set():
            outcome.unreachable = True
            return outcome
        try:
            self._profile_one(doc, entry, checks, owed, outcome)
        except Exception as exc:  # one odd file never stops the crawl
            outcome.problems.append(
                Problem(
                    path=entry.path,
                    reason=f"profile not computed: {type(exc).__name__}: {exc}"[:500],
                    severity="warning",
                )
            )
        return outcome

    def _profile_one(
        self,
        doc: dict[str, Any],
        entry: Entry,
        checks: list[Check],
        owed: bool,
        outcome: Outcome,
    ) -> None:
        settings = self.settings
        url = self._base + quote(doc["id"], safe="")
        fingerprint = f"{entry.path}:{entry.size}:{entry.mtime_ns}"
        try:
            known = self._store.get(url + "/profile")
        except httpx.TransportError as exc:
            self._down.set()
            outcome.unreachable = True
            outcome.problems.append(
                Problem(
                    path=settings.featurestore_url,
                    reason=f"profiles not sent: the metric store does not answer ({exc}); "
                    "the next crawl with profiles on sends them",
                    severity="warning",
                )
            )
            return
        if known.status_code in (401, 403):  # a 404 here: no profile yet
            self._refused(known, outcome)
            return
        if known.status_code == 200:
            record = known.json()
            if record.get("source", {}).get("fingerprint") == fingerprint:
                # Unchanged data: the verdict stands (sent again: the manifest was rewritten).
                outcome.flag = _flag(record["version"], record.get("drift"))
                outcome.delivered = True
                if owed:
                    # The crawl that sent it may have ended before it reported the checks:
                    # a gated crawl must not pass on the strength of a report never made.
                    self._report_checks(doc, entry, record.get("checks") or [], outcome)
                return
        try:
            profile, results = self._read(entry, checks)
        except (ValueError, OSError) as exc:
            if not _data_at_fault(exc):
                raise  # a warning from _run; the asset stays owed, the next crawl tries again
            reason = f"{type(exc).__name__}: {str(exc).strip()}"[:1000]
            outcome.problems.append(
                Problem(
                    path=entry.path,
                    reason=f"profile not computed: {reason}",
                    severity="warning",
                )
            )
            body: dict[str, Any] = {
                "fingerprint": fingerprint,
                "location": doc.get("location"),
                "error": f"{entry.path}: {reason}",
            }
            sent = self._store.put(url + "/profile", content=orjson.dumps(body))
            if sent.status_code in _NOT_A_STORE:
                self._refused(sent, outcome)
            elif sent.status_code in (200, 201):
                outcome.delivered = True
            else:
                self._not_taken(sent, entry, outcome)
            return
        body = {
            "fingerprint": fingerprint,
            "location": doc.get("location"),
            "profile": profile,
            "checks": results,
        }
        sent = self._store.put(url + "/profile", content=orjson.dumps(body))
        if sent.status_code in _NOT_A_STORE:
            self._refused(sent, outcome)
            return
        if sent.status_code not in (200, 201):
            self._not_taken(sent, entry, outcome)
        else:
            outcome.delivered = True
        if sent.status_code == 201:
            stored = sent.json()
            outcome.flag = _flag(
                stored["version"],
                {
                    "drifted": stored.get("drifted"),
                    "drifted_columns": stored.get("drifted_columns"),
                    "against": stored.get("against"),
                },
            )
        self._report_checks(doc, entry, results, outcome)

    def _report_checks(
        self, doc: dict[str, Any], entry: Entry, results: list[dict[str, Any]], outcome: Outcome
    ) -> None:
        strict = self.settings.crawl_fail_on_checks
        for result in results:
            if not result["passed"]:
                line, column = _position(
                    self.volume, doc, f"{CHECKS_FIELD}.{_check_index(doc, result['name'])}"
                )
                (outcome.errors if strict else outcome.problems).append(
                    Problem(
                        path=doc.get("manifest_path", entry.path),
                        line=line,
                        column=column,
                        field=f"{CHECKS_FIELD}.{result['name']}",
                        reason=f"check {result['name']} failed on {entry.path}: observed "
                        f"{result['observed']}; failing sample {result['failing']}",
                        severity="error" if strict else "warning",
                    )
                )

    def _not_taken(self, sent: httpx.Response, entry: Entry, outcome: Outcome) -> None:
        """A profile the metric store did not take: refused for good, the asset is settled
        (``delivered``) and the warning says until when; else it stays owed."""
        if _refused_for_good(sent.status_code):
            outcome.delivered = True
            then = "not sent again until the data changes"
        else:
            then = "the next crawl with profiles on sends it again"
        outcome.problems.append(
            Problem(
                path=entry.path,
                reason=f"profile refused by the metric store: HTTP {sent.status_code}: "
                f"{_detail(sent)}; {then}",
                severity="warning",
            )
        )

    def _refused(self, answer: httpx.Response, outcome: Outcome) -> None:
        """The metric store wants a key this crawl does not have, or there is none at its
        URL: one warning saying which setting to set (not the server's problem JSON once per
        file), and no more tries."""
        self._down.set()
        outcome.unreachable = True
        store = self.settings.featurestore_url
        if answer.status_code in (401, 403):
            hint = key_hint("authorization" in self._store.headers, "the feature store")
        else:
            hint = (
                "there is no metric store API there: set CAIRN_FEATURESTORE_URL to the feature "
                "store's base URL, e.g. http://host:8002"
            )
        outcome.problems.append(
            Problem(
                path=store,
                reason=f"profiles not sent: {store} answered HTTP {answer.status_code}: {hint}",
                severity="warning",
            )
        )

    def _read(
        self, entry: Entry, checks: list[Check]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The file's profile and its checks' results."""
        sample = self.settings.metrics_sample_rows
        with self.volume.open(entry.path) as f:
            if entry.path.lower().endswith(PARQUET):
                profile = profile_parquet(f, sample_rows=sample, seed=entry.size)
                results = []
            else:
                # Read as the schema was: a `;` or tab delimiter, a Latin-1 or UTF-16 file.
                delimiter, encoding = csv_dialect(f.read(CSV_HEAD_BYTES))
                f.seek(0)
                profile, table = profile_csv(
                    f, sample_rows=sample, delimiter=delimiter, encoding=encoding
                )
                results = evaluate(checks, table) if checks else []
        if checks and entry.path.lower().endswith(PARQUET):
            with self.volume.open(entry.path) as f:
                results = evaluate(checks, f)
        return profile, results


def profile_assets(
    settings: Settings, volume: Volume, tree: Any, upserts: list[dict[str, Any]], report: Any
) -> None:
    """The whole step at once, for a caller with nothing to overlap it with."""
    with ProfileStep(settings, volume, report) as step:
        step.submit(tree, upserts)

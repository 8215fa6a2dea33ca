"""One crawl of one volume: walk, parse what changed, enrich, diff, push, report.

Parsing and schema reading are CPU work, so large crawls spread them over processes; the
walk, the diff against the crawl state and the push stay in this process.

The manifest parser, the schema readers and the models behind them are imported where a
manifest is first parsed: a crawl that finds nothing changed never needs them, and they are
most of the CLI's start-up (the worker processes get them preloaded).
"""

from __future__ import annotations

import bisect
import contextlib
import fnmatch
import functools
import gc
import hashlib
import heapq
import logging
import operator
import os
import posixpath
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from cairn.collector import collector_paused
from cairn.ownership import owner_conflict
from cairn.settings import Settings
from cairn.wording import counted
from connectors import (
    LINKED_FOLDER,
    Entry,
    EntryNotFound,
    Volume,
    VolumeError,
    VolumeUnreachable,
    open_volume,
    redact_url,
)
from connectors.base import SHADOWED_OBJECT, FolderListing
from connectors.registry import FOLDERLESS_SCHEMES, url_scheme
from crawler.pipeline import Job, PushThread, Stage, WorkPool, run_jobs
from crawler.problems import Problem, utf8_name_problem
from crawler.push import CataloguePusher, CatalogueUnreachable
from crawler.sources import SourceError, is_source_url, open_source
from crawler.state import UNSETTLED, WITH_ERRORS, CrawlState, ManifestState, StateError

if TYPE_CHECKING:
    from crawler.enrich import Column

log = logging.getLogger("cairn.crawler")

Progress = Callable[[str, int, int | None], None]

# An asset's format -> the file extensions its schema is read from. A table format's data
# files are Parquet; a schema from a file of another format (an old export left beside the
# data) would describe something else.
_PARQUET_FILES = frozenset({"parquet", "parq"})
_SCHEMA_FILES = {
    "parquet": _PARQUET_FILES,
    "delta": _PARQUET_FILES,
    "hudi": _PARQUET_FILES,
    "iceberg": _PARQUET_FILES,
    "csv": frozenset({"csv"}),
    "tsv": frozenset({"tsv"}),
}
CSV_HEAD_BYTES = 64 * 1024
# What is read ahead of a Parquet file's end: the first read of its footer takes this much
# (crawler.enrich._FOOTER_PROBE_BYTES).
FOOTER_AHEAD_BYTES = 64 * 1024
PARALLEL_THRESHOLD = 400  # below this many manifests, process start-up costs more than it saves
# Paths per job sent to a worker process: enough to make the hand-over cheap, few enough that
# the workers start while the walk goes on and finish together.
PARSE_CHUNK = 100
SCHEMA_CHUNK = 50
# How much lower the parsing processes' priority is than the crawler's (see _init_worker).
WORKER_NICE = 10
# Folder listings between two looks for manifests whose assets can be pushed during the walk.
EARLY_EVERY = 16
# Documents in a crawl's first push; each next one doubles, up to crawl_batch_size (_Sender).
FIRST_BATCH = 125


class CrawlFailed(Exception):
    """The crawl could not run at all (volume missing, catalogue unreachable)."""


@dataclass
class CrawlReport:
    volume: str
    started_at: str
    kind: str = "volume"  # or "source": a kafka:// or thrift:// crawl, which has no files
    duration_s: float = 0.0
    files_seen: int = 0
    manifests_found: int = 0
    manifests_parsed: int = 0
    # Of those parsed, unchanged since the last crawl: read again because they had errors.
    manifests_rechecked: int = 0
    documents: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def writes(self) -> int:
        return self.created + self.updated + self.deleted

    @property
    def manifest_errors(self) -> int:
        """Errors of the manifests themselves (and their data and checks): every error that
        is not an asset the catalogue refused (``failed``)."""
        return len(self.errors) - self.failed

    @property
    def exit_code(self) -> int:
        return 2 if self.errors else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "volume": self.volume,
            "kind": self.kind,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "files_seen": self.files_seen,
            "manifests_found": self.manifests_found,
            "manifests_parsed": self.manifests_parsed,
            "manifests_rechecked": self.manifests_rechecked,
            "documents": self.documents,
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "unchanged": self.unchanged,
            "failed": self.failed,
            "manifest_errors": self.manifest_errors,
            "errors": [p.to_dict() for p in self.errors],
            "warnings": [p.to_dict() for p in self.warnings],
            "exit_code": self.exit_code,
        }


class PatternError(ValueError):
    """A manifest pattern that cannot be used; the message names it and says why."""


class NamePatterns:
    """File-name globs (``MANIFEST.yaml``, ``*.cairn.yaml``) or regular expressions.

    A pattern written ``re:<expr>`` is a regular expression on the base name, as Mastro's
    ``filter-filename`` is. A pattern that matches no name (empty, or a broken expression) is
    a ``PatternError``: crawled, it would find no manifest and soft-delete every asset.
    """

    def __init__(self, patterns: Iterable[str]):
        self.given = list(patterns)
        self.exact: set[str] = set()
        # '*.cairn.yaml' is a suffix test: str.endswith costs a fraction of a regex match,
        # and the walk asks it of every file.
        suffixes: list[str] = []
        regexes: list[str] = []
        for pattern in self.given:
            if not pattern or pattern == "re:":
                raise PatternError(
                    f"manifest pattern {pattern!r} is empty; give a file name, a glob such as "
                    "*.cairn.yaml, or re:<regular expression>"
                )
            if pattern.startswith("re:"):
                try:
                    re.compile(pattern[3:])
                except re.error as exc:
                    raise PatternError(
                        f"manifest pattern {pattern!r} is not a valid regular expression: {exc}"
                    ) from None
                regexes.append(f"(?:{pattern[3:]})")
            elif pattern.startswith("*") and not any(c in pattern[1:] for c in "*?["):
                suffixes.append(pattern[1:])
            elif any(c in pattern for c in "*?["):
                regexes.append(fnmatch.translate(pattern))
            else:
                self.exact.add(pattern)
        self.suffixes = tuple(suffixes)
        self.regex = re.compile("|".join(regexes)) if regexes else None

    def matches(self, name: str) -> bool:
        if name in self.exact or (self.suffixes and name.endswith(self.suffixes)):
            return True
        return bool(self.regex and self.regex.fullmatch(name))


_path_of = operator.attrgetter("path")
_size_of = operator.attrgetter("size")
_mtime_of = operator.attrgetter("mtime_ns")


@dataclass(slots=True)
class Tree:
    """What the walk found, indexed for data statistics."""

    manifests: dict[str, Entry] = field(default_factory=dict)
    files_by_dir: dict[str, list[Entry]] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {""})
    problems: list[Problem] = field(default_factory=list)
    # Paths the walk could not see below: what was crawled there before is kept, not deleted.
    unreadable: list[str] = field(default_factory=list)
    files_seen: int = 0
    # folder -> (its files in path order, the file a schema is read from, the format guessed
    # from their names), once asked
    _data_files: dict[str, tuple[list[Entry], str | None, str | None]] = field(default_factory=dict)
    _subtree: dict[str, tuple[int, int, int]] | None = None
    _children: dict[str, list[str]] | None = None
    # While a walk that tracks its frontier runs (see walk_tree's ``on_listed``): the folders
    # it announced but has not listed yet, each as "path/", sorted.
    walking: bool = False
    _unlisted: list[str] = field(default_factory=list)

    def settled(self, manifest_path: str) -> bool:
        """True when the rest of the walk can neither find a manifest that sorts before
        ``manifest_path`` nor add anything below its folder: its assets (without a
        ``location``) can be built, in path order, before the walk ends."""
        unlisted = self._unlisted
        if not self.walking or not unlisted:
            return True
        # Anything found later lies below an unlisted folder: after this path in sort order
        # when the path sorts before "folder/" (it cannot lie below: its folder was listed).
        if manifest_path >= unlisted[0]:
            return False
        folder = manifest_path.rpartition("/")[0]
        if not folder:
            return False  # the root's subtree holds every unlisted folder
        prefix = folder + "/"
        at = bisect.bisect_left(unlisted, prefix)
        return at == len(unlisted) or not unlisted[at].startswith(prefix)

    def _listed(self, folder: str, subfolders: list[str]) -> None:
        """Keeps the frontier and the folder index as a tracked walk lists ``folder``."""
        unlisted = self._unlisted
        if folder:
            at = bisect.bisect_left(unlisted, folder + "/")
            if at < len(unlisted) and unlisted[at] == folder + "/":
                del unlisted[at]
        if subfolders:
            assert self._children is not None
            self._children[folder] = subfolders
            for sub in subfolders:
                bisect.insort(unlisted, sub + "/")

    def dirs_below(self, directory: str) -> list[str]:
        """The folder itself and every folder under it, in path order."""
        if self._children is None:
            # Built once per crawl: scanning every folder per manifest would be quadratic.
            self._children = {}
            for d in self.dirs:
                if d:
                    self._children.setdefault(posixpath.dirname(d), []).append(d)
        if directory not in self.dirs:
            return []
        found, stack = [], [directory]
        while stack:
            d = stack.pop()
            found.append(d)
            stack.extend(self._children.get(d, ()))
        return sorted(found)

    def data_files(self, directory: str) -> tuple[list[Entry], str | None, str | None]:
        """A folder's files in path order, the file of them a schema is read from when no
        format is declared, and the format their names suggest (see ``_guessed``); once the
        walk listed the folder (a crawl asks while the walk goes on, then again)."""
        found = self._data_files.get(directory)
        if found is None:
            # By path is by name here: they share the folder (and sorts without a call per file).
            files = sorted(self.files_by_dir.get(directory, ()), key=_PATH)
            data_format, schema_file = _guessed(files)
            found = self._data_files[directory] = (files, schema_file, data_format)
        return found

    def first_data_file_below(self, directory: str, data_format: str | None = None) -> Entry | None:
        """The first file below ``directory`` a schema is read from: of ``data_format``
        when given (an asset's declared or guessed one), else of each folder's guess."""
        for d in self.dirs_below(directory):
            files, guessed, _ = self.data_files(d)
            found = guessed if data_format is None else _schema_candidate(files, data_format)
            if found:
                return next(f for f in self.files_by_dir[d] if f.path == found)
        return None

    def subtree_stats(self, directory: str) -> tuple[int, int, int]:
        """(total bytes, newest mtime_ns, file count) of a folder and everything below it."""
        if self.walking:
            return self._subtree_now(directory)
        if self._subtree is None:
            empty = (0, 0, 0)
            totals: dict[str, tuple[int, int, int]] = dict.fromkeys(self.dirs, empty)
            for d, files in self.files_by_dir.items():
                totals[d] = _folder_totals(files)
            # Reverse path order puts every folder after all of those below it (a path sorts
            # after its prefixes), so each folder's totals are complete when added to its
            # parent; and plain string order sorts without a Python call per folder.
            for d in sorted(totals, reverse=True):
                size, mtime_ns, count = totals[d]
                if not count or not d:
                    continue  # nothing to add (an empty subtree's newest time is 0)
                parent = d.rpartition("/")[0]
                p_size, p_mtime_ns, p_count = totals.get(parent, empty)
                totals[parent] = (
                    p_size + size,
                    mtime_ns if mtime_ns > p_mtime_ns else p_mtime_ns,
                    p_count + count,
                )
            self._subtree = totals
        return self._subtree.get(directory, (0, 0, 0))

    def _subtree_now(self, directory: str) -> tuple[int, int, int]:
        # Mid-walk (see ``settled``): the subtree is complete, the rest of the tree is not,
        # so nothing is cached; the same totals as ``subtree_stats`` gives after the walk.
        if directory not in self.dirs:
            return 0, 0, 0
        children = self._children or {}
        size = mtime_ns = count = 0
        stack = [directory]
        while stack:
            d = stack.pop()
            files = self.files_by_dir.get(d)
            if files:
                f_size, f_mtime_ns, f_count = _folder_totals(files)
                size += f_size
                mtime_ns = max(mtime_ns, f_mtime_ns)
                count += f_count
            stack.extend(children.get(d, ()))
        return size, mtime_ns, count


def _folder_totals(files: list[Entry]) -> tuple[int, int, int]:
    """(total bytes, newest mtime_ns or 0, file count) of one folder's own files."""
    # map() over attrgetters runs the per-file loop in C: 100k files, every crawl.
    return sum(map(_size_of, files)), max(0, max(map(_mtime_of, files), default=0)), len(files)


def glob_regex(segments: list[str]) -> re.Pattern[str]:
    """A path glob as a regular expression: ``*`` and ``?`` stay within one folder name,
    ``[...]`` is a character class, and a ``**`` segment spans any number of folders."""
    out = []
    for n, seg in enumerate(segments):
        if seg == "**":
            # A final ** means everything below; elsewhere, any number of folders.
            out.append("(?:[^/]+/)*[^/]+/" if n == len(segments) - 1 else "(?:[^/]+/)*")
            continue
        i = 0
        while i < len(seg):
            c = seg[i]
            if c == "*":
                out.append("[^/]*")
            elif c == "?":
                out.append("[^/]")
            elif c == "[" and "]" in seg[i + 2 :]:
                close = seg.index("]", i + 2)
                body = seg[i + 1 : close]
                negate = body[:1] in ("!", "^")
                body = body[1:] if negate else body
                out.append("[" + ("^/" if negate else "") + body.replace("\\", "\\\\") + "]")
                i = close
            else:
                out.append(re.escape(c))
            i += 1
        out.append("/")
    return re.compile("".join(out).removesuffix("/"))


def walk_tree(
    volume: Volume,
    patterns: NamePatterns,
    progress: Progress | None = None,
    on_manifest: Callable[[Entry], None] | None = None,
    tree: Tree | None = None,
    on_listed: Callable[[], None] | None = None,
) -> Tree:
    """Everything below the volume's root; ``on_manifest`` hears of each manifest as the walk
    finds it, so its parsing can start before the walk ends. On a volume walked a folder at a
    time, the files of the manifest's folder are in ``tree`` (given, or made here) by then.

    ``on_listed`` (such volumes only) is called after each folder's listing, with
    ``tree.settled`` telling which manifests' assets can already be built; the walk keeps its
    frontier for that only when asked, as it costs a little per folder."""
    tree = Tree() if tree is None else tree

    def on_problem(path: str, reason: str) -> None:
        tree.problems.append(Problem(path=path, reason=reason, severity="warning"))
        if not reason.startswith((LINKED_FOLDER, SHADOWED_OBJECT)):
            tree.unreadable.append(path)

    # Runs once per file of the volume: names looked up once, the common case first.
    exact, regex = patterns.exact, patterns.regex
    # endswith(()) is always False: no suffix patterns cost one cheap call
    suffixes = patterns.suffixes
    by_dir = tree.files_by_dir
    dirs = tree.dirs
    files_seen = 0
    walk_folders = getattr(volume, "walk_folders", None)
    if walk_folders is not None:
        # A folder at a time (local volumes): the name tests run as one endswith (and a set
        # operation at the root) over the folder's paths, in C, and a folder's list goes to
        # the index whole; no Python code runs per file here. They test paths, not names:
        # cutting 100k names out of their paths cost a sixth of what the index adds to the
        # walk. Below the root a name is exact when its path ends with "/" + that name, and
        # ends with a suffix when its path does; a pattern holding "/" matches no name.
        named = tuple(n for n in exact if "/" not in n)
        plain = tuple(s for s in suffixes if "/" not in s)
        below_root = operator.methodcaller("endswith", plain + tuple("/" + n for n in named))
        at_root = operator.methodcaller("endswith", plain)

        def manifest_paths(prefix: str, paths: list[str]) -> set[str]:
            if prefix:
                found = set(filter(below_root, paths))
            else:
                found = exact.intersection(paths)
                found.update(filter(at_root, paths))
            if regex is not None:
                # Sliced, not fullmatch(path, pos): "^" would not match at pos.
                at = len(prefix)
                found.update(p for p in paths if regex.fullmatch(p[at:]))
            return found

        listings = walk_folders(on_problem)
        if on_listed is not None:
            tree.walking = True
            if tree._children is None:
                tree._children = {}
            listings = _tracked(tree, listings, on_listed)
        try:
            files_seen = _index_listings(
                tree, listings, manifest_paths, on_problem, on_manifest, progress
            )
        finally:
            tree.walking = False
            tree._unlisted.clear()
        tree.files_seen = files_seen
        return tree
    for entry in volume.walk(on_problem):
        parent, _, name = entry.path.rpartition("/")
        is_manifest = (
            name in exact
            or name.endswith(suffixes)
            or (regex is not None and regex.fullmatch(name) is not None)
        )
        if entry.is_dir:
            dirs.add(entry.path)
            if is_manifest:
                on_problem(entry.path, "a folder is named like a manifest; only files are read")
            continue
        files_seen += 1
        if progress and files_seen % 5000 == 0:
            progress("walk", files_seen, None)
        if is_manifest:
            if _named_in_utf8(tree, entry):
                tree.manifests[entry.path] = entry
                if on_manifest is not None:
                    on_manifest(entry)
        else:
            found = by_dir.get(parent)
            if found is None:
                by_dir[parent] = [entry]
            else:
                found.append(entry)
    tree.files_seen = files_seen
    return tree


def _index_listings(
    tree: Tree,
    listings: Iterable[FolderListing],
    manifest_paths: Callable[[str, list[str]], set[str]],
    on_problem: Callable[[str, str], None],
    on_manifest: Callable[[Entry], None] | None,
    progress: Progress | None,
) -> int:
    """walk_tree's loop over a volume walked a folder at a time; the files seen."""
    by_dir = tree.files_by_dir
    dirs = tree.dirs
    files_seen = 0
    for folder, files, folders in listings:
        prefix = folder + "/" if folder else ""
        if folders:
            paths = list(map(_path_of, folders))
            dirs.update(paths)
            for path in sorted(manifest_paths(prefix, paths)):
                on_problem(path, "a folder is named like a manifest; only files are read")
        if not files:
            continue
        paths = list(map(_path_of, files))
        hits = manifest_paths(prefix, paths)
        if not hits:
            by_dir[folder] = files
        else:
            # One manifest a folder is the usual case: no generator, no sort for it.
            if len(hits) == 1:
                (hit,) = hits
                at = [paths.index(hit)]
            else:
                at = sorted(map(paths.index, hits))
            data = files.copy()
            for i in reversed(at):
                del data[i]
            if data:
                by_dir[folder] = data
            for i in at:
                entry = files[i]
                if _named_in_utf8(tree, entry):
                    tree.manifests[entry.path] = entry
                    if on_manifest is not None:
                        on_manifest(entry)
        before = files_seen
        files_seen += len(files)
        if progress and files_seen // 5000 > before // 5000:
            progress("walk", files_seen // 5000 * 5000, None)
    return files_seen


def _named_in_utf8(tree: Tree, manifest: Entry) -> bool:
    """False, with the tree's error saying so, for a manifest whose local path is not UTF-8:
    an asset's manifest path and id are text. (Once per manifest, not per file.)"""
    problem = utf8_name_problem(manifest.path)
    if problem is None:
        return True
    tree.problems.append(problem)
    return False


def _tracked(
    tree: Tree, listings: Iterator[FolderListing], on_listed: Callable[[], None]
) -> Iterator[FolderListing]:
    """The listings, with the tree's frontier kept as each is taken and ``on_listed`` called
    once it is indexed (the generator resumes when the next one is asked for)."""
    for listing in listings:
        folder, _, folders = listing
        tree._listed(folder, [f.path for f in folders])
        yield listing
        on_listed()


# --- data selection ----------------------------------------------------------------------------


@dataclass(slots=True)
class DataSelection:
    """The data a manifest document describes, as found on the volume."""

    location_url: str
    size: int | None = None
    mtime_ns: int | None = None
    count: int = 0
    files: list[Entry] = field(default_factory=list)  # direct or matched files, for schema
    problem: str | None = None
    # The file to read a schema from when no format is declared, and the format guessed from
    # the files' names, once known: a folder's selection has them from the folder's index.
    _schema_file: str | None = None
    _format: str | None = None
    _format_known: bool = False

    def key(self) -> str:
        return _data_key_of(self.size, self.mtime_ns, self.count)

    def schema_file(self, declared_format: str | None = None) -> str | None:
        """The first file of ``files`` of the asset's format: ``declared_format``, else the
        one guessed from ``files`` (as the asset's document guesses it)."""
        if declared_format is not None:
            return _schema_candidate(self.files, declared_format)
        self._guess()
        return self._schema_file

    def guessed_format(self) -> str | None:
        """The format ``files``' names suggest (``enrich.guess_format``)."""
        self._guess()
        return self._format

    def _guess(self) -> None:
        if not self._format_known:
            self._format, self._schema_file = _guessed(self.files)
            self._format_known = True


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_CHAR = re.compile(r"[*?\[]")
_PATH = operator.attrgetter("path")


class _Ignored(Exception):
    """A location the crawl cannot use; the message says why."""


def select_data(
    tree: Tree, volume: Volume, manifest_path: str, location: str | None
) -> DataSelection:
    try:
        return _select_data(tree, volume, manifest_path, location)
    except _Ignored as exc:
        problem = str(exc)
    except VolumeError as exc:
        # A location the volume cannot name (a NUL, say) is this document's problem alone.
        problem = f"location {location!r} cannot be used: {exc}; it was ignored"
    # As the warning says: the document is what it would be without a location, its
    # manifest's folder, never the raw text (not a URL, and maybe a path outside the volume).
    default = _select_data(tree, volume, manifest_path, None)
    default.problem = problem
    return default


def _select_data(
    tree: Tree, volume: Volume, manifest_path: str, location: str | None
) -> DataSelection:
    folder = manifest_path.rpartition("/")[0]
    if location and _URL.match(location):
        return DataSelection(location_url=location)
    if not location:
        target = folder
    else:
        joined = (
            location.lstrip("/") if location.startswith("/") else posixpath.join(folder, location)
        )
        target = posixpath.normpath(joined)
        if target == ".":
            target = ""
        if target == ".." or target.startswith("../"):
            raise _Ignored(f"location {location!r} points outside the volume; it was ignored")
    segments = target.split("/") if target else []
    # The manifest's own folders are names, not patterns, however they are spelt ("c[1]"):
    # only segments the location brings can be a glob.
    literal = 0
    if not location:
        literal = len(segments)
    elif not location.startswith("/") and folder:
        for seg, own in zip(segments, folder.split("/"), strict=False):
            if seg != own:
                break
            literal += 1
    glob_at = (
        next(
            (i for i, seg in enumerate(segments) if i >= literal and _GLOB_CHAR.search(seg)),
            None,
        )
        if _GLOB_CHAR.search(target)
        else None
    )
    if glob_at is not None:
        base = "/".join(segments[:glob_at])
        pattern = glob_regex(segments[glob_at:])
        matched = sorted(
            (
                f
                for d in tree.dirs_below(base)
                for f in tree.files_by_dir.get(d, ())
                if pattern.fullmatch(f.path[len(base) + 1 :] if base else f.path)
            ),
            key=lambda f: f.path,
        )
        return DataSelection(
            location_url=volume.url_for(target),
            size=sum(f.size for f in matched),
            mtime_ns=max((f.mtime_ns for f in matched), default=0),
            count=len(matched),
            files=matched,
            problem=None if matched else f"location {location!r} matches no file",
        )
    if target in tree.dirs:
        size, mtime_ns, count = tree.subtree_stats(target)
        files, schema_file, guessed = tree.data_files(target)
        if schema_file is None:
            # Partitioned layouts (date=2026-01-01/part-0.parquet) keep data in subfolders.
            below = tree.first_data_file_below(target)
            if below:
                files, schema_file = [below], below.path
                guessed = _doc_helpers()[1]([below.name])
        return DataSelection(
            volume.url_for(target), size, mtime_ns, count, files, None, schema_file, guessed, True
        )
    base = target.rpartition("/")[0]
    for f in tree.files_by_dir.get(base, ()):
        if f.path == target:
            return DataSelection(volume.url_for(target), f.size, f.mtime_ns, 1, [f])
    return DataSelection(
        location_url=volume.url_for(target),
        problem=f"location {location!r} does not exist on the volume",
    )


def data_key(tree: Tree, volume: Volume, manifest_path: str, location: str | None) -> str:
    """``select_data(...).key()`` without what only a parse needs (the file list sorted for a
    schema, the location's URL): a recrawl asks it of every unchanged manifest.

    Were it ever to differ from ``select_data``'s key, the manifest would merely be parsed
    again: the key holds the data's size, time and count, so a change is never missed.
    """
    if location is None:
        # The common case (no location: the manifest's own folder), straight to its totals.
        folder = manifest_path.rpartition("/")[0]
        if folder in tree.dirs:
            return _data_key_of(*tree.subtree_stats(folder))
    return select_data(tree, volume, manifest_path, location).key()


def _data_key_of(size: int | None, mtime_ns: int | None, count: int) -> str:
    """What a crawl state keeps of a manifest's data (``DataSelection.key``)."""
    return f"{size}:{mtime_ns}:{count}"


def data_keys(
    tree: Tree, volume: Volume, manifest_path: str, locations: list[str | None]
) -> list[str]:
    """``data_key`` of each location; the usual single document without a comprehension
    (every unchanged manifest, each recrawl)."""
    if len(locations) == 1:
        return [data_key(tree, volume, manifest_path, locations[0])]
    return [data_key(tree, volume, manifest_path, loc) for loc in locations]


def fingerprint(entry: Entry, selections: Iterable[DataSelection]) -> str:
    return fingerprint_of_keys(entry, [s.key() for s in selections])


def fingerprint_of_keys(entry: Entry, keys: list[str]) -> str:
    # The manifest's content tag (S3's ETag) joins size and time where the store has one, so
    # a rewrite within the same second and size is seen; without one the key is unchanged, so
    # volumes crawled before tags existed are not all re-pushed.
    head = f"{entry.size}:{entry.mtime_ns}" + (f":{entry.tag}" if entry.tag else "")
    return hashlib.sha1("|".join([head, *keys]).encode()).hexdigest()


# --- worker-side work (runs in a pool process for large crawls) --------------------------------

_worker_volume: Volume | None = None


def _init_worker(volume_url: str) -> None:
    global _worker_volume
    # Workers are forked during the walk, while the crawl has the collector paused
    # (_gc_paused); parsing makes cyclic garbage, so theirs runs. What they inherited from
    # the crawl (its imports, the walk so far) is moved out of the collector's sight: scanning
    # it again and again would cost CPU and copy the parent's pages into each worker.
    gc.freeze()
    gc.enable()
    # pyarrow imports numpy whenever it can, though reading a Parquet footer never uses it:
    # that was half of pyarrow's import, 40-70 ms of CPU and 12 MiB in every worker of
    # every crawl. Kept out here, where nothing else runs; a worker that already has numpy
    # (from a fork server's preload) keeps it.
    sys.modules.setdefault("numpy", None)  # type: ignore[arg-type]
    _worker_volume = open_volume(volume_url)
    # Parsing is the one part of a crawl that is never waited on directly: the crawler's own
    # thread and, on the same machine, the catalogue ingesting the pushes are. Given the cores
    # first, they keep up, and the workers take what is left; at the same priority the
    # catalogue fell behind and was still ingesting the last batches, alone on one core, long
    # after everything else was done (a tenth of a cold crawl's time).
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)


class SchemaRead(NamedTuple):
    """What ``_read_schema`` read of one data file."""

    path: str
    columns: list[Column] | None  # None when not read
    warning: str | None  # why it was not read, or how it was cut short
    # Not read for a reason other than the file's content (permissions, a disk error, the
    # file gone since the walk): the next crawl reads it again, where a corrupt file waits
    # until it changes.
    transient: bool = False


@dataclass(slots=True)
class ParsedManifest:
    path: str
    docs: list[tuple[int, int, dict[str, Any]]]  # (index, line, manifest fields as JSON)
    problems: list[Problem]
    # The schema of the data file the parse was told its folder holds, read along with the
    # manifest when every document takes its schema from there (no location, no schema).
    schema: SchemaRead | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent back from a worker by the thousand: rebuilt from its fields in one call, not
        # through the per-slot state a dataclass with slots pickles by default.
        return (ParsedManifest, (self.path, self.docs, self.problems, self.schema))


def _parse_one(volume: Volume, path: str, schema_file: str | None = None) -> ParsedManifest:
    """``schema_file``: the file a document without ``location`` and ``schema`` takes its
    schema from, as the walk found it; reading it here, in the same job, spares the crawl a
    second job per manifest, which would also wait behind every manifest still queued."""
    return _parse_many(volume, [path if schema_file is None else (path, schema_file)])[0]


def _parse_chunk(jobs: list[Job]) -> list[ParsedManifest]:
    assert _worker_volume is not None
    return _parse_many(_worker_volume, jobs)


def _parse_many(volume: Volume, jobs: list[Job]) -> list[ParsedManifest]:
    """``_parse_one`` of each job, one step at a time over all of them: every manifest read,
    then parsed, then dumped, then every schema read. Each step's code and data (libyaml and
    the models, then Arrow and the CSV reader) stay in the CPU's caches through the chunk;
    taken a manifest at a time through all four steps, the same work cost a quarter more CPU
    (10k manifests of the bench volume in one process: 1.6 s against 1.25 s)."""
    if len(jobs) < 2:
        return _parse_jobs(volume, jobs)
    manifests = [job if type(job) is str else job[0] for job in jobs]
    data = [job[1] for job in jobs if type(job) is not str]
    with _reading_ahead(volume, manifests, data):
        return _parse_jobs(volume, jobs)


def _parse_jobs(volume: Volume, jobs: list[Job]) -> list[ParsedManifest]:
    from crawler.manifest import MAX_MANIFEST_BYTES, ParsedDocument, parse_manifest

    out: list[ParsedManifest] = []
    texts: list[bytes | None] = []
    for job in jobs:
        path = job if type(job) is str else job[0]
        try:
            texts.append(volume.read(path, MAX_MANIFEST_BYTES))
            out.append(ParsedManifest(path, [], []))
        except VolumeUnreachable:
            # Not this manifest's problem: every read after it would wait out the same
            # retries, so the crawl stops (see Crawler._crawl).
            raise
        except VolumeError as exc:
            texts.append(None)
            out.append(ParsedManifest(path, [], [Problem(path=path, reason=str(exc))]))
    parsed: list[list[ParsedDocument]] = []
    for pm, data in zip(out, texts, strict=True):
        documents: list[ParsedDocument] = []
        if data is not None:
            documents, pm.problems = parse_manifest(data, pm.path)
        parsed.append(documents)
    for pm, documents in zip(out, parsed, strict=True):
        pm.docs = [
            (d.index, d.line, d.manifest.model_dump(mode="json", by_alias=True, exclude_none=True))
            for d in documents
        ]
    for pm, job in zip(out, jobs, strict=True):
        if type(job) is not str and _takes_folder_schema(pm.docs):
            pm.schema = _read_schema(volume, job[1])
    return out


def _takes_folder_schema(docs: list[tuple[int, int, dict[str, Any]]]) -> bool:
    """True when every document takes its schema from its folder's data (none names a
    location or a schema), so the folder's file read by the parse's job is theirs."""
    return bool(docs) and not any("schema" in f or "location" in f for _, _, f in docs)


def _is_parquet(path: str) -> bool:
    return path.lower().endswith((".parquet", ".parq"))


@contextlib.contextmanager
def _reading_ahead(volume: Volume, manifests: list[str], data: list[str]) -> Iterator[None]:
    """Has a volume that can (``LocalVolume.read_ahead``) ask for every file a chunk reads at
    once, so the disk serves them together, not one read after another: the manifests whole,
    then what ``_read_schema`` reads of each data file (a CSV's head, a Parquet file's end,
    where its footer is), read last, after the parsing, by when they have come in. What no
    read took is closed on the way out."""
    from crawler.manifest import MAX_MANIFEST_BYTES

    read_ahead = getattr(volume, "read_ahead", None)
    if read_ahead is None:
        yield
        return
    for path in manifests:
        read_ahead(path, MAX_MANIFEST_BYTES + 1)
    for path in data:
        if _is_parquet(path):
            read_ahead(path, FOOTER_AHEAD_BYTES, from_end=True)
        else:
            read_ahead(path, CSV_HEAD_BYTES)
    try:
        yield
    finally:
        volume.drop_ahead()  # type: ignore[attr-defined]


def _read_schema(volume: Volume, path: str, size: int | None = None) -> SchemaRead:
    """The columns or a warning; both when the schema was cut short.

    ``size``: the file's size as the walk listed it, which spares a remote volume the call
    that would ask for it: a CSV head or a Parquet footer is then one ranged read."""
    max_columns, unreadable, csv_columns, parquet_columns = _schema_helpers()
    try:
        if _is_parquet(path):
            with volume.open(path, size) as f:
                fields = parquet_columns(f)
        else:
            fields = csv_columns(_head(volume, path, size))
    except VolumeUnreachable:
        raise  # the server is gone, not this file's schema (see _parse_many)
    except unreadable as exc:
        return SchemaRead(path, None, f"schema not read from {path}: {exc}")
    except (VolumeError, OSError) as exc:
        return SchemaRead(path, None, f"schema not read from {path}: {exc}", transient=True)
    warning = None
    if len(fields) > max_columns:
        # The catalogue refuses a longer schema, which would lose the whole asset.
        warning = f"{path} has {len(fields)} columns; the schema keeps the first {max_columns}"
        fields = fields[:max_columns]
    return SchemaRead(path, _shared_columns(fields), warning)


@functools.cache
def _schema_helpers() -> tuple[
    int,
    type[Exception],
    Callable[[bytes], list[Column]],
    Callable[[Any], list[Column]],
]:
    """What ``_read_schema`` uses from the models and the enrichers, imported once (as
    ``_doc_helpers``): import statements in the function cost 2.9 us per file read."""
    from cairn.models import MAX_COLUMNS
    from crawler.enrich import SchemaReadError, csv_columns, parquet_columns

    return MAX_COLUMNS, SchemaReadError, csv_columns, parquet_columns


# Columns repeat from file to file (id, created_at, ...): each distinct one is one dict, reused,
# so a chunk of results pickles it once and the crawler holds it once, not once per asset
# (14 MiB of the crawler's peak on the 10k-manifest bench tree). Nothing changes a column
# once read. Bounded: column names come from anyone's files.
_COLUMNS: dict[tuple[tuple[str, str | bool], ...], Column] = {}
_COLUMNS_MAX = 4096


def _shared_columns(fields: list[Column]) -> list[Column]:
    cache = _COLUMNS
    out = []
    for column in fields:
        key = tuple(column.items())
        found = cache.get(key)
        if found is None:
            if len(cache) >= _COLUMNS_MAX:
                cache.clear()
            found = cache[key] = column
        out.append(found)
    return out


def _head(volume: Volume, path: str, size: int | None = None) -> bytes:
    # A local volume reads it without a file object (see LocalVolume.read_head).
    read_head = getattr(volume, "read_head", None)
    if read_head is not None:
        head: bytes = read_head(path, CSV_HEAD_BYTES)
        return head
    with volume.open(path, size) as f:
        return f.read(CSV_HEAD_BYTES)


def _schema_chunk(jobs: list[Job]) -> list[SchemaRead]:
    volume = _worker_volume
    assert volume is not None
    with _reading_ahead(volume, [], [job if type(job) is str else job[0] for job in jobs]):
        return run_jobs(_read_schema, volume, jobs)


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


# --- the crawl ---------------------------------------------------------------------------------


class Crawler:
    def __init__(
        self,
        settings: Settings,
        *,
        catalogue_url: str | None = None,
        patterns: Iterable[str] | None = None,
        api_key: str | None = None,
        progress: Progress | None = None,
    ):
        self.settings = settings
        self.catalogue_url = catalogue_url or settings.catalogue_url
        self.patterns = NamePatterns(patterns or settings.manifest_patterns)
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        self.api_key = key
        self.progress = progress
        self.workers = settings.crawl_workers or os.cpu_count() or 1
        self._listed_sizes: dict[str, int] = {}  # see _work_pool
        # A cold crawl of a local volume pushes while the walk goes on (see _EarlyAssembly);
        # off, it assembles everything after the walk, as any other crawl (the tests compare).
        self.push_during_walk = True

    def crawl(self, volume_url: str) -> CrawlReport:
        if is_source_url(volume_url):
            return self.crawl_source(volume_url)
        started = time.perf_counter()
        now = datetime.now(UTC)
        # Why the volume's root could not be opened, when it was opened empty instead.
        missing_root: str | None = None
        try:
            volume = open_volume(volume_url)
        except VolumeError as exc:
            failure = f"cannot open volume {redact_url(volume_url)}: {exc}"
            if not (
                isinstance(exc, EntryNotFound)
                and exc.path == ""
                and url_scheme(volume_url) in FOLDERLESS_SCHEMES
            ):
                raise CrawlFailed(failure) from exc
            # An object store's folder vanishes with its last object: whether that is a
            # volume emptied (its assets go, with --allow-empty) or a typo depends on whether
            # a crawl found manifests there before, which the crawl state tells below.
            try:
                volume = open_volume(volume_url, missing_root_ok=True)
            except VolumeError:
                raise CrawlFailed(failure) from exc
            missing_root = failure
        report = CrawlReport(volume=volume.url, started_at=now.isoformat())
        try:
            with self._pusher() as pusher:
                # Asked first, even when nothing changed: what was pushed is remembered per
                # catalogue, and a catalogue that cannot be reached is a failed crawl.
                try:
                    catalogue_id = pusher.instance_id()
                except CatalogueUnreachable as exc:
                    raise CrawlFailed(str(exc)) from exc
                try:
                    state = CrawlState(self.settings.crawl_state_dir, volume.url, catalogue_id)
                    try:
                        self._crawl(volume, state, report, now, pusher, missing_root)
                    finally:
                        state.close()
                except StateError as exc:
                    raise CrawlFailed(str(exc)) from exc
        finally:
            volume.close()
            # What _gc_paused froze is mostly freed by now; the rest is the collector's again.
            gc.unfreeze()
        report.duration_s = time.perf_counter() - started
        # Debug only: the report says the same, and a log line would cut into the progress bar.
        log.debug(
            "crawled %s: %d manifests, %d created, %d updated, %d deleted, %d unchanged, "
            "%d errors in %.2fs",
            report.volume,
            report.manifests_found,
            report.created,
            report.updated,
            report.deleted,
            report.unchanged,
            len(report.errors),
            report.duration_s,
        )
        return report

    def crawl_source(self, url: str) -> CrawlReport:
        """A crawl of a source that lists assets itself (crawler/sources/)."""
        from crawler.source_crawl import SourceCrawlFailed, crawl_source

        started = time.perf_counter()
        now = datetime.now(UTC)
        try:
            source = open_source(url, self.settings)
        except SourceError as exc:
            raise CrawlFailed(f"cannot open source {redact_url(url)}: {exc}") from exc
        report = CrawlReport(volume=source.url, started_at=now.isoformat(), kind="source")
        try:
            with self._pusher() as pusher:
                try:
                    catalogue_id = pusher.instance_id()
                except CatalogueUnreachable as exc:
                    raise CrawlFailed(str(exc)) from exc
                crawl_source(source, self.settings, pusher, catalogue_id, now, report)
        except SourceCrawlFailed as exc:
            raise CrawlFailed(str(exc)) from exc
        finally:
            source.close()
        report.duration_s = time.perf_counter() - started
        log.info(
            "crawled %s: %d assets, %d created, %d updated, %d deleted, %d unchanged in %.2fs",
            report.volume,
            report.documents,
            report.created,
            report.updated,
            report.deleted,
            report.unchanged,
            report.duration_s,
        )
        return report

    def _pusher(self) -> CataloguePusher:
        return CataloguePusher(
            self.catalogue_url,
            api_key=self.api_key,
            timeout=self.settings.http_timeout,
            attempts=self.settings.http_retries,
            max_body=self.settings.max_body_bytes,
        )

    def _crawl(
        self,
        volume: Volume,
        state: CrawlState,
        report: CrawlReport,
        now: datetime,
        pusher: CataloguePusher,
        missing_root: str | None = None,
    ) -> None:
        # Loaded before the walk: a manifest the state does not know is parsed while the walk
        # goes on; a known one waits for the walk's end, when its data's fingerprint is known.
        with _gc_paused():
            previous = state.load()
            standing = state.warnings()
        if missing_root is not None and not previous:
            # Nothing was ever crawled there: most likely a mistyped URL, said as such.
            raise CrawlFailed(missing_root)
        try:
            with self._work_pool(volume) as work:
                tree = Tree()
                # Where a new manifest's documents would take their schema from, if they name
                # no location and no schema: read by the same job that parses the manifest.
                # Only on a local volume, whose walk lists a folder's files before its
                # manifests are announced; elsewhere the schema is a job of its own.
                hint_schema = volume.url.startswith("file:")
                upserts: list[dict[str, Any]] = []
                deletions: list[dict[str, Any]] = []
                pending: dict[str, Pending] = {}
                sender = _Sender(
                    pusher,
                    self.settings.crawl_batch_size,
                    self.progress,
                    report,
                    pending,
                    crawled_at=now.isoformat(),
                    before_send=lambda batch: state.mark_unsettled(
                        batch, previous.__contains__, profiles=self.settings.crawl_profiles
                    ),
                    volume=volume,
                )
                # With no state, every manifest is new and nothing can be deleted: assets are
                # built and pushed while the walk goes on, so the catalogue is not left idle
                # until it ends (and then busy long after the crawler's own work is done).
                early = (
                    _EarlyAssembly(
                        tree,
                        work,
                        _Assembly(
                            self, volume, tree, work, previous, report, upserts, pending, sender
                        ),
                        sender,
                    )
                    if not previous and self.push_during_walk
                    else None
                )

                def found(entry: Entry) -> None:
                    if entry.path in previous:
                        return
                    hint = None
                    if hint_schema:
                        hint = tree.data_files(entry.path.rpartition("/")[0])[1]
                    work.submit("parse", entry.path, hint)
                    if early is not None:
                        early.found(entry.path)

                try:
                    try:
                        with _gc_paused():
                            walk_tree(
                                volume,
                                self.patterns,
                                self.progress,
                                found,
                                tree,
                                early.listed if early is not None else None,
                            )
                    except VolumeError as exc:
                        if sender.sent:
                            self._land_what_was_sent(
                                state, sender, pending, previous, tree, upserts
                            )
                        raise CrawlFailed(f"cannot walk {volume.url}: {exc}") from exc
                    report.files_seen = tree.files_seen
                    report.manifests_found = len(tree.manifests)
                    if "" in tree.unreadable:
                        # The root itself could not be listed (permissions, an identity
                        # without access): that is no crawl of the volume at all, not one
                        # folder skipped, nor an empty volume (which --allow-empty would not
                        # even empty, as nothing below an unread folder is deleted).
                        if sender.sent:
                            self._land_what_was_sent(
                                state, sender, pending, previous, tree, upserts
                            )
                        reason = next(p.reason for p in tree.problems if p.path == "")
                        raise CrawlFailed(
                            f"cannot walk {redact_url(volume.url)}: its root: {reason}; "
                            "nothing was deleted"
                        )
                    if previous and not tree.files_seen and not self.settings.crawl_allow_empty:
                        # An unmounted mount point or an emptied bucket looks like this: the
                        # assets stay until the user says the volume really is empty now.
                        before = counted(len(previous), "manifest")
                        raise CrawlFailed(
                            f"{redact_url(volume.url)} holds no file, but its last crawl found "
                            f"{before}: is it mounted? Nothing was deleted; "
                            "to delete their assets, crawl with --allow-empty "
                            "(CAIRN_CRAWL_ALLOW_EMPTY=true)"
                        )
                    if previous and not tree.manifests and not self.settings.crawl_allow_empty:
                        # Files but no manifest: as likely a --pattern that differs from the
                        # last crawl's as manifests all removed on purpose.
                        files = counted(tree.files_seen, "file")
                        before = counted(len(previous), "manifest")
                        raise CrawlFailed(
                            f"{redact_url(volume.url)} holds {files} but "
                            "none matches the manifest patterns "
                            f"({', '.join(self.patterns.given)}), and its last crawl found "
                            f"{before}: did the patterns change? Nothing "
                            "was deleted; to delete their assets, crawl with --allow-empty "
                            "(CAIRN_CRAWL_ALLOW_EMPTY=true)"
                        )
                    # Before any problem found while building assets, as when they were all
                    # built after the walk.
                    report.warnings[:0] = [p for p in tree.problems if p.severity == "warning"]
                    report.errors[:0] = [p for p in tree.problems if p.severity == "error"]

                    # Unchanged manifests (same bytes, same data beside them) are not even
                    # parsed.
                    to_parse: list[str] = []
                    said: set[tuple[Any, ...]] = set()  # standing warnings said this crawl
                    with _gc_paused():
                        for path, entry in tree.manifests.items():
                            old = previous.get(path)
                            if old is not None:
                                keys = data_keys(tree, volume, path, old.locations)
                                now_fp = fingerprint_of_keys(entry, keys)
                                if now_fp == old.fingerprint:
                                    count = old.count
                                    report.unchanged += count
                                    report.documents += count
                                    if path in standing:
                                        report.warnings += _standing(standing[path], said)
                                    continue
                                if old.fingerprint == WITH_ERRORS + now_fp:
                                    # Unchanged, read again to report its errors.
                                    report.manifests_rechecked += 1
                                work.submit("parse", path)
                            to_parse.append(path)
                    work.flush("parse")
                    report.manifests_parsed = len(to_parse)
                    # Only new manifests, none gone: nothing can be deleted, so each batch is
                    # pushed as soon as it is built. Otherwise deletions go first (they free
                    # the names that moved), so the pushes wait for the last manifest.
                    stream = not any(p in previous for p in to_parse) and all(
                        p in tree.manifests for p in previous
                    )
                    paths = sorted(to_parse)
                    if early is not None:
                        assembly = early.assembly
                        paths = early.rest(paths)
                    else:
                        assembly = _Assembly(
                            self,
                            volume,
                            tree,
                            work,
                            previous,
                            report,
                            upserts,
                            pending,
                            sender if stream else None,
                            lookup=pusher.asset,
                            reparsed=frozenset(to_parse),
                        )
                    with _gc_paused():
                        assembly.run(paths)
                    deletions = self._deletions(tree, previous, pending, upserts, report, now)
                    releases = [] if stream else _name_releases(previous, pending, upserts, now)
                    sender.total = len(deletions) + len(releases) + len(upserts)
                    if not stream:
                        # Moved ids and released names: deleted first, then written again
                        # with the rest, once those deletions are answered. Always in a
                        # request of their own: the mongo store checks a request's names
                        # against what was stored before it, so a name that a deletion frees
                        # (a manifest's id changed, its name kept) is free for the next one.
                        sender.rewritten = _ids(deletions + releases) & _ids(upserts)
                        sender.releases = _ids(releases)
                        for item in deletions + releases:
                            sender.add(item)
                        sender.cut()
                        for item in upserts:
                            sender.add(item)
                    sender.finish(
                        lambda: self._save_answered(state, sender, pending, previous, tree)
                    )
                except CatalogueUnreachable as exc:
                    self._land_what_was_sent(
                        state, sender, pending, previous, tree, deletions + upserts
                    )
                    raise CrawlFailed(str(exc)) from exc
                except VolumeUnreachable as exc:
                    # The walk was whole, but the manifests and data files left to read
                    # cannot be: stopped here, with nothing deleted, rather than reporting
                    # each of them as broken after its own retries.
                    self._land_what_was_sent(
                        state, sender, pending, previous, tree, deletions + upserts
                    )
                    raise CrawlFailed(
                        f"{redact_url(volume.url)} stopped answering during the crawl: {exc}; "
                        "nothing was deleted"
                    ) from exc
        except BrokenProcessPool as exc:
            raise CrawlFailed(
                f"a parsing process died ({exc}); was it out of memory? "
                "CAIRN_CRAWL_WORKERS=1 parses in the crawler's own process"
            ) from exc

        if sender.sent:
            self._save_state(
                state,
                pending,
                previous,
                tree,
                sender.failed_ids,
                sender.deleted_ids,
                refused=sender.failed_ids,
            )
        if self.settings.crawl_profiles:
            self._profile(volume, state, report, tree, upserts)

    def _profile(
        self,
        volume: Volume,
        state: CrawlState,
        report: CrawlReport,
        tree: Tree,
        upserts: list[dict[str, Any]],
    ) -> None:
        """The profile step: the assets this crawl upserted, and those whose profile an earlier
        crawl owes (marked before their push, see CrawlState.mark_unsettled). Read after the
        save, which dropped the rows of assets deleted since."""
        sent = _ids(upserts)
        # An owed asset whose manifest the walk did not see (in a folder it could not read)
        # stays owed: its data is not in the tree either.
        try:
            state.owe_untracked_profiles()
            owed = [
                d for d in state.owed_profiles(sent) if d.get("manifest_path") in tree.manifests
            ]
        except StateError as exc:
            # The push is done and saved: not a failed crawl. What this crawl sent is profiled;
            # the debts wait in the file for a crawl that can read it.
            report.warnings.append(
                Problem(
                    path=str(state.path),
                    reason=f"profiles owed by earlier crawls not sent: {exc}",
                    severity="warning",
                )
            )
            owed = []
        if not upserts and not owed:
            return
        from crawler.profile_step import ProfileStep  # numpy, sketches: only when on

        # Profiles run in the step's bounded pool; the block's end waits for them and flags
        # drifted assets in the catalogue, which holds the assets by now (pushed above).
        with ProfileStep(
            self.settings,
            volume,
            report,
            catalogue_url=self.catalogue_url,
            api_key=self.api_key,
        ) as profiles:
            profiles.submit(tree, upserts)
            profiles.submit(tree, owed, owed=True)
        try:
            state.profiles_settled(profiles.settled)
        except StateError as exc:
            # The push and the profiles are done: a crawl that reported "could not run" (and
            # lost its report) would say less than the truth. The debts stay, and the next
            # crawl with profiles on sends them again, which the metric store finds unchanged.
            report.warnings.append(
                Problem(path=str(state.path), reason=str(exc), severity="warning")
            )

    def _land_what_was_sent(
        self,
        state: CrawlState,
        sender: _Sender,
        pending: dict[str, Pending],
        previous: dict[str, ManifestState],
        tree: Tree,
        items: list[dict[str, Any]],
    ) -> None:
        """A failed crawl saves the state of what the catalogue acknowledged of ``items``;
        the rest is sent again next time."""
        with contextlib.suppress(CatalogueUnreachable):
            sender.finish()  # whatever was answered before the failure counts
        unsent = sender.failed_ids | (_ids(items) - sender.acked_ids)
        self._save_state(
            state, pending, previous, tree, unsent, sender.deleted_ids, refused=sender.failed_ids
        )

    # -- pieces of _crawl --

    def _work_pool(self, volume: Volume) -> WorkPool:
        # Sizes of the data files whose schemas are asked for, as the walk listed them; read
        # (and dropped) by the threads that read those schemas on a remote volume.
        listed = self._listed_sizes = {}

        def read_schema(volume: Volume, path: str) -> Any:
            return _read_schema(volume, path, listed.pop(path, None))

        return WorkPool(
            volume,
            [
                Stage("parse", _parse_chunk, _parse_one, PARSE_CHUNK),
                Stage("schemas", _schema_chunk, read_schema, SCHEMA_CHUNK),
            ],
            workers=self.workers,
            remote_threads=self.settings.crawl_read_concurrency,
            parallel_threshold=PARALLEL_THRESHOLD,
            initializer=_init_worker,
            # Imported once in the fork server, while the walk runs, not once per worker.
            preload=["crawler.crawl", "crawler.manifest", "crawler.enrich", "pyarrow.parquet"],
            # Forked workers start with what this process imported; pyarrow stays theirs.
            fork_imports=["crawler.manifest", "crawler.enrich", "cairn.models"],
        )

    def _finish(
        self,
        volume: Volume,
        item: _Staged,
        work: WorkPool,
        tree: Tree,
        previous: dict[str, ManifestState],
        report: CrawlReport,
        pending: dict[str, Pending],
        warned: set[str],
    ) -> None:
        """One manifest's asset documents, with their schemas; its state goes to ``pending``."""
        pm, docs = item.parsed, item.docs
        schemas: dict[str, SchemaRead] = {}
        for data_file in item.files:
            if data_file not in schemas:
                read = schemas[data_file] = work.result("schemas", data_file)
                if read.warning:
                    problem = Problem(path=read.path, reason=read.warning, severity="warning")
                    item.warnings.append(problem)
                    if data_file not in warned:  # shared by several manifests: said once
                        warned.add(data_file)
                        report.warnings.append(problem)
        # With errors, re-parse next time so they are reported until fixed.
        clean = not any(p.severity == "error" for p in pm.problems)
        entry = tree.manifests[pm.path]
        old = previous.get(pm.path)
        # Documents of an unsettled manifest are all sent again: the catalogue may lack any.
        settled = old is not None and old.fingerprint != UNSETTLED
        old_docs = old.docs if settled and old is not None else []
        old_hashes = {d["id"]: d.get("_hash") for d in old_docs}
        new_docs: list[dict[str, Any]] = []
        lines: dict[str, int] = {}
        transient = False
        for index, line, fields, sel, schema_file in docs:
            read = schemas.get(schema_file) if schema_file else None
            columns = read.columns if read is not None else None
            doc = self._asset_doc(volume, pm.path, index, fields, sel, columns)
            if read is not None and read.transient:
                # Says nothing of the data: the schema last read stands, and the manifest
                # is parsed again next crawl, though the volume may not change again.
                transient = True
                before = _old_doc(old, doc["id"])
                if before is not None and "schema" in before:
                    doc["schema"] = before["schema"]
            content = _content_hash(doc)
            doc["_hash"] = content
            lines[doc["id"]] = line
            report.documents += 1
            if old_hashes.get(doc["id"]) == content:
                report.unchanged += 1
            else:
                # The state's own dict: the push adds crawled_at to the copy it sends, so
                # 10k manifests no longer hold a second dict per asset until the crawl ends.
                item.changed.append(doc)
            new_docs.append(doc)
        if not clean and old is not None:
            # Assets of a broken document are kept until the file is fixed or removed.
            kept = {d["id"] for d in new_docs}
            new_docs += [d for d in old.docs if d["id"] not in kept]
        seen = "" if transient else fingerprint(entry, [d[3] for d in docs])
        if seen and not clean:
            # A manifest with errors is parsed again next crawl, so they are reported until
            # fixed; its fingerprint, marked, tells that crawl whether it changed meanwhile.
            seen = WITH_ERRORS + seen
        new_state = ManifestState(
            fingerprint=seen,
            locations=[d[2].get("location") for d in docs],
            docs=new_docs,
        )
        earlier: dict[str, dict[str, Any]] | None = {}
        if old_docs:
            sent = {d["id"] for d in item.changed}
            earlier = {d["id"]: d for d in old_docs if d["id"] in sent}
        elif old is not None and not settled:
            earlier = None
        pending[pm.path] = Pending(new_state, lines, clean, item.warnings, earlier)

    def _asset_doc(
        self,
        volume: Volume,
        path: str,
        index: int,
        fields: dict[str, Any],
        sel: DataSelection,
        schema: list[Column] | None,
    ) -> dict[str, Any]:
        crawled_id = _doc_helpers()[0]
        doc = dict(fields)
        doc["id"] = fields.get("extra", {}).pop("id", None) or crawled_id(volume.url, path, index)
        if not doc.get("extra"):
            doc.pop("extra", None)
        doc["volume"] = volume.url
        doc["manifest_path"] = path
        doc["location"] = sel.location_url
        if sel.size is not None:
            doc["size_bytes"] = sel.size
        if sel.mtime_ns:
            doc["modified_at"] = datetime.fromtimestamp(sel.mtime_ns / 1e9, UTC).isoformat()
        if "format" not in doc:
            guessed = sel.guessed_format()
            if guessed:
                doc["format"] = guessed
        if schema is not None:
            doc["schema"] = schema
        return doc

    def _deletions(
        self,
        tree: Tree,
        previous: dict[str, ManifestState],
        pending: dict[str, Pending],
        upserts: list[dict[str, Any]],
        report: CrawlReport,
        now: datetime,
    ) -> list[dict[str, Any]]:
        """Soft-deletes assets whose manifest (or document) vanished."""
        # A folder the walk could not read may still hold its manifests: never delete those.
        # ("" is the root itself: then nothing may be deleted.)
        unreadable = tree.unreadable
        upserted = {d["id"]: d.get("manifest_path") for d in upserts}
        out = []
        for path, old in previous.items():
            if path in tree.manifests:
                if path not in pending:
                    continue
                still = {d["id"] for d in pending[path].state.docs}
                gone = [d for d in old.docs if d["id"] not in still]
            else:
                if any(not u or path == u or path.startswith(u + "/") for u in unreadable):
                    continue
                gone = old.docs
            for doc in gone:
                if doc.get("deleted"):
                    continue
                moved = upserted.get(doc["id"])
                if moved is not None and moved == path:
                    continue
                # An id declared by another manifest now (``id:`` kept when a manifest moved):
                # deleted here first, as this manifest's own, so that the new one may take it
                # (a crawled write may only take a deleted asset of another manifest).
                out.append({**doc, "deleted": True, "crawled_at": now.isoformat()})
        return out

    def _save_answered(
        self,
        state: CrawlState,
        sender: _Sender,
        pending: dict[str, Pending],
        previous: dict[str, ManifestState],
        tree: Tree,
    ) -> None:
        """Saves the state of the manifests whose every document the catalogue answered, while
        it still ingests the last batches, and takes them out of ``pending``: the save after
        the last answer is then that of the last batches only. The same rows as that save
        would write; a crawl killed between the two leaves the rest marked unsettled, as
        before (see CrawlState.mark_unsettled)."""
        answered = sender.acked_ids
        done = {
            path: item
            for path, item in pending.items()
            if all(d["id"] in answered for d in item.state.docs)
        }
        if not done:
            return
        failed = sender.failed_ids
        self._save_state(
            state, done, previous, tree, failed, sender.deleted_ids, refused=failed, removals=False
        )
        for path in done:
            del pending[path]

    @staticmethod
    def _save_state(
        state: CrawlState,
        pending: dict[str, Pending],
        previous: dict[str, ManifestState],
        tree: Tree,
        failed_ids: set[str],
        deleted_ids: set[str],
        *,
        refused: set[str] | frozenset[str] = frozenset(),
        removals: bool = True,
    ) -> None:
        """``failed_ids``: documents the catalogue did not take, unsent ones included;
        ``refused``: those of them it answered with an error."""
        changed: dict[str, ManifestState] = {}
        for path, item in pending.items():
            new_state = item.state
            failed = failed_ids and {d["id"] for d in new_state.docs} & failed_ids
            if failed:
                old = previous.get(path)
                seen = new_state.fingerprint
                before = item.earlier
                if seen and failed <= refused and before is not None:
                    # Refused, all of them: read again next crawl like a manifest with
                    # errors, to send them again and say why they are refused (another
                    # asset may have let go of the name), but counted changed only when it
                    # is. The state holds what the catalogue holds: the refused documents'
                    # earlier versions, if any, the others' new ones.
                    new_state = ManifestState(
                        seen if seen.startswith(WITH_ERRORS) else WITH_ERRORS + seen,
                        new_state.locations,
                        [d for d in new_state.docs if d["id"] not in failed]
                        + [before[i] for i in sorted(failed) if i in before],
                    )
                elif old is not None:
                    # Unsent (the crawl stopped): the old state stands, so they are sent again.
                    continue
                else:
                    new_state = ManifestState(
                        "",
                        new_state.locations,
                        [d for d in new_state.docs if d["id"] not in failed_ids],
                    )
            changed[path] = new_state
        removed = []
        for path, old in previous.items() if removals else ():
            if path in tree.manifests:
                continue
            if all(d["id"] in deleted_ids or d.get("deleted") for d in old.docs):
                removed.append(path)
        warnings = {p: [w.to_dict() for w in pending[p].warnings] for p in changed}
        state.save(changed, removed, warnings)


@dataclass(slots=True)
class Pending:
    """A manifest that was parsed this crawl: its state to save once the push succeeded."""

    state: ManifestState
    lines: dict[str, int]  # asset id -> line of its document, for error reports
    clean: bool  # False when the file had errors: keep its old assets and re-parse next time
    # What its parse and its data reported: said again while the manifest stays unchanged.
    warnings: list[Problem] = field(default_factory=list)
    # The last crawl's versions of the documents sent now (what the catalogue holds should
    # it refuse them), None when they are not known (the last crawl did not settle).
    earlier: dict[str, dict[str, Any]] | None = field(default_factory=dict)


@dataclass(slots=True)
class _Staged:
    """A parsed manifest waiting for the schemas of its data."""

    parsed: ParsedManifest
    docs: list[tuple[int, int, dict[str, Any], DataSelection, str | None]]
    files: list[str]  # data files whose schema its documents take
    warnings: list[Problem]
    changed: list[dict[str, Any]] = field(default_factory=list)


class _Assembly:
    """Turns parsed manifests into asset documents, in path order: those that changed go to
    ``upserts`` (and, with a sender, to the catalogue at once); each manifest's state to save
    once the push succeeded goes to ``pending``."""

    def __init__(
        self,
        crawler: Crawler,
        volume: Volume,
        tree: Tree,
        work: WorkPool,
        previous: dict[str, ManifestState],
        report: CrawlReport,
        upserts: list[dict[str, Any]],
        pending: dict[str, Pending],
        sender: _Sender | None,
        lookup: Callable[[str], dict[str, Any] | None] | None = None,
        reparsed: frozenset[str] = frozenset(),
    ) -> None:
        """``lookup``: the catalogue's document of an id (CataloguePusher.asset); ``reparsed``:
        the manifests parsed this crawl (every one that changed), for ``_owned_elsewhere``."""
        self._crawler = crawler
        self._volume = volume
        self._tree = tree
        self._work = work
        self._previous = previous
        self._report = report
        self._upserts = upserts
        self._pending = pending
        self._sender = sender
        # Worker processes on a local volume open the file anyway: sizes only help remote
        # reads.
        self._remote = not volume.url.startswith("file:")
        self._staged: deque[_Staged] = deque()
        self._warned: set[str] = set()  # data files whose schema problem was reported
        self._taken = 0
        self._total: int | None = None  # manifests to assemble, once the walk ended
        # Declared ids (``id:``) of the manifests taken so far: (path, line) of each.
        self._declared: dict[str, tuple[str, int]] = {}
        self._lookup = lookup
        self._reparsed = reparsed
        # Manifests taken so far with an error: they keep their earlier assets.
        self._broken: set[str] = set()

    def run(self, paths: list[str]) -> None:
        """The rest of the crawl's manifests, ``paths``, after those already taken."""
        self._total = self._taken + len(paths)
        for path in paths:
            self.take(self._work.result("parse", path, forget=True))
        self._work.flush("schemas")
        self._finish(wait=True)

    def _declared_once(self, pm: ParsedManifest) -> None:
        """Drops the documents of ``pm`` whose ``id:`` a manifest taken earlier in this crawl
        (or an earlier document of its own) declares, with an error at that line: sent
        together, the catalogue would refuse the second as "twice in this request", at
        neither's ``id:`` nor naming the other file. The manifest, now with an error, is read
        again next crawl, when the catalogue answers for the first one."""
        kept = []
        for doc in pm.docs:
            declared = (doc[2].get("extra") or {}).get("id")
            first = self._declared.get(declared) if isinstance(declared, str) else None
            if first is None:
                if isinstance(declared, str):
                    self._declared[declared] = (pm.path, doc[1])
                kept.append(doc)
                continue
            there = _field_position(self._volume, first[0], "id", first[1])[0]
            where = "an earlier document" if first[0] == pm.path else first[0]
            self._refuse_id(
                pm,
                doc[1],
                f"id {declared!r} is declared by {where} (line {there}) too; ids are unique in "
                f"the catalogue, so choose another id in {pm.path} or drop its id",
            )
        pm.docs = kept

    def _owned_elsewhere(self, pm: ParsedManifest) -> None:
        """Drops the documents of a changed manifest whose ``id:`` is new to it and belongs to
        another asset (the catalogue's answer for it, as its bulk write would give it), with an
        error at that line. Sent, the write would be refused after the manifest's earlier
        asset of that document was deleted (deletions go first, to free names): the id
        changed, the asset gone, its replacement refused. Dropped here, the manifest has an
        error, so it keeps its earlier assets until it is fixed."""
        old = self._previous.get(pm.path)
        if old is None or self._lookup is None:
            return  # a new manifest: nothing of its own to lose, the catalogue says the rest
        own = {d["id"] for d in old.docs}
        kept = []
        for doc in pm.docs:
            declared = (doc[2].get("extra") or {}).get("id")
            if isinstance(declared, str) and declared not in own:
                reason = self._taken_by_other(pm.path, declared)
                if reason is not None:
                    self._refuse_id(pm, doc[1], reason)
                    continue
            kept.append(doc)
        pm.docs = kept

    def _taken_by_other(self, path: str, asset_id: str) -> str | None:
        """Why manifest ``path`` may not write ``asset_id`` now, or None when it may (or when
        this crawl's own writes decide, as for an id another manifest here gives up)."""
        assert self._lookup is not None
        current = self._lookup(asset_id)
        if current is None:
            return None
        owner = current.get("manifest_path")
        if current.get("volume") == self._volume.url and owner != path and owner:
            if owner not in self._tree.manifests:
                return None  # its manifest is gone: deleted first, the id is free then
            if owner in self._reparsed and not self._still_holds(owner, path, asset_id):
                return None  # its manifest changed and lets go of it: deleted first too
        return owner_conflict(
            {"id": asset_id, "volume": self._volume.url, "manifest_path": path}, current
        )

    def _still_holds(self, owner: str, path: str, asset_id: str) -> bool:
        """Whether manifest ``owner``, parsed this crawl too, keeps ``asset_id`` after it. One
        taken before ``path`` (path order) and declaring it was said by ``_declared_once``;
        one with an error keeps its earlier assets. One after it is read ahead (its parse
        stays for its turn)."""
        if owner < path:
            return owner in self._broken
        later: ParsedManifest = self._work.result("parse", owner)
        if any(p.severity == "error" for p in later.problems):
            return True
        return any((d[2].get("extra") or {}).get("id") == asset_id for d in later.docs)

    def _refuse_id(self, pm: ParsedManifest, line: int, reason: str) -> None:
        """An error at the ``id:`` of ``pm``'s document that starts at ``line``."""
        at, column = _field_position(self._volume, pm.path, "id", line)
        pm.problems.append(
            Problem(
                path=pm.path,
                line=at,
                column=column,
                field="id" if column is not None else None,
                reason=reason,
            )
        )

    def take(self, pm: ParsedManifest) -> None:
        """One parsed manifest, the next in path order."""
        report, volume, work = self._report, self._volume, self._work
        warnings: list[Problem] = []
        if any("id" in (fields.get("extra") or ()) for _, _, fields in pm.docs):
            # Owners first: a document refused for its owner declares nothing here.
            self._owned_elsewhere(pm)
            self._declared_once(pm)
        for problem in pm.problems:
            if problem.severity == "error":
                report.errors.append(problem)
                self._broken.add(pm.path)
            else:
                warnings.append(problem)
        docs = []
        files: list[str] = []
        for index, line, fields in pm.docs:
            sel = select_data(self._tree, volume, pm.path, fields.get("location"))
            if sel.problem:
                at, column = _field_position(volume, pm.path, "location", line)
                warnings.append(
                    Problem(
                        path=pm.path,
                        line=at,
                        column=column,
                        field="location",
                        reason=sel.problem,
                        severity="warning",
                    )
                )
            # The data file to read a schema from, when the manifest gives none.
            schema_file = None if "schema" in fields else sel.schema_file(fields.get("format"))
            if schema_file and pm.schema is not None and pm.schema[0] == schema_file:
                work.put("schemas", schema_file, pm.schema)  # read along with the parse
                files.append(schema_file)
            elif schema_file:
                if self._remote:
                    self._crawler._listed_sizes[schema_file] = next(
                        f.size for f in sel.files if f.path == schema_file
                    )
                work.submit("schemas", schema_file)
                files.append(schema_file)
            docs.append((index, line, fields, sel, schema_file))
        report.warnings += warnings
        self._staged.append(_Staged(pm, docs, files, warnings))
        self._finish(wait=False)
        self._taken += 1
        n = self._taken
        progress = self._crawler.progress
        if progress and (n % 200 == 0 or n == self._total):
            progress("parse", n, self._total)

    def _finish(self, wait: bool) -> None:
        # Manifests are finished in order, each once its schemas are read.
        staged, work, sender = self._staged, self._work, self._sender
        while staged and (wait or all(work.done("schemas", f) for f in staged[0].files)):
            item = staged.popleft()
            self._crawler._finish(
                self._volume,
                item,
                work,
                self._tree,
                self._previous,
                self._report,
                self._pending,
                self._warned,
            )
            # Listed before any is sent: a failed push knows all of them went unsent.
            self._upserts.extend(item.changed)
            if sender is not None:
                for doc in item.changed:
                    sender.add(doc)


class _EarlyAssembly:
    """A cold crawl's manifests assembled (and so pushed) while the walk still goes on.

    A manifest is taken once the walk can no longer find one that sorts before it nor add
    data below its folder (``Tree.settled``), once its parse is back, and while a batch would
    not wait for the catalogue: the walk never waits for anything. What is taken here is the
    first part of the crawl's path order, so the assets, problems and batches are the same as
    when all are assembled after the walk. A manifest with a ``location`` (it may point
    anywhere in the tree) stops this: it and everything after it wait for the walk's end.
    """

    def __init__(self, tree: Tree, work: WorkPool, assembly: _Assembly, sender: _Sender) -> None:
        self.assembly = assembly
        self._tree = tree
        self._work = work
        self._sender = sender
        self._found: list[str] = []  # a heap: manifests found and not taken yet
        self._last: str | None = None  # the last one taken
        self._taken = 0
        self._stopped = False
        self._listings = 0

    def found(self, path: str) -> None:
        heapq.heappush(self._found, path)

    def listed(self) -> None:
        """Called after each folder's listing: takes whatever is ready, in path order."""
        work, found = self._work, self._found
        self._listings += 1
        if self._listings % EARLY_EVERY or self._stopped or not work.parallel:
            # A small crawl parses here, when asked: after the walk, as always. A large one
            # looks every few folders: a look costs about what indexing a folder does.
            return
        settled = self._tree.settled
        while found:
            path = found[0]
            if not settled(path) or not work.done("parse", path) or self._sender.waits():
                return
            pm: ParsedManifest = work.result("parse", path, forget=True)
            if any("location" in fields for _, _, fields in pm.docs):
                work.put("parse", path, pm)  # for the assembly after the walk
                self._stopped = True
                return
            heapq.heappop(found)
            self.assembly.take(pm)
            self._last = path
            self._taken += 1

    def rest(self, paths: list[str]) -> list[str]:
        """What is left of all the crawl's ``paths`` (sorted) after those taken here."""
        # Every manifest found after one was taken sorts after it (see Tree.settled).
        assert not self._taken or paths[self._taken - 1] == self._last
        return paths[self._taken :]


class _Sender:
    """Cuts documents into batches for the push thread, and applies the catalogue's answers.

    Counts go to the report as answers come; push errors are added after the crawl's own,
    as they were when pushes ran last.
    """

    def __init__(
        self,
        pusher: CataloguePusher,
        batch_size: int,
        progress: Progress | None,
        report: CrawlReport,
        pending: dict[str, Pending],
        *,
        crawled_at: str,
        before_send: Callable[[list[dict[str, Any]]], None] | None = None,
        volume: Volume | None = None,
    ) -> None:
        self._pusher = pusher
        # The crawled volume: a refused asset's manifest is read again to say where.
        self._volume = volume
        # Called with each batch before it is sent (the crawl state's in-flight marks).
        self._before_send = before_send
        self._crawled_at = crawled_at
        self._batch_size = batch_size
        # The first batches are smaller, each twice the one before up to ``batch_size``: the
        # catalogue starts ingesting once FIRST_BATCH documents are built, not 1,000. Its
        # ingest was a cold crawl's longest serial chain (on two cores, the bench's catalogue
        # was busy from its first push to the crawl's end, 0.16 s a batch), so what starts it
        # earlier ends the crawl earlier. The cuts depend on the count alone, so a crawl sends
        # the same batches however its work was timed.
        self._limit = min(batch_size, FIRST_BATCH)
        self._progress = progress
        self._report = report
        self._pending = pending
        self._thread: PushThread | None = None
        self._batch: list[dict[str, Any]] = []
        self._errors: list[Problem] = []
        self.sent = False
        self.total: int | None = None  # documents to push, once known (for the progress bar)
        self.answered = 0
        self._flushed = 0  # documents handed to the push thread
        self.acked_ids: set[str] = set()
        self.failed_ids: set[str] = set()
        self.deleted_ids: set[str] = set()
        # Ids deleted first and written again later in this crawl (moved ids, released names):
        # their deletion's answer does not settle their manifest, the later write's does.
        self.rewritten: set[str] = set()
        # Released names (``_name_releases``): not counted, the write that follows is.
        self.releases: set[str] = set()

    def waits(self) -> bool:
        """True when the next batch would wait for the catalogue to take one first."""
        return self._thread is not None and self._thread.full()

    def add(self, item: dict[str, Any]) -> None:
        self.sent = True
        self._batch.append(item)
        if len(self._batch) >= self._limit:
            self._flush()

    def cut(self) -> None:
        """Ends the current batch here: what follows goes in a later request."""
        if self._batch:
            self._flush()

    def finish(self, while_waiting: Callable[[], None] | None = None) -> None:
        """Sends the last batch and waits for every answer; CatalogueUnreachable when a push
        failed after its retries. ``while_waiting`` runs once the last batch is sent, when
        answers are still to come (after those already in are applied)."""
        try:
            if self._batch:
                self._flush()
            if while_waiting is not None and self.answered < self._flushed:
                while_waiting()
        finally:
            try:
                if self._thread is not None:
                    self._thread.close()
            finally:
                self._apply()
                self._report.errors.extend(self._errors)
                self._errors = []

    def _flush(self) -> None:
        if self._thread is None:
            self._thread = PushThread(self._pusher, {"crawled_at": self._crawled_at})
        batch, self._batch = self._batch, []
        self._flushed += len(batch)
        self._limit = min(self._batch_size, self._limit * 2)
        if self._before_send is not None:
            self._before_send(batch)
        self._thread.send(batch)
        self._apply()

    def _apply(self) -> None:
        if self._thread is None:
            return
        report = self._report
        for batch, result in self._thread.answers():
            for item, res in zip(batch, result.results, strict=True):
                first_of_two = item["id"] in self.rewritten and item.get("deleted")
                if not first_of_two:
                    self.acked_ids.add(item["id"])
                elif item["id"] in self.releases and res.status != "error":
                    continue
                if res.status == "error":
                    self.failed_ids.add(item["id"])
                    path = item.get("manifest_path") or "?"
                    found = self._pending.get(path)
                    line = found.lines.get(item["id"]) if found else None
                    column = None
                    # A name another asset holds, an id another manifest's asset has: said
                    # at that field's line, not at the document's first (its '---').
                    about = _CONFLICT_FIELDS.get(res.conflict or "")
                    if about and line is not None and self._volume is not None:
                        at = _field_position(self._volume, path, about, line)
                        if at[1] is None:
                            about = None
                        line, column = at
                    self._errors.append(
                        Problem(
                            path=path, line=line, column=column, field=about, reason=res.error or ""
                        )
                    )
                    report.failed += 1
                elif res.status == "deleted":
                    self.deleted_ids.add(item["id"])
                    report.deleted += 1
                elif res.status == "created":
                    report.created += 1
                elif res.status == "updated":
                    report.updated += 1
                else:
                    report.unchanged += 1
            self.answered += len(batch)
            if self._progress:
                self._progress("push", self.answered, self.total)


# The manifest field a catalogue conflict (BulkItemResult.conflict) is about.
_CONFLICT_FIELDS = {"name": "name", "owner": "id"}


def _field_position(volume: Volume, path: str, field: str, doc_line: int) -> tuple[int, int | None]:
    """The line and column of ``field`` in the document of manifest ``path`` that starts at
    ``doc_line`` (see manifest.field_position); ``(doc_line, None)`` when the file cannot be
    read again or no longer holds it. Only called for a problem found after the parse."""
    from crawler.manifest import MAX_MANIFEST_BYTES, field_position

    try:
        data = volume.read(path, MAX_MANIFEST_BYTES)
    except VolumeError:
        return doc_line, None
    found = field_position(data, field, doc_line)
    return found if found is not None else (doc_line, None)


@functools.cache
def _doc_helpers() -> tuple[Callable[[str, str, int], str], Callable[[Iterable[str]], str | None]]:
    """What ``_asset_doc`` uses from the models and the enrichers, imported on first use (an
    unchanged crawl never needs them) and then once: an import statement in the function
    itself cost 1.4 us per asset."""
    from cairn.models import crawled_id
    from crawler.enrich import guess_format

    return crawled_id, guess_format


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Loading the state, the walk and the diff make 100k+ small objects that form no cycles
    while the tree and the state stay alive: left on, the collector scans that growing heap
    again and again, a fifth of an unchanged recrawl's time.

    What the pause made stays out of the collector's sight afterwards too (frozen until the
    crawl ends, see ``Crawler.crawl``): switched back on, the collector would otherwise scan
    all of it at its next pass, a tenth of a second after a walk of 100k files. The pause
    itself is the catalogue's (``cairn.collector``): it nests, so crawls run side by side in
    threads by the scheduler leave the collector as they found it."""
    with collector_paused():
        try:
            yield
        finally:
            gc.freeze()


def _ids(items: list[dict[str, Any]]) -> set[str]:
    return {d["id"] for d in items}


def _standing(stored: list[dict[str, Any]], said: set[tuple[Any, ...]]) -> list[Problem]:
    """An unchanged manifest's warnings from its last parse, less those in ``said`` (a data
    file shared by several manifests is named once), which takes them in."""
    out = []
    for w in stored:
        key = (w["path"], w.get("line"), w["reason"])
        if key not in said:
            said.add(key)
            out.append(Problem(**w))
    return out


def _name_releases(
    previous: dict[str, ManifestState],
    pending: dict[str, Pending],
    upserts: list[dict[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """Soft-deletes, ahead of this crawl's writes, each asset whose name another asset of the
    crawl takes while it gets a new name itself.

    Ids follow a document's position in its file (DESIGN.md section 3), so removing or
    reordering documents of a multi-document manifest moves names from id to id, and two
    manifests may swap names. Written in order, each asset would find its new name still held
    by the one that is about to give it up, a conflict on every crawl. Released first, every
    name is free when it is written; each released asset comes back with its own write, a
    moment later in the same crawl. An asset that keeps its name, or whose manifest did not
    change, releases nothing: taking its name stays a conflict.
    """
    new_names = {d["id"]: d["name"] for d in upserts if not d.get("deleted")}
    holders: dict[str, dict[str, Any]] = {}
    for path, item in pending.items():  # the manifests parsed this crawl: only their names move
        old = previous.get(path)
        # A document gone from its manifest is deleted before this (``_deletions``), even
        # when another manifest takes its id: its name is free by then, nothing to release.
        kept = {d["id"] for d in item.state.docs}
        for doc in old.docs if old is not None else ():
            if not doc.get("deleted") and doc["id"] in kept:
                holders[doc["name"]] = doc
    out: list[dict[str, Any]] = []
    for asset_id, name in new_names.items():
        holder = holders.pop(name, None)
        if holder is None or holder["id"] == asset_id:
            continue
        # Not written again (unchanged) or keeping the name.
        if new_names.get(holder["id"], name) == name:
            continue
        out.append({**holder, "deleted": True, "crawled_at": now.isoformat()})
    return out


def _schema_candidate(files: list[Entry], data_format: str | None) -> str | None:
    """The first file (in the list's order) that a schema of ``data_format`` is read from."""
    extensions = _SCHEMA_FILES.get(data_format.lower()) if data_format else None
    if extensions is None:
        return None
    for f in files:
        path = f.path
        _, dot, ext = path.rpartition(".")
        if dot and ext.lower() in extensions:
            return path
    return None


def _guessed(files: list[Entry]) -> tuple[str | None, str | None]:
    """(the format guessed from ``files``' names, ``_schema_candidate`` for it)."""
    guess_format = _doc_helpers()[1]
    data_format = guess_format(f.name for f in files)
    return data_format, _schema_candidate(files, data_format)


def _content_hash(doc: dict[str, Any]) -> str:
    # A crawl hashes each document before either field is set: then no copy is needed.
    body = doc
    if "crawled_at" in doc or "_hash" in doc:
        body = {k: v for k, v in doc.items() if k not in ("crawled_at", "_hash")}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _old_doc(old: ManifestState | None, doc_id: str) -> dict[str, Any] | None:
    """The document of id ``doc_id`` in a manifest's previous state, if any."""
    if old is None:
        return None
    return next((d for d in old.docs if d["id"] == doc_id), None)

"""``cairn snapshot``: record the content of a dataset's files in its manifest's ``versions``.

Mastro's ``mvc`` keeps versions of raw data beside the catalogue; this does the same through
the Volume protocol, so it works wherever a crawl does. A snapshot hashes (SHA-256, streamed)
every file of the dataset: the manifest's ``location`` when it names a relative path or a
volume URL, else the manifest's folder, less manifest files and sub-folders that hold their own
manifest (other datasets). The files' hashes fold into one digest; when it differs from the
latest snapshot's, a new key ``v<N+1>`` is added::

    versions:
      v1: {sha256: 9f2c…, created: '2026-12-02T14:00:00Z', bytes: 1234, files: {a.csv: 51e0…}}

A run that finds the same digest adds nothing. The manifest is written back whole, so a reader
sees the old file or the new one: a rename over it on a local disk and on HDFS (a part file
beside it first), one PutObject on S3, one block-list commit on ADLS. Only its ``versions``
block changes; comments and other fields stay as written.
"""

from __future__ import annotations

import codecs
import hashlib
import posixpath
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from connectors import NotAFile, Volume, VolumeError, open_volume
from connectors.base import WritableVolume, normalize_relpath
from crawler.crawl import NamePatterns, PatternError, glob_regex
from crawler.manifest import parse_manifest
from crawler.problems import shown

MAX_MANIFEST_BYTES = 1024 * 1024
CHUNK = 8 * 1024 * 1024  # bytes per read while hashing: one ranged GET each on object stores
_VERSION_KEY = re.compile(r"^v(\d+)$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class SnapshotError(Exception):
    """The snapshot could not be taken; the message says why and what to do."""


@dataclass
class Snapshot:
    manifest_url: str
    digest: str
    files: dict[str, str]
    bytes: int
    version: str  # the key holding this content: new, or the latest one when unchanged
    added: bool
    written: bool = False
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest_url,
            "version": self.version,
            "added": self.added,
            "written": self.written,
            "sha256": self.digest,
            "files": len(self.files),
            "bytes": self.bytes,
        }


def _split(url: str) -> tuple[str, str]:
    head, _, name = url.rstrip("/").rpartition("/")
    return head, name


def _open_target(url: str, patterns: NamePatterns) -> tuple[Volume, str | None]:
    """(volume of the dataset's folder, manifest name if the URL named one)."""
    try:
        return open_volume(url), None
    except VolumeError as exc:
        head, name = _split(url)
        if "not a directory" not in str(exc) or not patterns.matches(name):
            raise SnapshotError(f"cannot open {url}: {exc}") from None
        try:
            return open_volume(head or "/"), name
        except VolumeError as inner:
            raise SnapshotError(f"cannot open {head}: {inner}") from None


def _digest(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(f"{path}\0{files[path]}\n".encode())
    return h.hexdigest()


def hash_file(volume: Volume, path: str) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with volume.open(path) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _dataset_files(volume: Volume, manifest: str, patterns: NamePatterns) -> list[str]:
    """Every file below the volume root except manifests and folders with their own."""
    files: list[str] = []
    owned: set[str] = set()  # folders holding another manifest: other datasets
    problems: list[str] = []
    for entry in volume.walk(lambda p, r: problems.append(f"{shown(p)}: {r}")):
        if entry.is_dir:
            continue
        if not entry.path.isascii() and shown(entry.path) is not entry.path:
            # Its name could not be written in the manifest's versions (YAML is text).
            problems.append(f"{shown(entry.path)}: the name is not valid UTF-8; rename it")
            continue
        if patterns.matches(entry.name):
            folder = entry.path.rpartition("/")[0]
            if entry.path != manifest and folder:
                owned.add(folder)
            continue
        files.append(entry.path)
    if problems:
        raise SnapshotError(
            "cannot see every file of the dataset, so its hash would be wrong: "
            + "; ".join(problems[:5])
        )

    def inside_other(path: str) -> bool:
        parts = path.split("/")
        return any("/".join(parts[:i]) in owned for i in range(1, len(parts)))

    return sorted(p for p in files if not inside_other(p))


def _location_files(
    volume: Volume, location: str, patterns: NamePatterns
) -> tuple[Volume, list[str]]:
    """The volume and files a manifest's ``location`` names (a relative path or a URL)."""
    if _URL.match(location):
        target, name = volume, ""
        try:
            target = open_volume(location)
        except VolumeError as exc:
            if "not a directory" not in str(exc):
                raise SnapshotError(f"location {location}: {exc}") from None
            head, name = _split(location)
            try:
                target = open_volume(head)
            except VolumeError as inner:
                raise SnapshotError(f"location {location}: {inner}") from None
        if name:
            return target, [normalize_relpath(name)]
        return target, _dataset_files(target, "", patterns)
    rel = posixpath.normpath(location.lstrip("/"))
    rel = "" if rel == "." else rel
    if rel == ".." or rel.startswith("../"):
        raise SnapshotError(
            f"location {location!r} points outside the manifest's folder; snapshot the folder "
            "that holds the data, or write the location as a volume URL"
        )
    segments = rel.split("/") if rel else []
    glob_at = next((i for i, seg in enumerate(segments) if any(c in seg for c in "*?[")), None)
    if glob_at is not None:  # part-*.parquet, date=*/**: as the crawler reads them
        base = "/".join(segments[:glob_at])
        pattern = glob_regex(segments[glob_at:])
        skip = len(base) + 1 if base else 0
        inside = _dataset_files(volume, "", patterns)
        return volume, [
            p
            for p in inside
            if (not base or p.startswith(base + "/")) and pattern.fullmatch(p[skip:])
        ]
    try:
        entry = volume.stat(rel)
    except VolumeError as exc:
        raise SnapshotError(f"location {location!r}: {exc}") from None
    if not entry.is_dir:
        return volume, [entry.path]
    prefix = entry.path + "/" if entry.path else ""
    inside = _dataset_files(volume, "", patterns)
    return volume, [p for p in inside if p.startswith(prefix)]


def _latest(versions: dict[str, Any]) -> tuple[int, str | None, str | None]:
    """(highest vN number, its key, its digest) among the snapshot versions."""
    best, key, digest = 0, None, None
    for name, value in versions.items():
        match = _VERSION_KEY.match(name)
        if match and int(match[1]) > best:
            best, key = int(match[1]), name
            digest = value.get("sha256") if isinstance(value, dict) else None
    return best, key, digest


def _find_manifest(volume: Volume, patterns: NamePatterns, name: str | None) -> str:
    if name is not None:
        return name
    found = sorted(
        e.path
        for e in volume.walk(lambda p, r: None)
        if not e.is_dir and "/" not in e.path and patterns.matches(e.name)
    )
    if not found:
        raise SnapshotError(
            f"no manifest in {volume.url}: expected a file such as MANIFEST.yaml in that folder "
            "(or give the manifest's URL)"
        )
    if len(found) > 1:
        raise SnapshotError(
            f"{volume.url} holds several manifests ({', '.join(found)}); give the URL of one"
        )
    return found[0]


def _line_end(text: str) -> str:
    """The line end the file's first line uses (CRLF from Windows editors, CR, LF)."""
    match = re.search(r"\r\n|\r|\n", text)
    return match.group() if match else "\n"


def rewrite_versions(text: str, versions: dict[str, Any]) -> str:
    """``text`` with its top-level ``versions`` block replaced (or appended) by ``versions``;
    every other line stays as written, and the new lines end as the file's lines do."""
    newline = _line_end(text)
    block = yaml.safe_dump({"versions": versions}, sort_keys=False, allow_unicode=True, width=100)
    if newline != "\n":
        # safe_dump writes LF; a CRLF file with a few LF lines confuses editors and diffs.
        block = block.replace("\n", newline)
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"versions\s*:", line)), None)
    if start is None:
        if text and not text.endswith(("\n", "\r")):
            text += newline
        return text + block
    end = start + 1
    # The block runs on while lines are indented, blank or indented comments.
    while end < len(lines) and (lines[end][:1] in (" ", "\t") or not lines[end].strip()):
        end += 1
    # Blank lines before the next key stay with it.
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    return "".join(lines[:start]) + block + "".join(lines[end:])


def take_snapshot(
    url: str, patterns: list[str], *, write: bool = True, now: datetime | None = None
) -> Snapshot:
    try:
        names = NamePatterns(patterns)
    except PatternError as exc:
        raise SnapshotError(str(exc)) from None
    volume, named = _open_target(url, names)
    try:
        manifest_path = _find_manifest(volume, names, named)
        try:
            raw = volume.read(manifest_path, MAX_MANIFEST_BYTES)
        except VolumeError as exc:
            raise SnapshotError(f"cannot read the manifest: {exc}") from None
        docs, problems = parse_manifest(raw, manifest_path)
        errors = [p for p in problems if p.severity == "error"]
        if errors or not docs:
            reasons = "; ".join(p.reason for p in errors) or "no manifest document"
            raise SnapshotError(f"{volume.url_for(manifest_path)} is not valid: {reasons}")
        if len(docs) > 1:
            raise SnapshotError(
                f"{volume.url_for(manifest_path)} holds {len(docs)} manifests; snapshot records "
                "versions of one dataset: give it a file of its own"
            )
        manifest = docs[0].manifest
        if manifest.location:
            source, paths = _location_files(volume, manifest.location, names)
        else:
            source, paths = volume, _dataset_files(volume, manifest_path, names)
        if not paths:
            raise SnapshotError(f"the dataset of {volume.url_for(manifest_path)} has no files")
        files: dict[str, str] = {}
        total = 0
        for path in paths:
            try:
                files[path], size = hash_file(source, path)
            except VolumeError as exc:
                raise SnapshotError(f"cannot read {source.url_for(path)}: {exc}") from None
            total += size
        if source is not volume:
            source.close()
        digest = _digest(files)
        versions: dict[str, Any] = dict(manifest.versions)
        number, latest_key, latest_digest = _latest(versions)
        snap = Snapshot(volume.url_for(manifest_path), digest, files, total, "", False)
        if latest_key is not None and latest_digest == digest:
            snap.version = latest_key
            return snap
        snap.version, snap.added = f"v{number + 1}", True
        created = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        versions[snap.version] = {
            "sha256": digest,
            "created": created,
            "bytes": total,
            "files": files,
        }
        if not write:
            return snap
        updated = _checked_rewrite(raw, manifest_path, manifest, versions)
        if not isinstance(volume, WritableVolume):
            # Every built-in connector writes; this guards a connector added without it.
            raise SnapshotError(
                f"{volume.scheme}:// volumes cannot store files, so the manifest cannot be "
                "updated there; run with --dry-run to see the new version"
            )
        try:
            volume.write_bytes(manifest_path, updated)
        except (VolumeError, NotAFile) as exc:
            raise SnapshotError(f"cannot write the manifest: {exc}") from None
        snap.written = True
        return snap
    finally:
        volume.close()


def _checked_rewrite(raw: bytes, path: str, manifest: Any, versions: dict[str, Any]) -> bytes:
    """The manifest with the new versions, re-parsed to make sure nothing else moved."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SnapshotError(f"{path} is not UTF-8 text") from None
    # A BOM some Windows tools write (and some expect) goes back where it was.
    bom = codecs.BOM_UTF8 if raw.startswith(codecs.BOM_UTF8) else b""
    updated = bom + rewrite_versions(text, versions).encode()
    docs, _ = parse_manifest(updated, path)
    before = manifest.model_dump(exclude={"versions"})
    if (
        len(docs) != 1
        or docs[0].manifest.model_dump(exclude={"versions"}) != before
        or docs[0].manifest.versions != versions
    ):
        raise SnapshotError(
            f"{path}: its versions block is laid out in a way snapshot cannot rewrite safely "
            "(write it as a block mapping at the top level, or remove it)"
        )
    return updated

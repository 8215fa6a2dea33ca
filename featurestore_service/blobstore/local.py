"""Blobs in a local folder (the default: ``<data dir>/featurestore-blobs``).

Layout: ``<root>/<first two hex digits>/<sha256>.parquet``, so no folder grows past 1/256 of
the files; ``<root>/tmp`` holds uploads on their way in, ``<root>/swept`` blobs a sweeper has
taken (renamed aside) and not yet restored or deleted. A blob is written to ``tmp``, fsynced,
hard-linked into place (a link never replaces a blob that is there) and its folder fsynced: a
crash leaves either the whole file or none, and the sweeper removes leftovers in ``tmp``.
The upload's own file stays, so the upload can store the bytes again if a sweep took them.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from featurestore_service.blobstore.base import (
    CHUNK,
    KEY,
    TAKEN,
    BlobInfo,
    BlobMissing,
    check_key,
    fsync_dir,
    taken_key,
    taken_name,
)

# What os.link says on a file system without hard links (FAT, most SMB shares).
_NO_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.swept = self.root / "swept"
        self.url = str(self.root)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.swept.mkdir(exist_ok=True)

    @classmethod
    def from_url(cls, url: str) -> LocalBlobStore:
        parts = urlsplit(url)
        if parts.scheme == "file":
            return cls(Path(unquote(parts.path)))
        return cls(Path(url))

    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key

    def put(self, key: str, source: BinaryIO) -> bool:
        final = self.path(key)
        if _refresh(final):
            return False
        self._folder_of(final)
        spooled = _own_spool(source, self.tmp)
        if spooled is not None:
            try:
                return _place(spooled, final)
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
        part = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            with part.open("wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
                out.flush()
                os.fsync(out.fileno())
            try:
                return _place(part, final)
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
            if _refresh(final):
                return False
            # No hard links here: a rename, which would replace a blob stored meanwhile by
            # another put (the same bytes, so nothing is lost, only the answer is off).
            os.replace(part, final)
        finally:
            part.unlink(missing_ok=True)
        fsync_dir(final.parent)
        return True

    def _folder_of(self, final: Path) -> None:
        """Makes the blob's folder when it is the first of its prefix; the root is fsynced
        then, so the folder itself outlasts a power loss along with the file linked into it
        (whose own folder is fsynced after the link)."""
        if final.parent.is_dir():
            return
        final.parent.mkdir(parents=True, exist_ok=True)
        fsync_dir(self.root)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise BlobMissing(f"no blob {key} in {self.url}") from None

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list_blobs(self) -> Iterator[BlobInfo]:
        for folder in sorted(self.root.iterdir()):
            if len(folder.name) != 2 or not folder.is_dir():
                continue
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not KEY.match(entry.name):
                        continue
                    try:
                        stat = entry.stat()
                    except FileNotFoundError:  # removed while listed
                        continue
                    yield BlobInfo(entry.name, stat.st_size, stat.st_mtime)

    def take(self, key: str, written_before: float | None) -> str | None:
        final = self.path(key)
        if written_before is not None and not _written_before(final, written_before):
            return None  # young or refreshed: spare the renames
        taken = taken_name(key, uuid.uuid4().hex)
        try:
            os.rename(final, self.swept / taken)
        except FileNotFoundError:
            return None
        # The rename is the moment of the take. A put's refresh (utime) that came before it
        # shows in the taken file's time, checked here; one after it finds no file, and that
        # put stores its own.
        if written_before is not None and not _written_before(self.swept / taken, written_before):
            self.restore(taken)
            return None
        return taken

    def restore(self, taken: str) -> None:
        final = self.path(taken_key(taken))
        self._folder_of(final)
        try:
            # Replaces a blob a put stored meanwhile: the same bytes, so nothing changes.
            os.replace(self.swept / taken, final)
        except FileNotFoundError:
            return
        fsync_dir(final.parent)

    def discard(self, taken: str) -> bool:
        taken_key(taken)
        try:
            (self.swept / taken).unlink()
        except FileNotFoundError:
            return False
        return True

    def list_taken(self, taken_before: float | None = None) -> Iterator[str]:
        # Every one: the rename is the whole take, so none is half done.
        if not self.swept.is_dir():
            return
        with os.scandir(self.swept) as entries:
            names = [entry.name for entry in entries if TAKEN.match(entry.name)]
        yield from names

    def remove_partial(self, before: float) -> int:
        removed = 0
        for leftover in self.tmp.glob("*.part"):
            try:
                if leftover.stat().st_mtime < before:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:  # removed meanwhile
                continue
        return removed

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def close(self) -> None:
        return None


def _refresh(path: Path) -> bool:
    """Sets the blob's write time to now; False when there is no blob. One system call, so
    a sweeper's rename comes either before it (no file: False) or after it (a recent time)."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _place(part: Path, final: Path) -> bool:
    """Links ``part`` in as ``final`` unless a blob is there (then refreshed: False)."""
    while True:
        try:
            os.link(part, final)
        except FileExistsError:
            if _refresh(final):
                return False
            continue  # taken by a sweeper between the link and the refresh: link again
        fsync_dir(final.parent)  # the link is durable before a version row names the file
        return True


def _written_before(path: Path, moment: float) -> bool:
    try:
        return path.stat().st_mtime < moment
    except FileNotFoundError:
        return False


def _own_spool(source: BinaryIO, tmp: Path) -> Path | None:
    """The file behind ``source`` when it is an fsynced upload spooled into this store's own
    ``tmp`` folder: linking it into place spares a copy of up to the upload limit."""
    name = getattr(source, "name", None)
    if not isinstance(name, str):
        return None
    path = Path(name)
    return path if path.parent == tmp and path.suffix == ".part" else None

"""Blobs in a local folder (the default: ``<data dir>/featurestore-blobs``).

Layout: ``<root>/<first two hex digits>/<sha256>.parquet``, so no folder grows past 1/256 of
the files; ``<root>/tmp`` holds uploads on their way in. A blob is written to ``tmp``,
fsynced, renamed into place and its folder fsynced: a crash leaves either the whole file or
none, and the sweeper removes leftovers in ``tmp``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from featurestore_service.blobstore.base import CHUNK, KEY, BlobInfo, BlobMissing, check_key


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.url = str(self.root)
        self.tmp.mkdir(parents=True, exist_ok=True)

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
        if final.exists():
            return False
        spooled = _own_spool(source, self.tmp)
        part = spooled or self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            if spooled is None:
                with part.open("wb") as out:
                    shutil.copyfileobj(source, out, CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                return False
            os.replace(part, final)
        finally:
            if spooled is None:
                part.unlink(missing_ok=True)
        _fsync_dir(final.parent)  # the rename is durable before a version row names the file
        return True

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

    def remove_partial(self, before: float) -> int:
        removed = 0
        for leftover in self.tmp.glob("*.part"):
            try:
                if leftover.stat().st_mtime < before:
                    leftover.unlink()
                    removed += 1
            except FileNotFoundError:  # renamed into place or removed meanwhile
                continue
        return removed

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def close(self) -> None:
        return None


def _own_spool(source: BinaryIO, tmp: Path) -> Path | None:
    """The file behind ``source`` when it is an fsynced upload spooled into this store's own
    ``tmp`` folder: renaming it into place spares a copy of up to the upload limit."""
    name = getattr(source, "name", None)
    if not isinstance(name, str):
        return None
    path = Path(name)
    return path if path.parent == tmp and path.suffix == ".part" else None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

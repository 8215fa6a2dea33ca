"""Local directories as volumes (``file://`` URLs or plain paths).

Walk rules:
- only regular files and directories are yielded; FIFOs, sockets and devices are reported;
- a symlink to a file inside the root is yielded under the link's path; a symlink to a folder is
  never followed: inside the root that folder is walked under its real path anyway (following
  the link would list its files twice, under two names), a link to one of its own ancestors is
  reported as a loop, and each such link is reported once; outside targets and dangling links
  are reported, never followed;
- every error (unreadable directory, entry vanishing mid-walk) goes to ``on_problem`` and the
  walk carries on;
- depth first; within a folder its files come first, then its subfolders, each in the
  filesystem's listing order; callers that need an order sort.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat as st_mod
from collections.abc import Iterator
from typing import BinaryIO
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit

from connectors.base import (
    LINKED_FOLDER,
    ClosedOnExit,
    Entry,
    FolderListing,
    ProblemSink,
    make_entry,
    normalize_relpath,
)
from connectors.errors import (
    AccessDenied,
    EntryNotFound,
    EntryTooLarge,
    NotAFile,
    PathOutsideVolume,
    VolumeError,
)

log = logging.getLogger("cairn.connectors")

# O_NOFOLLOW on directories: a directory swapped for a symlink between listing and scanning
# must not lead the walk out of the root.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# O_NONBLOCK so that opening a FIFO swapped in after the S_ISREG check cannot hang us.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK

# Where the kernel names each open descriptor's file (Linux); elsewhere reads resolve the path
# first, one lstat per folder.
_FD_PATHS = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else ""

# Descriptors read_ahead holds at most: a chunk of a crawl's work is 100 manifests and as many
# data files, well below the usual limit of 1,024 open files.
_MAX_AHEAD = 256

_DevIno = tuple[int, int]
# absolute directory, its relative prefix ('' or 'a/b/'), the (dev, ino) it was listed with,
# and the (dev, ino) chain from the root down to it
_Pending = tuple[str, str, _DevIno, tuple[_DevIno, ...]]


def _kind(mode: int) -> str:
    if st_mod.S_ISFIFO(mode):
        return "fifo"
    if st_mod.S_ISSOCK(mode):
        return "socket"
    if st_mod.S_ISCHR(mode):
        return "character device"
    if st_mod.S_ISBLK(mode):
        return "block device"
    if st_mod.S_ISDIR(mode):
        return "directory"
    return "unknown file type"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _translate(exc: OSError, rel: str) -> VolumeError:
    if isinstance(exc, FileNotFoundError | NotADirectoryError):
        return EntryNotFound(f"{rel!r} does not exist in the volume", path=rel)
    if isinstance(exc, PermissionError):
        return AccessDenied(f"{rel!r}: permission denied", path=rel)
    if isinstance(exc, IsADirectoryError):
        return NotAFile(f"{rel!r} is a directory", path=rel)
    if exc.errno == errno.ELOOP:
        return VolumeError(f"{rel!r}: symlink loop or symlink replaced during access", path=rel)
    return VolumeError(f"{rel!r}: {_reason(exc)}", path=rel)


class LocalVolume(ClosedOnExit):
    scheme = "file"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        given = os.fspath(root)
        if not given:
            raise VolumeError("no volume root given")
        # Resolve once so that containment checks compare real paths with real paths.
        real = os.path.realpath(given)
        try:
            info = os.stat(real)
        except FileNotFoundError:
            raise EntryNotFound(f"volume root {given!r} does not exist", path=given) from None
        except PermissionError:
            raise AccessDenied(f"volume root {given!r}: permission denied", path=given) from None
        except OSError as exc:
            raise VolumeError(f"volume root {given!r}: {_reason(exc)}", path=given) from exc
        if not st_mod.S_ISDIR(info.st_mode):
            raise VolumeError(f"volume root {given!r} is not a directory", path=given)
        self.root = real
        self._prefix = real if real.endswith("/") else real + "/"
        self.url = file_url(real)
        # Files opened by read_ahead, by the path asked for: (relative path, fd, size).
        self._ahead: dict[str, tuple[str, int, int]] = {}

    @classmethod
    def from_url(cls, url: str, **options: object) -> LocalVolume:
        if options:
            raise VolumeError(f"file volumes take no options (got: {', '.join(sorted(options))})")
        parts = urlsplit(url)
        if parts.scheme.lower() != "file":
            raise VolumeError(f"not a file:// URL: {parts.scheme}://...")
        if parts.netloc not in ("", "localhost"):
            raise VolumeError(
                f"file URL names host {parts.netloc!r}; only local paths are supported"
            )
        if parts.query or parts.fragment:
            # Not echoed: a query string is where tokens would hide.
            raise VolumeError("a file:// URL takes no query string or fragment")
        path = os.fsdecode(unquote_to_bytes(parts.path))
        if not path:
            raise VolumeError("file:// URL has no path")
        return cls(path)

    def __repr__(self) -> str:
        return f"LocalVolume({self.url!r})"

    def close(self) -> None:
        # Files handed out by open() belong to the caller; only read_ahead's are held here.
        self.drop_ahead()

    # -- walking -----------------------------------------------------------------------------

    def _contains(self, real: str) -> bool:
        return real == self.root or real.startswith(self._prefix)

    def walk(self, on_problem: ProblemSink | None = None) -> Iterator[Entry]:
        for _, files, folders in self.walk_folders(on_problem):
            yield from files
            yield from folders

    def walk_folders(self, on_problem: ProblemSink | None = None) -> Iterator[FolderListing]:
        """The walk a folder at a time: (its relative path, its files, its subfolders), each
        list in listing order; subfolders are walked in name order. A caller indexing the tree
        by folder takes whole lists instead of sorting 100k entries back into their folders one
        by one."""
        report = on_problem or _log_problem
        try:
            info = os.stat(self.root)
        except OSError as exc:
            report("", f"cannot read the volume root: {_reason(exc)}")
            return
        root_key = (info.st_dev, info.st_ino)
        stack: list[_Pending] = [(self.root, "", root_key, (root_key,))]
        push = stack.append
        fsopen, fstat, scandir, close, new = os.open, os.fstat, os.scandir, os.close, make_entry
        while stack:
            dir_abs, prefix, key, ancestors = stack.pop()
            where = prefix[:-1]
            below = len(stack)  # this folder's subfolders are pushed from here on
            try:
                fd = fsopen(dir_abs, _DIR_FLAGS)
            except OSError as exc:
                report(where, f"cannot open directory: {_reason(exc)}")
                continue
            files: list[Entry] = []
            folders: list[Entry] = []
            add_file, add_folder = files.append, folders.append
            try:
                dinfo = fstat(fd)
                if (dinfo.st_dev, dinfo.st_ino) != key:
                    report(where, "directory was replaced during the walk, skipped")
                    continue
                base = dir_abs if dir_abs.endswith("/") else dir_abs + "/"
                # scandir on a descriptor makes DirEntry.stat() an fstatat() relative to it,
                # which skips re-resolving the whole path for every file.
                with scandir(fd) as it:
                    for de in it:
                        try:
                            # d_type answers these three without a system call on most
                            # filesystems; the only per-file syscall left is the lstat
                            # needed for size and mtime.
                            if de.is_file(follow_symlinks=False):
                                s = de.stat(follow_symlinks=False)
                                add_file(new(prefix + de.name, s.st_size, s.st_mtime_ns, False))
                            elif de.is_dir(follow_symlinks=False):
                                s = de.stat(follow_symlinks=False)
                                rel = prefix + de.name
                                sub_key = (s.st_dev, s.st_ino)
                                if sub_key in ancestors:
                                    # Only a bind mount can make a real directory its own
                                    # ancestor; find(1) calls this a file system loop.
                                    report(rel, "directory loop (bind mount?), skipped")
                                    continue
                                add_folder(new(rel, s.st_size, s.st_mtime_ns, True))
                                push((base + de.name, rel + "/", sub_key, (*ancestors, sub_key)))
                            elif de.is_symlink():
                                rel = prefix + de.name
                                files.extend(self._follow(base + de.name, rel, ancestors, report))
                            else:
                                s = de.stat(follow_symlinks=False)
                                report(
                                    prefix + de.name,
                                    f"not a regular file ({_kind(s.st_mode)}), skipped",
                                )
                        except FileNotFoundError:
                            report(prefix + de.name, "disappeared during the walk, skipped")
                        except OSError as exc:
                            report(prefix + de.name, f"cannot read entry: {_reason(exc)}")
            except OSError as exc:
                report(where, f"cannot list directory: {_reason(exc)}")
            finally:
                close(fd)
            if len(stack) - below > 1:
                # Subfolders are visited in name order, so the walk finds manifests nearly in
                # path order: the order a crawl assembles and pushes them in, which can then
                # start while the files found last are still being parsed.
                stack[below:] = sorted(stack[below:], reverse=True)
            # Listed after the scan: what was found before a listing error still counts.
            yield where, files, folders

    def _follow(
        self,
        link_abs: str,
        rel: str,
        ancestors: tuple[_DevIno, ...],
        report: ProblemSink,
    ) -> Iterator[Entry]:
        # Rare path: resolving costs a few syscalls per link, which is fine off the hot loop.
        try:
            real = os.path.realpath(link_abs, strict=True)
        except FileNotFoundError:
            report(rel, "dangling symlink, skipped")
            return
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                report(rel, "symlink loop, skipped")
            else:
                report(rel, f"cannot resolve symlink: {_reason(exc)}")
            return
        if not self._contains(real):
            report(rel, "symlink points outside the volume, skipped")
            return
        s = os.stat(real)
        if st_mod.S_ISREG(s.st_mode):
            yield Entry(rel, s.st_size, s.st_mtime_ns, False)
            return
        if not st_mod.S_ISDIR(s.st_mode):
            report(rel, f"not a regular file ({_kind(s.st_mode)}), skipped")
            return
        if (s.st_dev, s.st_ino) in ancestors:
            report(rel, "symlink loop, skipped")
            return
        target = os.path.relpath(real, self.root)
        report(rel, f"{LINKED_FOLDER} ({target!r}), which is crawled under that path; not followed")

    # -- single entries ------------------------------------------------------------------------

    def _resolve(self, path: str) -> tuple[str, str]:
        rel = normalize_relpath(path)
        real = os.path.realpath(os.path.join(self.root, rel) if rel else self.root)
        if not self._contains(real):
            raise PathOutsideVolume(f"{rel!r} resolves outside the volume", path=rel)
        return rel, real

    def stat(self, path: str) -> Entry:
        rel, real = self._resolve(path)
        try:
            s = os.stat(real)
        except OSError as exc:
            raise _translate(exc, rel) from exc
        if st_mod.S_ISDIR(s.st_mode):
            return Entry(rel, s.st_size, s.st_mtime_ns, True)
        if st_mod.S_ISREG(s.st_mode):
            return Entry(rel, s.st_size, s.st_mtime_ns, False)
        raise NotAFile(f"{rel!r} is not a regular file ({_kind(s.st_mode)})", path=rel)

    # -- reading ahead -------------------------------------------------------------------------

    def read_ahead(self, path: str, nbytes: int, *, from_end: bool = False) -> None:
        """Opens ``path`` now and has the kernel start reading its first ``nbytes`` (its last,
        ``from_end``) into the page cache, without waiting for them: the next ``read``,
        ``read_head`` or ``open`` of the same ``path`` takes this descriptor instead of
        opening the file again.

        A crawl reads two small files per manifest (the manifest and its data's head or
        footer); when they are not cached, each read waited for the disk in turn: 10,000
        manifests took 0.94 s to read one by one, 0.11 s when a hundred at a time were asked
        for first, and less CPU too. The same checks as any read apply (a regular file inside
        the volume); a file that fails them, or any error, is left for the read to report.
        ``drop_ahead`` closes what no read took."""
        if path in self._ahead or len(self._ahead) >= _MAX_AHEAD:
            return
        try:
            opened = self._open(path)
        except (VolumeError, OSError):
            return
        _, fd, size = opened
        offset = max(0, size - nbytes) if from_end else 0
        with contextlib.suppress(OSError, AttributeError):  # no posix_fadvise: still opened once
            os.posix_fadvise(fd, offset, min(nbytes, size), os.POSIX_FADV_WILLNEED)
        self._ahead[path] = opened

    def drop_ahead(self) -> None:
        """Closes the files ``read_ahead`` opened that no read took."""
        ahead, self._ahead = self._ahead, {}
        for _, fd, _ in ahead.values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _open(self, path: str) -> tuple[str, int, int]:
        """(relative path, descriptor, size) of a regular file inside the volume, opened for
        reading; the caller closes the descriptor."""
        if self._ahead:
            opened = self._ahead.pop(path, None)
            if opened is not None:
                return opened
        if _FD_PATHS:
            rel = normalize_relpath(path)
            opened = self._open_checked_after(rel) if rel else None
            if opened is not None:
                return opened
        rel, real = self._resolve(path)
        try:
            # Checked before opening: merely opening a FIFO or a device can block or have
            # side effects (tape rewind), so those are never opened at all.
            s = os.stat(real)
        except OSError as exc:
            raise _translate(exc, rel) from exc
        if not st_mod.S_ISREG(s.st_mode):
            raise NotAFile(f"{rel!r} is not a regular file ({_kind(s.st_mode)})", path=rel)
        try:
            fd = os.open(real, _FILE_FLAGS)
        except OSError as exc:
            raise _translate(exc, rel) from exc
        try:
            # Checked again on the descriptor, in case the path was swapped since the stat.
            s = os.fstat(fd)
            if not st_mod.S_ISREG(s.st_mode):
                raise NotAFile(f"{rel!r} is not a regular file ({_kind(s.st_mode)})", path=rel)
            # Some FUSE filesystems pass O_NONBLOCK through to reads; restore normal reads.
            os.set_blocking(fd, True)
            return rel, fd, s.st_size
        except BaseException:
            os.close(fd)
            raise

    def _open_checked_after(self, rel: str) -> tuple[str, int, int] | None:
        """The common case in four system calls: a regular file inside the volume, opened
        through its path and then checked by where the kernel says the descriptor points.

        ``realpath`` costs an lstat per folder of the path in Python, which made it most of
        a cold crawl's reading. Checking the opened descriptor instead is at least as strict:
        what is checked is what was opened, with no window between check and open. Anything
        else (not a regular file, outside the volume, an error) returns None, and the
        resolving path below says what is wrong in its own words.
        """
        full = self._prefix + rel
        try:
            s = os.stat(full)
        except OSError:
            return None
        # Never opened unless it is a regular file: opening a device can have side effects.
        if not st_mod.S_ISREG(s.st_mode):
            return None
        try:
            # A link to a file inside the volume is read like that file, as below.
            fd = os.open(full, _FILE_FLAGS & ~os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            f = os.fstat(fd)
            if (
                not st_mod.S_ISREG(f.st_mode)
                or (f.st_dev, f.st_ino) != (s.st_dev, s.st_ino)
                or not self._contains(os.readlink(f"{_FD_PATHS}/{fd}"))
            ):
                os.close(fd)
                return None
            os.set_blocking(fd, True)
            return rel, fd, f.st_size
        except OSError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise

    def open(self, path: str, size: int | None = None) -> BinaryIO:
        # The open file's own fstat is free here; a size from a listing adds nothing.
        return os.fdopen(self._open(path)[1], "rb")

    # read and read_head take the bytes from the descriptor itself: a file object (FileIO
    # and BufferedReader) for one read cost a third of reading a small file, and a crawl
    # reads two (a manifest and its data's head) per manifest.

    def read(self, path: str, max_bytes: int) -> bytes:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        rel, fd, size = self._open(path)
        try:
            if size > max_bytes:
                raise EntryTooLarge(rel, size, max_bytes)
            # Sized from fstat rather than max_bytes: a read of n bytes allocates n up front.
            data = _read_sized(fd, size, max_bytes + 1)
        finally:
            os.close(fd)
        if len(data) > max_bytes:
            raise EntryTooLarge(rel, len(data), max_bytes)
        return data

    def read_head(self, path: str, max_bytes: int) -> bytes:
        """The file's first ``max_bytes`` bytes (all of it when shorter): what ``open`` and
        one ``read(max_bytes)`` give, without the file object."""
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        _, fd, size = self._open(path)
        try:
            return _read_sized(fd, size, max_bytes)
        finally:
            os.close(fd)

    def url_for(self, path: str) -> str:
        rel = normalize_relpath(path)
        return file_url(os.path.join(self.root, rel)) if rel else self.url

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replaces the file at ``path`` atomically: a temporary file beside it, synced, then
        renamed over it, so a reader (or a crash) sees the old bytes or the new, never half."""
        rel, real = self._resolve(path)
        if not rel:
            raise NotAFile("the volume root is a folder, not a file", path="")
        folder = os.path.dirname(real)
        tmp = os.path.join(folder, f".{os.path.basename(real)}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, real)
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise _translate(exc, rel) from exc


def _read_sized(fd: int, size: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``fd``, asking first for the ``size`` its fstat gave (plus
    one, to see whether it grew since: then on, still capped, as the size may lie, as in
    /proc)."""
    want = min(size + 1, limit)
    data = _read_up_to(fd, want)
    if len(data) == want and want < limit:
        data += _read_up_to(fd, limit - want)
    return data


def _read_up_to(fd: int, n: int) -> bytes:
    """``n`` bytes, or fewer at the end of the file: a read may return less than asked
    before the end (on some filesystems, or once interrupted), as a file object's read does
    not."""
    data = os.read(fd, n)
    if not data or len(data) == n:
        return data
    parts = [data]
    left = n - len(data)
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _log_problem(path: str, reason: str) -> None:
    # Without a sink, problems still surface (design rule: every problem is reported).
    log.warning("walk: %s: %s", path or "<root>", reason)


# RFC 3986 allows sub-delimiters in a path: keeping them makes partition paths such as
# date=2026-01-01/part-*.parquet readable in the catalogue.
_PATH_SAFE = "/:@!$&'()*+,;="


def file_url(path: str) -> str:
    return "file://" + quote_from_bytes(os.fsencode(path), safe=_PATH_SAFE)

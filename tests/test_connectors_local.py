"""The local connector on real directories: walk rules, path safety, size caps, the registry."""

from __future__ import annotations

import inspect
import logging
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors import (
    LINKED_FOLDER,
    Entry,
    EntryNotFound,
    EntryTooLarge,
    LocalVolume,
    NotAFile,
    PathOutsideVolume,
    UnsupportedScheme,
    Volume,
    VolumeError,
    normalize_relpath,
    open_volume,
    redact_url,
)

IS_ROOT = os.geteuid() == 0


class Problems:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def __call__(self, path: str, reason: str) -> None:
        self.items.append((path, reason))

    def reasons_for(self, path: str) -> list[str]:
        return [reason for p, reason in self.items if p == path]


def walk(volume: LocalVolume) -> tuple[dict[str, Entry], Problems]:
    problems = Problems()
    entries: dict[str, Entry] = {}
    for entry in volume.walk(problems):
        assert entry.path not in entries, f"{entry.path} yielded twice"
        entries[entry.path] = entry
    return entries, problems


def write(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def finishes_quickly(fn: Callable[[], Any], timeout: float = 5.0) -> BaseException | None:
    """Run fn in a thread and return what it raised; fail if it is still running after timeout."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "call blocked"
    return outcome[0]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "vol"
    path.mkdir()
    return path


# -- walking -------------------------------------------------------------------------------


def test_walk_nested_tree_yields_files_and_dirs_with_stat(root: Path) -> None:
    write(root / "top.txt", b"12345")
    write(root / "a" / "b" / "c" / "deep.yaml", b"x" * 42)
    write(root / "a" / "sibling.csv", b"1,2\n")
    (root / "empty").mkdir()

    entries, problems = walk(LocalVolume(root))

    assert problems.items == []
    assert {p: e.is_dir for p, e in entries.items()} == {
        "top.txt": False,
        "a": True,
        "a/b": True,
        "a/b/c": True,
        "a/b/c/deep.yaml": False,
        "a/sibling.csv": False,
        "empty": True,
    }
    deep = entries["a/b/c/deep.yaml"]
    assert deep.size == 42
    assert deep.name == "deep.yaml"
    assert deep.mtime_ns == os.stat(root / "a/b/c/deep.yaml").st_mtime_ns
    assert entries["top.txt"].name == "top.txt"
    with pytest.raises(AttributeError):
        deep.size = 1  # type: ignore[misc]


def test_walk_unicode_and_awkward_names(root: Path) -> None:
    names = ["données/été.yaml", "日本/ファイル.csv", "with space/a#b%c?.txt"]
    for name in names:
        write(root / name, name.encode())

    volume = LocalVolume(root)
    entries, problems = walk(volume)

    assert problems.items == []
    for name in names:
        assert entries[name].size == len(name.encode())
        assert volume.read(name, 1024) == name.encode()
    url = volume.url_for("with space/a#b%c?.txt")
    assert url == (root / "with space" / "a#b%c?.txt").as_uri()
    assert "%20" in url and "#" not in url and "?" not in url
    # A directory URL handed back to the registry opens the same directory.
    sub = open_volume(volume.url_for("données"))
    assert sub.read("été.yaml", 1024) == "données/été.yaml".encode()


def test_walk_is_lazy(root: Path) -> None:
    (root / "a").mkdir()
    gen = LocalVolume(root).walk()
    assert inspect.isgenerator(gen)

    first = next(gen)
    assert first.path == "a" and first.is_dir
    # 'a' has been yielded but not listed yet, so a file created now must still show up.
    write(root / "a" / "late.txt", b"hi")
    assert [e.path for e in gen] == ["a/late.txt"]


def test_walk_folders_lists_each_folder_once_files_then_subfolders(root: Path) -> None:
    write(root / "top.txt", b"1")
    write(root / "a" / "x.csv", b"22")
    write(root / "a" / "b" / "y.csv", b"333")
    (root / "empty").mkdir()
    os.symlink(root / "top.txt", root / "a" / "link.txt")

    volume = LocalVolume(root)
    listings = list(volume.walk_folders())
    by_folder = {
        folder: (sorted(f.path for f in files), sorted(d.path for d in dirs))
        for folder, files, dirs in listings
    }
    assert len(listings) == len(by_folder) == 4
    assert by_folder == {
        "": (["top.txt"], ["a", "empty"]),
        "a": (["a/link.txt", "a/x.csv"], ["a/b"]),
        "a/b": (["a/b/y.csv"], []),
        "empty": ([], []),
    }
    assert all(not f.is_dir for _, files, _ in listings for f in files)
    assert all(d.is_dir for _, _, dirs in listings for d in dirs)
    # walk() is the same entries, each folder's files before its subfolders.
    flat = [e for _, files, dirs in listings for e in (*files, *dirs)]
    assert list(volume.walk()) == flat


def test_walk_large_directory(root: Path) -> None:
    count = 5000
    for i in range(count):
        (root / f"f{i:05d}.parquet").write_bytes(b"x" * (i % 7))

    entries, problems = walk(LocalVolume(root))

    assert problems.items == []
    assert len(entries) == count
    assert entries["f04999.parquet"].size == 4999 % 7
    assert all(not e.is_dir for e in entries.values())


def test_symlink_loops_are_reported_not_followed(root: Path) -> None:
    write(root / "a" / "f.txt", b"f")
    (root / "a" / "up").symlink_to("..")
    (root / "a" / "self").symlink_to(".")
    (root / "x").symlink_to("y")  # x -> y -> x: the kernel's ELOOP
    (root / "y").symlink_to("x")

    entries, problems = walk(LocalVolume(root))

    assert set(entries) == {"a", "a/f.txt"}
    for link in ("a/up", "a/self", "x", "y"):
        assert problems.reasons_for(link) == ["symlink loop, skipped"], link


def test_symlinked_directory_inside_root_is_walked_once_under_its_real_path(root: Path) -> None:
    write(root / "real" / "f.txt", b"abc")
    (root / "link1").symlink_to("real")
    (root / "link2").symlink_to(root / "real")  # absolute target, same directory
    (root / "real" / "sub").mkdir()
    (root / "real" / "sub" / "sibling").symlink_to("../../real")  # back into the volume
    write(root / "data.csv", b"1234")
    (root / "alias.csv").symlink_to("data.csv")

    entries, problems = walk(LocalVolume(root))

    assert entries["real/f.txt"].size == 3
    assert sorted(p for p in entries if p.endswith("f.txt")) == ["real/f.txt"]
    for link in ("link1", "link2"):
        assert link not in entries
        assert problems.reasons_for(link) == [
            f"{LINKED_FOLDER} ('real'), which is crawled under that path; not followed"
        ]
    # A link to one of its own ancestors is a loop, reported once as such.
    assert problems.reasons_for("real/sub/sibling") == ["symlink loop, skipped"]
    assert len(problems.items) == 3
    # A file symlink inside the root is an ordinary file with its target's size.
    assert entries["alias.csv"] == Entry("alias.csv", 4, entries["alias.csv"].mtime_ns, False)


def test_symlinks_outside_root_are_not_followed(tmp_path: Path, root: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "secret.txt", b"secret")
    (root / "dirlink").symlink_to(outside)
    (root / "filelink").symlink_to(outside / "secret.txt")
    (root / "relative").symlink_to("../outside")

    volume = LocalVolume(root)
    entries, problems = walk(volume)

    assert entries == {}
    for link in ("dirlink", "filelink", "relative"):
        assert problems.reasons_for(link) == ["symlink points outside the volume, skipped"]
    with pytest.raises(PathOutsideVolume):
        volume.read("filelink", 100)
    with pytest.raises(PathOutsideVolume):
        volume.open("dirlink/secret.txt")
    with pytest.raises(PathOutsideVolume):
        volume.stat("relative/secret.txt")


def test_dangling_symlink_is_reported(root: Path) -> None:
    (root / "gone").symlink_to("nowhere.txt")
    write(root / "ok.txt")

    volume = LocalVolume(root)
    entries, problems = walk(volume)

    assert set(entries) == {"ok.txt"}
    assert problems.items == [("gone", "dangling symlink, skipped")]
    with pytest.raises(EntryNotFound):
        volume.read("gone", 10)


def test_directory_removed_mid_walk_is_reported_and_walk_continues(root: Path) -> None:
    write(root / "doomed" / "f.txt")
    write(root / "kept" / "g.txt")
    problems = Problems()
    seen = []
    for entry in LocalVolume(root).walk(problems):
        seen.append(entry.path)
        if entry.path == "doomed":
            # Yielded from the root's listing, not scanned yet: this is a real ENOENT race.
            shutil.rmtree(root / "doomed")

    assert "kept/g.txt" in seen
    assert "doomed/f.txt" not in seen
    assert problems.items == [("doomed", "cannot open directory: No such file or directory")]


def test_directory_swapped_for_outside_symlink_mid_walk_is_not_followed(
    tmp_path: Path, root: Path
) -> None:
    write(tmp_path / "outside" / "secret.txt", b"secret")
    write(root / "a" / "f.txt")
    problems = Problems()
    seen = []
    for entry in LocalVolume(root).walk(problems):
        seen.append(entry.path)
        if entry.path == "a":
            shutil.rmtree(root / "a")
            (root / "a").symlink_to(tmp_path / "outside")

    assert seen == ["a"]
    assert [p for p, _ in problems.items] == ["a"]
    assert problems.items[0][1].startswith("cannot open directory:")


def test_fifo_is_skipped_reported_and_never_blocks(root: Path) -> None:
    os.mkfifo(root / "pipe")
    write(root / "ok.txt", b"ok")
    volume = LocalVolume(root)

    entries, problems = walk(volume)

    assert set(entries) == {"ok.txt"}
    assert problems.items == [("pipe", "not a regular file (fifo), skipped")]
    # No writer ever opens the FIFO: a plain open() for reading would hang here.
    for call in (lambda: volume.read("pipe", 10), lambda: volume.open("pipe")):
        raised = finishes_quickly(call)
        assert isinstance(raised, NotAFile)
        assert "fifo" in str(raised)
    assert isinstance(finishes_quickly(lambda: volume.stat("pipe")), NotAFile)


def test_problems_without_a_sink_are_logged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    (root / "gone").symlink_to("nowhere")
    with caplog.at_level(logging.WARNING, logger="cairn.connectors"):
        assert list(LocalVolume(root).walk()) == []
    assert "gone: dangling symlink, skipped" in caplog.text


# -- single entries ------------------------------------------------------------------------


def test_read_notices_content_beyond_the_reported_size() -> None:
    # /proc files report size 0 yet have content; the cap must count bytes, not trust stat.
    proc_root = LocalVolume("/proc/self")
    assert proc_root.stat("status").size == 0
    data = proc_root.read("status", 1 << 20)
    assert b"Name:" in data
    with pytest.raises(EntryTooLarge):
        proc_root.read("status", 5)


def test_read_head_gives_what_open_and_one_read_give(tmp_path: Path) -> None:
    volume = LocalVolume(tmp_path)
    for size in (0, 1, 63, 64, 65, 5000):
        (tmp_path / f"f{size}").write_bytes(bytes(i % 251 for i in range(size)))
        for limit in (0, 1, 64, 4096):
            with volume.open(f"f{size}") as f:
                assert volume.read_head(f"f{size}", limit) == f.read(limit)
    # Content beyond the reported size (as /proc's) is read up to the limit, as by open().
    proc_root = LocalVolume("/proc/self")
    head = proc_root.read_head("status", 64)
    assert len(head) == 64 and head.startswith(b"Name:")
    # The same refusals as open(): what is not a regular file inside the volume is not read.
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "out").symlink_to("/etc/hostname")
    for path, error in (
        ("missing", EntryNotFound),
        ("folder", NotAFile),
        ("pipe", NotAFile),
        ("out", PathOutsideVolume),
        ("../x", PathOutsideVolume),
    ):
        with pytest.raises(error):
            volume.open(path)
        with pytest.raises(error):
            volume.read_head(path, 64)


def test_a_read_shorter_than_asked_before_the_end_is_read_on() -> None:
    from connectors.local import _read_up_to

    # A pipe hands out what was written so far: the first read comes back short.
    r, w = os.pipe()
    try:

        def write() -> None:
            os.write(w, b"abc")
            threading.Event().wait(0.05)
            os.write(w, b"defgh")
            os.close(w)

        writer = threading.Thread(target=write)
        writer.start()
        assert _read_up_to(r, 6) == b"abcdef"
        assert _read_up_to(r, 6) == b"gh"  # the end comes first
        assert _read_up_to(r, 6) == b""
        writer.join()
    finally:
        os.close(r)


def test_open_is_seekable_and_reads_parquet(root: Path) -> None:
    table = pa.table({"store_id": [1, 2, 3], "amount": [1.5, 2.5, 3.5]})
    pq.write_table(table, root / "part-0.parquet")
    volume = LocalVolume(root)

    with volume.open("part-0.parquet") as f:
        assert f.seekable()
        schema = pq.ParquetFile(f).schema_arrow
    assert schema.names == ["store_id", "amount"]
    assert schema.field("amount").type == pa.float64()


def test_stat(root: Path) -> None:
    write(root / "d" / "f.txt", b"abc")
    volume = LocalVolume(root)

    assert volume.stat("d/f.txt").size == 3
    assert volume.stat("d/./f.txt").path == "d/f.txt"
    assert volume.stat("d").is_dir
    top = volume.stat("")
    assert top.path == "" and top.is_dir
    with pytest.raises(EntryNotFound):
        volume.stat("d/missing")
    with pytest.raises(EntryNotFound):
        volume.stat("d/f.txt/below")


def test_dotdot_and_absolute_paths_are_rejected(tmp_path: Path, root: Path) -> None:
    write(tmp_path / "secret.txt", b"secret")
    volume = LocalVolume(root)

    for bad in ("../secret.txt", "a/../../secret.txt", "/etc/passwd", str(tmp_path / "secret.txt")):
        with pytest.raises(PathOutsideVolume):
            volume.read(bad, 100)
        with pytest.raises(PathOutsideVolume):
            volume.url_for(bad)
    assert normalize_relpath("a/./b/../c//d/") == "a/c/d"
    assert normalize_relpath("") == normalize_relpath(".") == ""
    with pytest.raises(VolumeError):
        normalize_relpath("a\x00b")


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("a/b.yaml", "a/b.yaml"),
        ("a/.hidden/b", "a/.hidden/b"),
        (".hidden", ".hidden"),
        ("a./b..", "a./b.."),
        ("./a", "a"),
        ("a/.", "a"),
        ("a/", "a"),
        ("a//b", "a/b"),
        ("a/b/..", "a"),
        ("..a/b", "..a/b"),
    ],
)
def test_relative_paths_come_back_canonical(path: str, canonical: str) -> None:
    # Paths already canonical are handed back as they are; the others are rebuilt.
    assert normalize_relpath(path) == canonical
    for climbing in ("..", "a/../..", "./.."):
        with pytest.raises(PathOutsideVolume):
            normalize_relpath(climbing)


# -- registry ------------------------------------------------------------------------------


def test_registry_opens_local_volumes(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(root / "m.yaml", b"name: x")

    by_path = open_volume(str(root))
    by_url = open_volume(root.as_uri())
    by_localhost = open_volume("file://localhost" + str(root))
    monkeypatch.chdir(root.parent)
    by_relative = open_volume("vol")

    for volume in (by_path, by_url, by_localhost, by_relative):
        assert isinstance(volume, LocalVolume)
        assert isinstance(volume, Volume)
        assert volume.scheme == "file"
        assert volume.url == root.as_uri()
        assert volume.read("m.yaml", 100) == b"name: x"
    assert by_path.url_for("m.yaml") == (root / "m.yaml").as_uri()


def test_registry_rejects_unknown_scheme() -> None:
    with pytest.raises(
        UnsupportedScheme,
        match=r"unknown volume scheme 'gs://'; supported: abfs, abfss, az, file, hdfs, s3, webhdfs",
    ):
        open_volume("gs://bucket/key")


def test_registry_errors_for_bad_roots(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(VolumeError, match="does not exist") as info:
        open_volume(str(missing))
    assert str(missing) in str(info.value)
    with pytest.raises(VolumeError, match="does not exist"):
        open_volume(missing.as_uri())
    afile = write(tmp_path / "file.txt")
    with pytest.raises(VolumeError, match="is not a directory"):
        open_volume(str(afile))
    with pytest.raises(VolumeError, match="only local paths"):
        open_volume("file://otherhost/data")
    with pytest.raises(VolumeError, match="no query string") as info:
        open_volume(tmp_path.as_uri() + "?token=abc")
    assert "abc" not in str(info.value)
    with pytest.raises(VolumeError, match="no options"):
        open_volume(str(tmp_path), account_key="k")
    with pytest.raises(VolumeError):
        open_volume("")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "webhdfs://alice:s3cret@nn:9870/data?delegation=TOKEN#frag",
            "webhdfs://alice@nn:9870/data",
        ),
        (
            "abfss://fs@acct.dfs.core.windows.net/p/q?sv=2024&sig=SIGNATURE",
            "abfss://fs@acct.dfs.core.windows.net/p/q",
        ),
        ("https://u:p@ss@host/x", "https://u@host/x"),
        ("hdfs://:onlypass@host/x", "hdfs://host/x"),
        ("file:///data/lake", "file:///data/lake"),
        ("/plain/path", "/plain/path"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    redacted = redact_url(url)
    assert redacted == expected
    for secret in ("s3cret", "TOKEN", "SIGNATURE", "p@ss", "onlypass"):
        assert secret not in redacted


def test_reads_through_links_inside_the_root_and_swapped_files(tmp_path: Path, root: Path) -> None:
    # Reads check the opened descriptor's real path: links to files inside the volume read
    # their target; a file swapped for a link to the outside after the walk is refused.
    write(root / "real" / "data.csv", b"a,b\n")
    (root / "alias.csv").symlink_to("real/data.csv")
    (root / "dirlink").symlink_to("real")
    volume = LocalVolume(root)
    assert volume.read("alias.csv", 100) == b"a,b\n"
    assert volume.read("dirlink/data.csv", 100) == b"a,b\n"
    with volume.open("real/../alias.csv") as f:
        assert f.read() == b"a,b\n"
    write(tmp_path / "outside" / "secret.txt", b"secret")
    (root / "real" / "data.csv").unlink()
    (root / "real" / "data.csv").symlink_to(tmp_path / "outside" / "secret.txt")
    with pytest.raises(PathOutsideVolume):
        volume.read("alias.csv", 100)
    with pytest.raises(PathOutsideVolume):
        volume.read("real/data.csv", 100)


def test_walk_visits_subfolders_in_name_order(root: Path) -> None:
    # Created out of order: the listing order of a folder is the file system's, the walk's
    # order of subfolders is by name, so manifests are found nearly in path order.
    for name in ["m", "c", "x", "a", "k"]:
        write(root / name / "f.csv", b"1")
        write(root / "c" / name / "g.csv", b"1")
    folders = [folder for folder, _, _ in LocalVolume(root).walk_folders()]
    assert folders == ["", "a", "c", "c/a", "c/c", "c/k", "c/m", "c/x", "k", "m", "x"]


def test_every_connector_closes_at_the_end_of_a_with_block(root: Path) -> None:
    from connectors.adls import AdlsVolume
    from connectors.s3 import S3Volume
    from connectors.webhdfs import HdfsVolume

    for cls in (LocalVolume, HdfsVolume, S3Volume, AdlsVolume):
        assert hasattr(cls, "__enter__") and hasattr(cls, "__exit__"), cls
    closed: list[str] = []
    volume = LocalVolume(root)
    volume.close = lambda: closed.append("closed")  # type: ignore[method-assign]
    with pytest.raises(RuntimeError), volume as entered:
        assert entered is volume
        raise RuntimeError("the block fails")
    assert closed == ["closed"]


# -- reading ahead -------------------------------------------------------------------------


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_read_ahead_hands_its_descriptor_to_the_next_read_and_keeps_none(root: Path) -> None:
    write(root / "a" / "MANIFEST.yaml", b"name: a\n")
    write(root / "a" / "data.csv", b"id,x\n" * 1000)
    pq.write_table(pa.table({"id": [1, 2]}), root / "a" / "part.parquet")
    volume = LocalVolume(root)
    before = _open_fds()
    volume.read_ahead("a/MANIFEST.yaml", 1 << 20)
    volume.read_ahead("a/data.csv", 64)
    volume.read_ahead("a/part.parquet", 1 << 16, from_end=True)
    volume.read_ahead("a/MANIFEST.yaml", 1 << 20)  # asked twice: opened once
    assert len(_open_fds() - before) == 3
    assert volume.read("a/MANIFEST.yaml", 100) == b"name: a\n"
    assert volume.read_head("a/data.csv", 10) == b"id,x\nid,x\n"
    with volume.open("a/part.parquet") as f:
        assert pq.ParquetFile(f).schema_arrow.names == ["id"]
    assert _open_fds() == before
    # Taken once: the next read opens the file again, as without read_ahead.
    assert volume.read("a/MANIFEST.yaml", 100) == b"name: a\n"
    assert _open_fds() == before


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_read_ahead_of_what_a_read_refuses_holds_nothing_and_the_read_says_why(
    tmp_path: Path, root: Path
) -> None:
    write(tmp_path / "outside" / "secret.txt", b"secret")
    (root / "out.csv").symlink_to(tmp_path / "outside" / "secret.txt")
    os.mkfifo(root / "pipe.csv")
    (root / "folder.csv").mkdir()
    volume = LocalVolume(root)
    before = _open_fds()
    for path in ("out.csv", "pipe.csv", "folder.csv", "gone.csv", "../x.csv"):
        assert finishes_quickly(lambda p=path: volume.read_ahead(p, 64)) is None  # type: ignore[misc]
    assert _open_fds() == before
    with pytest.raises(PathOutsideVolume):
        volume.read("out.csv", 100)
    with pytest.raises(NotAFile):
        volume.read("pipe.csv", 100)
    with pytest.raises(EntryNotFound):
        volume.read("gone.csv", 100)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_what_no_read_took_is_closed_by_drop_ahead_and_by_close(root: Path) -> None:
    write(root / "a.csv", b"a\n")
    write(root / "b.csv", b"b\n")
    before = _open_fds()
    volume = LocalVolume(root)
    volume.read_ahead("a.csv", 64)
    volume.drop_ahead()
    assert _open_fds() == before
    with volume:
        volume.read_ahead("b.csv", 64)
    assert _open_fds() == before
    # Dropped, not lost: the file is read as it is now.
    write(root / "a.csv", b"changed\n")
    assert volume.read("a.csv", 100) == b"changed\n"

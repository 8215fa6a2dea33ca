"""Unit tests of the crawler's pure pieces: name patterns, location globs, data selection."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors import LocalVolume
from connectors.base import Entry
from crawler.config import ConfigError, parse_duration
from crawler.crawl import NamePatterns, _schema_candidate, glob_regex, select_data, walk_tree


@pytest.mark.parametrize(
    ("segments", "path", "matches"),
    [
        (["part-*.parquet"], "part-0.parquet", True),
        (["part-*.parquet"], "x/part-0.parquet", False),
        (["date=*", "*.parquet"], "date=2026-01-01/events.parquet", True),
        (["date=*", "*.parquet"], "date=2026-01-01/x/events.parquet", False),
        (["**", "*.parquet"], "a/b/c.parquet", True),
        (["**", "*.parquet"], "c.parquet", True),
        (["**"], "a/b/c.csv", True),
        (["a?c"], "abc", True),
        (["a?c"], "a/c", False),
        (["p[0-9].csv"], "p3.csv", True),
        (["p[!0-9].csv"], "p3.csv", False),
        (["p[!0-9].csv"], "pa.csv", True),
        (["a.b"], "axb", False),
        (["x[.csv"], "x[.csv", True),
    ],
)
def test_glob_regex(segments: list[str], path: str, matches: bool) -> None:
    assert bool(glob_regex(segments).fullmatch(path)) is matches


def test_name_patterns() -> None:
    patterns = NamePatterns(["MANIFEST.yaml", "*.cairn.yml", r"re:^meta-\d+\.ya?ml$"])
    assert patterns.matches("MANIFEST.yaml")
    assert not patterns.matches("manifest.yaml")
    assert patterns.matches("sales.cairn.yml")
    assert patterns.matches("meta-12.yml")
    assert not patterns.matches("meta-x.yml")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h30m", 5400), ("@every 2m", 120), ("5", 5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "15 parsecs", "0s", "-1m", ""])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def make(root: Path, files: dict[str, bytes]) -> LocalVolume:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return LocalVolume(root)


def test_select_data_partitioned_and_globs(tmp_path: Path) -> None:
    volume = make(
        tmp_path,
        {
            "events/MANIFEST.yaml": b"",
            "events/date=2026-01-01/part-0.csv": b"a,b\n1,2\n",
            "events/date=2026-01-02/part-0.csv": b"a,b\n3,4\n5,6\n",
            "events/_SUCCESS": b"",
            "other/MANIFEST.yaml": b"",
            "other/readme.txt": b"hello",
        },
    )
    tree = walk_tree(volume, NamePatterns(["MANIFEST.yaml"]))
    folder = select_data(tree, volume, "events/MANIFEST.yaml", None)
    assert folder.count == 3 and folder.size == 8 + 12
    # No data file beside the manifest: the schema comes from the first partition.
    assert [f.path for f in folder.files] == ["events/date=2026-01-01/part-0.csv"]
    glob = select_data(tree, volume, "events/MANIFEST.yaml", "./date=*/part-*.csv")
    assert glob.count == 2 and glob.problem is None
    assert glob.location_url and glob.location_url.endswith("events/date=*/part-*.csv")
    outside = select_data(tree, volume, "events/MANIFEST.yaml", "../../etc")
    assert outside.problem and "outside the volume" in outside.problem
    missing = select_data(tree, volume, "other/MANIFEST.yaml", "./nothing-*.csv")
    assert missing.problem and "matches no file" in missing.problem
    sibling = select_data(tree, volume, "other/MANIFEST.yaml", "../events")
    assert sibling.count == 3
    url = select_data(tree, volume, "other/MANIFEST.yaml", "s3://bucket/x")
    assert url.location_url == "s3://bucket/x" and url.size is None


def test_select_data_reports_a_location_the_volume_cannot_name(tmp_path: Path) -> None:
    volume = make(tmp_path, {"a/MANIFEST.yaml": b""})
    tree = walk_tree(volume, NamePatterns(["MANIFEST.yaml"]))
    nul = select_data(tree, volume, "a/MANIFEST.yaml", "x\x00y")
    assert nul.location_url is None
    assert nul.problem and "NUL" in nul.problem


def test_an_unreadable_root_deletes_nothing(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from cairn.settings import Settings
    from crawler.crawl import Crawler, CrawlReport, Tree
    from crawler.state import ManifestState

    previous = {"a/MANIFEST.yaml": ManifestState("fp", [None], [{"id": "x", "name": "a"}])}
    crawler = Crawler(Settings(data_dir=tmp_path))
    now = datetime.now(UTC)
    report = CrawlReport(volume="file:///x", started_at=now.isoformat())
    lost = Tree(unreadable=["sub"])
    assert [d["id"] for d in crawler._deletions(lost, previous, {}, [], report, now)] == ["x"]
    root = Tree(unreadable=[""])  # "cannot read the volume root": the walk saw nothing
    assert crawler._deletions(root, previous, {}, [], report, now) == []


def test_crawl_state_round_trip_keeps_documents_as_stored_until_asked(tmp_path: Path) -> None:
    from crawler.state import CrawlState, ManifestState

    docs = [{"id": "a1", "name": "a", "schema": [{"name": "x", "type": "int64"}]}]
    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    state.save({"a/MANIFEST.yaml": ManifestState("fp", ["./x"], docs)}, [])
    state.close()
    again = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    loaded = again.load()["a/MANIFEST.yaml"]
    assert (loaded.fingerprint, loaded.locations, loaded.docs) == ("fp", ["./x"], docs)
    assert loaded.ids() == {"a1"}
    again.save({}, ["a/MANIFEST.yaml"])
    assert again.load() == {}
    again.close()
    # Another catalogue is another state: nothing was pushed there yet.
    other = CrawlState(tmp_path, "file:///lake", "catalogue-2")
    assert other.path != again.path and other.load() == {}
    other.close()


def test_a_state_kept_per_volume_only_is_removed(tmp_path: Path) -> None:
    import hashlib

    from crawler.state import CrawlState

    legacy = tmp_path / f"{hashlib.sha256(b'file:///lake').hexdigest()[:16]}.db"
    legacy.write_bytes(b"")
    CrawlState(tmp_path, "file:///lake", "catalogue-1").close()
    assert not legacy.exists()


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["csv", "b.CSV", "a.tsv"], "d/b.CSV"),  # a name without a dot has no extension
        (["a.tsv", "b.csv", "z.Parquet", "y.parq"], "d/z.Parquet"),
        (["a.csv.gz", "part.json", "parquet"], None),
    ],
)
def test_schema_candidate_prefers_parquet_then_csv(names: list[str], expected: str | None) -> None:
    files = [Entry(f"d/{n}", 1, 1, False) for n in names]
    assert _schema_candidate(files) == expected

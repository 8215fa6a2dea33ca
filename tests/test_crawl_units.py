"""Unit tests of the crawler's pure pieces: name patterns, location globs, data selection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from connectors import LocalVolume
from connectors.base import Entry
from crawler.config import ConfigError, parse_duration
from crawler.crawl import (
    CrawlReport,
    NamePatterns,
    _read_schema,
    _schema_candidate,
    data_key,
    data_keys,
    glob_regex,
    select_data,
    walk_tree,
)
from crawler.runner import show_report


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
    # The format the asset's document gets is the one of the files the schema comes from.
    assert folder.guessed_format() == "csv"
    assert select_data(tree, volume, "other/MANIFEST.yaml", None).guessed_format() == "text"
    glob = select_data(tree, volume, "events/MANIFEST.yaml", "./date=*/part-*.csv")
    assert glob.count == 2 and glob.problem is None and glob.guessed_format() == "csv"
    assert glob.location_url and glob.location_url.endswith("events/date=*/part-*.csv")
    outside = select_data(tree, volume, "events/MANIFEST.yaml", "../../etc")
    assert outside.problem and "outside the volume" in outside.problem
    assert (outside.location_url, outside.key()) == (folder.location_url, folder.key())
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
    # Ignored, as the problem says: the manifest's folder, as without a location.
    assert nul.location_url == volume.url_for("a")
    assert nul.problem and "NUL" in nul.problem and "it was ignored" in nul.problem


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
    "name",
    [
        "x.cairn.yaml",
        ".cairn.yaml",
        "x.cairn.yaml.bak",
        "cairn.yaml",
        "x.CAIRN.yaml",
        "a\nb.cairn.yaml",
    ],
)
def test_suffix_patterns_match_as_their_glob_does(name: str) -> None:
    import fnmatch

    patterns = NamePatterns(["*.cairn.yaml"])
    assert patterns.suffixes == (".cairn.yaml",) and patterns.regex is None
    assert patterns.matches(name) is fnmatch.fnmatchcase(name, "*.cairn.yaml")


def test_walk_tree_finds_manifests_by_every_kind_of_pattern(tmp_path: Path) -> None:
    volume = make(
        tmp_path,
        {
            "a/MANIFEST.yaml": b"x",
            "a/data.csv": b"1\n",
            "b/sales.cairn.yml": b"x",
            "b/c/meta-7.yml": b"x",
            "b/c/meta-x.yml": b"x",
            "top.txt": b"x",
        },
    )
    (tmp_path / "d" / "MANIFEST.yaml").mkdir(parents=True)  # a folder named like one
    patterns = NamePatterns(["MANIFEST.yaml", "*.cairn.yml", r"re:meta-\d+\.yml"])
    seen: list[str] = []
    tree = walk_tree(volume, patterns, on_manifest=lambda e: seen.append(e.path))
    assert (
        sorted(tree.manifests)
        == sorted(seen)
        == [
            "a/MANIFEST.yaml",
            "b/c/meta-7.yml",
            "b/sales.cairn.yml",
        ]
    )
    assert tree.files_seen == 6
    assert {d: sorted(f.path for f in fs) for d, fs in tree.files_by_dir.items()} == {
        "": ["top.txt"],
        "a": ["a/data.csv"],
        "b/c": ["b/c/meta-x.yml"],
    }
    assert tree.dirs == {"", "a", "b", "b/c", "d", "d/MANIFEST.yaml"}
    assert [p.path for p in tree.problems] == ["d/MANIFEST.yaml"]


@pytest.mark.parametrize(
    "location", [None, "", ".", "data.csv", "sub", "sub/*.parquet", "../x", "missing", "s3://b/k"]
)
def test_data_key_is_the_selections_key(tmp_path: Path, location: str | None) -> None:
    from crawler.crawl import data_key

    volume = make(
        tmp_path,
        {
            "a/MANIFEST.yaml": b"x",
            "a/data.csv": b"1,2\n",
            "a/sub/p-0.parquet": b"pq",
            "a/sub/deeper/p-1.parquet": b"pqpq",
            "b/other.csv": b"1\n",
        },
    )
    tree = walk_tree(volume, NamePatterns(["MANIFEST.yaml"]))
    expected = select_data(tree, volume, "a/MANIFEST.yaml", location).key()
    assert data_key(tree, volume, "a/MANIFEST.yaml", location) == expected
    assert data_key(tree, volume, "MANIFEST.yaml", location) == (
        select_data(tree, volume, "MANIFEST.yaml", location).key()
    )


def test_crawl_state_counts_documents_of_a_state_written_before_the_count(
    tmp_path: Path,
) -> None:
    import sqlite3

    import orjson

    from crawler.state import CrawlState

    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    path = state.path
    state.close()
    # A state file as earlier versions wrote it: no doc_count column, user_version 0.
    path.unlink()
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE manifests (path TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,"
        " locations BLOB NOT NULL, docs BLOB NOT NULL)"
    )
    docs = [{"id": "a1"}, {"id": "a2"}]
    conn.execute(
        "INSERT INTO manifests VALUES (?, ?, ?, ?)",
        ("a/MANIFEST.yaml", "fp", orjson.dumps([None, "x"]), orjson.dumps(docs)),
    )
    conn.commit()
    conn.close()

    again = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    loaded = again.load()["a/MANIFEST.yaml"]
    assert loaded.count == 2 and loaded._docs is None  # counted without decoding
    assert (loaded.fingerprint, loaded.locations, loaded.docs) == ("fp", [None, "x"], docs)
    again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT doc_count FROM manifests").fetchall() == [(2,)]
        assert conn.execute("PRAGMA user_version").fetchone() == (1,)


def test_profiles_owed_in_a_state_file_of_the_previous_version_outlive_the_save(
    tmp_path: Path,
) -> None:
    # The profile step ran after the save: a crawl killed in it left its assets saved as
    # done and owed nothing, so no later crawl profiled them. The debt is written with the
    # batch's in-flight mark, and only the stores' answer clears it.
    import sqlite3

    import orjson

    from crawler.state import CrawlState, ManifestState

    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    path = state.path
    state.close()
    # The state file as the previous version left it: no profiles_owed table.
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE profiles_owed")
        kept = [{"id": "k", "manifest_path": "keep"}]
        conn.execute(
            "INSERT INTO manifests VALUES (?, ?, ?, ?, ?)",
            ("keep", "fp", b"[null]", orjson.dumps(kept), 1),
        )
    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    assert state.owed_profiles() == []
    docs = {
        "m1": [{"id": "a", "manifest_path": "m1"}, {"id": "b", "manifest_path": "m1"}],
        "m2": [{"id": "c", "manifest_path": "m2"}],
    }
    deleted = {**kept[0], "deleted": True}
    state.mark_unsettled([*docs["m1"], *docs["m2"], deleted], lambda p: p == "keep", profiles=True)
    state.mark_unsettled([{"id": "x", "manifest_path": "m3"}], lambda p: False)  # profiles off
    state.save({p: ManifestState(f"fp-{p}", [None], d) for p, d in docs.items()}, [])
    state.close()

    again = CrawlState(tmp_path, "file:///lake", "catalogue-1")  # after a kill -9
    assert again.owed_profiles() == [*docs["m1"], *docs["m2"]]
    again.profiles_settled(["a"])
    # m2's document is gone, its asset deleted: nothing is left to profile.
    again.save({"m2": ManifestState("fp-m2b", [None], [])}, [])
    assert again.owed_profiles() == [docs["m1"][1]]
    again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT asset_id, path FROM profiles_owed").fetchall() == [("b", "m1")]


def test_a_state_crawled_without_profiles_owes_every_live_asset_a_profile(
    tmp_path: Path,
) -> None:
    # Documents sent with profiles off owe nothing by themselves; a crawl with profiles on
    # profiled only what changed, so a volume crawled once without them never got any.
    import sqlite3

    from crawler.state import CrawlState, ManifestState

    docs = {
        "m1": [{"id": "a", "manifest_path": "m1"}, {"id": "b", "manifest_path": "m1"}],
        "m2": [{"id": "c", "manifest_path": "m2", "deleted": True}],
    }
    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    state.mark_unsettled([*docs["m1"], *docs["m2"]], lambda p: False, profiles=True)
    state.save({p: ManifestState(f"fp-{p}", [None], d) for p, d in docs.items()}, [])
    state.profiles_settled(["a", "b"])
    state.owe_untracked_profiles()  # every crawl marked its debts: none is added
    assert state.owed_profiles() == []
    state.mark_unsettled(docs["m1"][:1], lambda p: True)  # profiles off
    state.owe_untracked_profiles()
    assert state.owed_profiles() == docs["m1"]  # every live asset; not the deleted one
    state.profiles_settled(["a", "b"])
    state.owe_untracked_profiles()  # once: owed again only after another such crawl
    assert state.owed_profiles() == []
    state.close()
    # A state an earlier version wrote (it kept no such record) owes them too.
    with sqlite3.connect(state.path) as conn:
        conn.execute("DROP TABLE profiles_tracked")
    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    state.owe_untracked_profiles()
    assert state.owed_profiles() == docs["m1"]
    state.close()


def test_profiles_owed_by_what_this_crawl_sent_are_not_read_from_the_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cold crawl marks every document it sends as owed; the profile step asked for all of
    # them, decoded, to drop those it sent itself: 800 MB for 100k documents.
    import types

    import orjson

    import crawler.state
    from crawler.state import CrawlState, ManifestState

    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    docs = {
        "m1": [{"id": "a", "manifest_path": "m1"}, {"id": "b", "manifest_path": "m1"}],
        "m2": [{"id": "c", "manifest_path": "m2"}, {"id": "d", "manifest_path": "m2"}],
    }
    state.mark_unsettled([*docs["m1"], *docs["m2"]], lambda p: False, profiles=True)
    state.save({p: ManifestState(f"fp-{p}", [None, None], d) for p, d in docs.items()}, [])
    decoded: list[Any] = []

    def loads(raw: Any) -> Any:
        found = orjson.loads(raw)
        decoded.extend(found if isinstance(found, list) else [found])
        return found

    monkeypatch.setattr(
        crawler.state, "orjson", types.SimpleNamespace(loads=loads, dumps=orjson.dumps)
    )
    assert state.owed_profiles({"a", "b", "c"}) == [docs["m2"][1]]
    # m1's documents were not read at all; of m2's, the one the crawl did not send is kept.
    assert {d["id"] for d in decoded if isinstance(d, dict)} == {"c", "d"}, decoded
    assert state.owed_profiles() == [*docs["m1"], *docs["m2"]]  # nothing was settled
    state.close()


def test_a_crawl_state_that_cannot_record_settled_profiles_is_a_warning(tmp_path: Path) -> None:
    # The push was saved and the profiles sent, yet the crawl said "could not run" (exit 1)
    # and its report was lost. The debt staying is harmless: the next crawl sends it again.
    import sqlite3

    from cairn.settings import Settings
    from crawler.crawl import Crawler, CrawlReport, Tree
    from crawler.state import CrawlState, ManifestState, StateError

    state = CrawlState(tmp_path / "state", "file:///lake", "catalogue-1")
    doc = {"id": "a", "manifest_path": "m1"}  # no data file: settled at once, no store asked
    state.mark_unsettled([doc], lambda p: False, profiles=True)
    state.save({"m1": ManifestState("fp", [None], [doc])}, [])
    crawler = Crawler(
        Settings(data_dir=tmp_path / "data", featurestore_url="http://127.0.0.1:9"),
        catalogue_url="http://127.0.0.1:9",
    )
    report = CrawlReport(volume="file:///lake", started_at="now")
    state._conn.execute("PRAGMA busy_timeout = 0")
    # Another writer holds the file: the profile step's DELETE cannot be written.
    with sqlite3.connect(state.path, isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")
        crawler._profile(LocalVolume(str(tmp_path)), state, report, Tree(), [doc])
        other.execute("ROLLBACK")
    said = [(w.path, w.reason) for w in report.warnings]
    assert said == [
        (
            str(state.path),
            f"the profiles were sent, but the crawl state {state.path} could not be written "
            "(database is locked); the next crawl with profiles on checks them again",
        )
    ]
    assert state.owed_profiles() == [doc]  # still owed

    # A state it cannot read either (here closed): the owed profiles wait, and the crawl's
    # own are still profiled.
    state._conn.close()
    with pytest.raises(StateError, match="cannot read the crawl state"):
        state.owed_profiles()
    report = CrawlReport(volume="file:///lake", started_at="now")
    crawler._profile(LocalVolume(str(tmp_path)), state, report, Tree(), [doc])
    said = [w.reason for w in report.warnings]
    assert len(said) == 2 and said[0].startswith(
        "profiles owed by earlier crawls not sent: cannot read"
    ), said
    assert said[1].startswith("the profiles were sent, but the crawl state"), said
    state.close()


def test_crawl_state_count_follows_every_save(tmp_path: Path) -> None:
    from crawler.state import CrawlState, ManifestState

    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    state.save({"m": ManifestState("fp1", [None], [{"id": "a"}, {"id": "b"}])}, [])
    assert state.load()["m"].count == 2
    state.save({"m": ManifestState("fp2", [None], [{"id": "a"}])}, [])
    reloaded = state.load()["m"]
    assert (reloaded.fingerprint, reloaded.count, reloaded.ids()) == ("fp2", 1, {"a"})
    state.close()


def test_marking_a_batch_unsettled_holds_one_manifest_json_at_a_time(tmp_path: Path) -> None:
    # The marks of a 1,000-manifest batch, all held in a list until written, kept the
    # crawler's peak RSS 7 MiB higher: each row's JSON is now freed once written.
    import tracemalloc

    from crawler.state import UNSETTLED, CrawlState, ManifestState

    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    state.save({"old": ManifestState("fp", ["x"], [{"id": "o", "manifest_path": "old"}])}, [])
    filler = "x" * 20_000
    batch = [{"id": f"a{i}", "manifest_path": f"m{i}", "text": filler} for i in range(200)]
    batch.append({"id": "n", "manifest_path": "old", "text": filler})
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        state.mark_unsettled(batch, lambda path: path == "old")
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000  # 200 x 20 KB of JSON held at once would be 4 MB
    loaded = state.load()
    assert len(loaded) == 201
    assert (loaded["m7"].fingerprint, loaded["m7"].ids()) == (UNSETTLED, {"a7"})
    assert (loaded["old"].fingerprint, loaded["old"].locations) == (UNSETTLED, ["x"])
    assert loaded["old"].ids() == {"o", "n"}
    state.close()


def test_a_new_manifest_marked_over_two_batches_keeps_both_batches_documents(
    tmp_path: Path,
) -> None:
    # Its second mark replaced the first: killed then, the next crawl would never delete
    # the first batch's assets should the manifest be gone by then.
    from crawler.state import UNSETTLED, CrawlState

    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    state.mark_unsettled([{"id": "a", "manifest_path": "m"}], lambda path: False)
    state.mark_unsettled([{"id": "b", "manifest_path": "m"}], lambda path: False)
    marked = state.load()["m"]
    assert (marked.fingerprint, marked.ids(), marked.count) == (UNSETTLED, {"a", "b"}, 2)
    state.close()


def test_a_saved_manifest_whose_marked_documents_are_its_own_is_saved_whole(
    tmp_path: Path,
) -> None:
    # The save writes only the fingerprint and locations of a row marked with the very
    # documents saved, and everything of any other.
    from crawler.state import CrawlState, ManifestState

    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    same = [{"id": "a", "manifest_path": "m1", "_hash": "h1"}]
    refused = [{"id": "b", "manifest_path": "m2"}, {"id": "c", "manifest_path": "m2"}]
    copied = [{"id": "d", "manifest_path": "m3", "_hash": "h3"}]
    state.mark_unsettled([*same, *refused, *copied], lambda path: False)
    statements: list[str] = []
    state._conn.set_trace_callback(statements.append)
    state.save(
        {
            "m1": ManifestState("fp1", ["x/"], same),
            "m2": ManifestState("", [None], refused[1:]),
            "m3": ManifestState("fp3", [None], [{**copied[0], "_hash": "h3b"}]),
        },
        [],
    )
    state.close()
    # m1's documents were not encoded and written again: one UPDATE, two INSERTs
    assert sum(s.startswith("UPDATE manifests SET fingerprint") for s in statements) == 1
    assert sum(s.startswith("INSERT OR REPLACE INTO manifests") for s in statements) == 2
    again = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    loaded = again.load()
    assert (loaded["m1"].fingerprint, loaded["m1"].locations) == ("fp1", ["x/"])
    assert (loaded["m1"].docs, loaded["m1"].count) == (same, 1)
    assert (loaded["m2"].fingerprint, loaded["m2"].ids(), loaded["m2"].count) == ("", {"c"}, 1)
    assert (loaded["m3"].fingerprint, loaded["m3"].docs[0]["_hash"]) == ("fp3", "h3b")
    again.close()


def test_a_pushed_batch_is_freed_with_the_collector_paused() -> None:
    # httpx binds a response and its stream to each other; the crawl pauses the collector,
    # so each push's request body and answer stayed in memory until the crawl ended.
    import gc
    import weakref

    import httpx
    import orjson

    from crawler.push import CataloguePusher

    def answer(request: httpx.Request) -> httpx.Response:
        items = orjson.loads(request.content)
        results = [{"index": i, "id": d["id"], "status": "created"} for i, d in enumerate(items)]
        return httpx.Response(200, content=orjson.dumps({"results": results, "created": 1}))

    responses: list[weakref.ref[httpx.Response]] = []

    def hook(response: httpx.Response) -> None:
        responses.append(weakref.ref(response))

    with CataloguePusher("http://catalogue.test") as pusher:
        pusher._client = httpx.Client(
            base_url=pusher.base_url,
            transport=httpx.MockTransport(answer),
            event_hooks={"response": [hook]},
        )
        enabled = gc.isenabled()
        gc.disable()
        try:
            result = pusher.bulk([{"id": "a", "name": "a"}])
            assert [r.status for r in result.results] == ["created"]
            assert len(responses) == 1 and responses[0]() is None
        finally:
            if enabled:
                gc.enable()


def test_a_plain_http_catalogue_client_trusts_no_certificate() -> None:
    import ssl

    from crawler.push import _tls

    assert _tls("https://catalogue.example") is True
    context = _tls("http://127.0.0.1:8001")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0


def test_walk_tree_indexes_an_entry_walk_as_a_folder_walk(tmp_path: Path) -> None:
    """Remote volumes only have walk(): their tree must be the one a local volume gets."""
    volume = make(
        tmp_path,
        {
            "a/MANIFEST.yaml": b"x",
            "a/data.csv": b"1\n",
            "a/b/part-0.parquet": b"pq",
            "c/x.cairn.yaml": b"x",
            "c/notes.txt": b"n",
            "top.csv": b"1\n",
        },
    )

    class EntriesOnly:
        url = volume.url

        def walk(self, on_problem):
            return volume.walk(on_problem)

    patterns = NamePatterns(["MANIFEST.yaml", "*.cairn.yaml"])
    by_folder = walk_tree(volume, patterns)
    by_entry = walk_tree(EntriesOnly(), patterns)  # type: ignore[arg-type]

    def shape(tree):
        files = {d: sorted(f.path for f in fs) for d, fs in tree.files_by_dir.items()}
        return sorted(tree.manifests), files, tree.dirs, tree.files_seen

    assert shape(by_entry) == shape(by_folder)
    assert sorted(by_folder.manifests) == ["a/MANIFEST.yaml", "c/x.cairn.yaml"]
    assert (
        by_folder.subtree_stats("a")
        == by_entry.subtree_stats("a")
        == (
            2 + 2,  # a/data.csv and a/b/part-0.parquet
            max(
                e.mtime_ns for e in volume.walk() if e.path in ("a/data.csv", "a/b/part-0.parquet")
            ),
            2,
        )
    )


def test_only_a_schema_read_failed_by_its_file_waits_for_the_file_to_change(
    tmp_path: Path,
) -> None:
    volume = make(tmp_path, {"bad.parquet": b"not parquet", "empty.csv": b""})
    for path in ("bad.parquet", "empty.csv"):
        read = _read_schema(volume, path)
        assert read.columns is None and read.warning and not read.transient
    gone = _read_schema(volume, "gone.csv")  # vanished since the walk: try again next crawl
    assert gone.columns is None and gone.warning and gone.transient


@pytest.mark.parametrize(
    ("names", "data_format", "expected"),
    [
        (["csv", "b.CSV", "a.tsv"], "csv", "d/b.CSV"),  # a name without a dot has no extension
        (["a.tsv", "b.csv", "z.Parquet", "y.parq"], "parquet", "d/z.Parquet"),
        (["a.tsv", "b.csv", "z.Parquet", "y.parq"], "tsv", "d/a.tsv"),
        (["old.parquet", "data.csv"], "CSV", "d/data.csv"),
        (["part-0.parquet", "notes.csv"], "delta", "d/part-0.parquet"),
        (["a.csv", "b.json"], "json", None),  # no schema is read from JSON files
        (["a.csv"], None, None),
        (["a.csv.gz", "part.json", "parquet"], "csv", None),
    ],
)
def test_schema_candidate_is_a_file_of_the_format(
    names: list[str], data_format: str | None, expected: str | None
) -> None:
    files = [Entry(f"d/{n}", 1, 1, False) for n in names]
    assert _schema_candidate(files, data_format) == expected


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a.csv", "b.csv", "c.csv", "d.csv", "e.parquet"], "d/a.csv"),  # four votes to one
        (["a.csv", "z.parquet", "y.parquet"], "d/y.parquet"),
        (["a.csv.gz", "b.csv.gz", "c.parquet"], None),  # csv by vote, and none is readable
    ],
)
def test_a_folders_schema_file_is_of_its_guessed_format(
    tmp_path: Path, names: list[str], expected: str | None
) -> None:
    volume = make(tmp_path, {"d/MANIFEST.yaml": b"", **{f"d/{n}": b"x\n1\n" for n in names}})
    tree = walk_tree(volume, NamePatterns(["MANIFEST.yaml"]))
    assert tree.data_files("d")[1] == expected
    assert select_data(tree, volume, "d/MANIFEST.yaml", None).schema_file() == expected


@pytest.mark.parametrize(
    "patterns",
    [
        ["MANIFEST.yaml"],
        ["*.cairn.yaml", "*.yml"],
        [r"re:^meta-\d+\.yml$", "MANIFEST.yaml"],
        ["a/MANIFEST.yaml", "*/x.cairn.yaml"],  # a "/" in a pattern: no name holds one
        ["re:.*"],
    ],
)
def test_a_folder_walk_tests_names_as_an_entry_walk_does(
    tmp_path: Path, patterns: list[str]
) -> None:
    """The folder walk tests whole paths at once; the entry walk, one name at a time, is the
    reference: at the root and below, suffix-only names, anchored expressions."""
    volume = make(
        tmp_path,
        {
            "MANIFEST.yaml": b"x",
            "meta-1.yml": b"x",
            ".cairn.yaml": b"x",
            "a/MANIFEST.yaml": b"x",
            "a/xMANIFEST.yaml": b"x",
            "a/x.cairn.yaml": b"x",
            "a/meta-2.yml": b"x",
            "a/b/meta-3.yml": b"x",
            "a/b/data.csv": b"1\n",
            "c/notmeta-4.yml": b"x",
        },
    )
    (tmp_path / "d" / "meta-5.yml").mkdir(parents=True)  # a folder named like one
    (tmp_path / "a" / "MANIFEST.yaml.d").mkdir()

    class EntriesOnly:
        url = volume.url

        def walk(self, on_problem):
            return volume.walk(on_problem)

    name_patterns = NamePatterns(patterns)
    by_folder = walk_tree(volume, name_patterns)
    by_entry = walk_tree(EntriesOnly(), name_patterns)  # type: ignore[arg-type]

    def shape(tree):
        files = {d: sorted(f.path for f in fs) for d, fs in tree.files_by_dir.items()}
        return sorted(tree.manifests), files, sorted(p.path for p in tree.problems)

    assert shape(by_folder) == shape(by_entry)
    assert sorted(by_folder.manifests) == sorted(
        e.path for e in volume.walk() if not e.is_dir and name_patterns.matches(e.name)
    )


def test_subtree_stats_sum_every_folder_below(tmp_path: Path) -> None:
    """Against a sum over the walk's files: nested folders, names that sort between a folder
    and its subfolders ("a-b" between "a" and "a/b"), an empty folder."""
    volume = make(
        tmp_path,
        {
            "a/1.csv": b"1",
            "a/b/2.csv": b"22",
            "a/b/c/3.csv": b"333",
            "a-b/4.csv": b"4444",
            "a.b/5.csv": b"55555",
            "top.csv": b"666666",
        },
    )
    (tmp_path / "a" / "empty").mkdir()
    tree = walk_tree(volume, NamePatterns(["MANIFEST.yaml"]))
    files = [e for e in volume.walk() if not e.is_dir]
    for folder in sorted(tree.dirs):
        below = [f for f in files if not folder or f.path.startswith(folder + "/")]
        expected = (
            sum(f.size for f in below),
            max((f.mtime_ns for f in below), default=0),
            len(below),
        )
        assert tree.subtree_stats(folder) == expected, folder


def test_each_loaded_manifest_state_reads_its_own_documents(tmp_path: Path) -> None:
    from crawler.state import CrawlState, ManifestState

    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    state.save({p: ManifestState(f"fp-{p}", [None], [{"id": p}]) for p in ("a", "b", "c")}, [])
    loaded = state.load()
    assert {p: (s.fingerprint, s.count, s.docs) for p, s in loaded.items()} == {
        p: (f"fp-{p}", 1, [{"id": p}]) for p in ("a", "b", "c")
    }
    state.close()


def test_data_keys_agree_with_data_key_for_every_folder(tmp_path: Path) -> None:
    """The recrawl's shortcut for a manifest without a location gives the key select_data
    would: at the root, in nested and empty folders, and in folders named like globs (which
    select_data treats as a glob, so a mismatch would re-parse them on every recrawl)."""
    volume = make(
        tmp_path,
        {
            "MANIFEST.yaml": b"x",
            "a/MANIFEST.yaml": b"x",
            "a/data.csv": b"1\n2\n",
            "a/b/part.csv": b"1\n",
            "c[1]/MANIFEST.yaml": b"x",
            "c[1]/data.csv": b"1\n",
            "c1/data.csv": b"12345\n",
            "d*/MANIFEST.yaml": b"x",
            "d*/x.csv": b"1\n",
            "dz/y.csv": b"123\n",
            "e?/f/MANIFEST.yaml": b"x",
        },
    )
    tree = walk_tree(volume, NamePatterns(["MANIFEST.yaml"]))
    assert len(tree.manifests) == 5
    for path in tree.manifests:
        expected = [data_key(tree, volume, path, None)]
        assert expected == [select_data(tree, volume, path, None).key()], path
        assert data_keys(tree, volume, path, [None]) == expected, path
        assert data_keys(tree, volume, path, [None, "data.csv"]) == [
            *expected,
            data_key(tree, volume, path, "data.csv"),
        ]


def test_a_folder_named_like_a_glob_is_a_name(tmp_path: Path) -> None:
    """The manifest's own folder is never read as a pattern ("c[1]" is not "c1"); a location
    inside it still can be one."""
    volume = make(
        tmp_path,
        {
            "c[1]/MANIFEST.yaml": b"x",
            "c[1]/part-0.csv": b"1\n",
            "c[1]/part-1.csv": b"22\n",
            "c[1]/other.txt": b"x",
            "c1/part-9.csv": b"12345\n",
        },
    )
    tree = walk_tree(volume, NamePatterns(["MANIFEST.yaml"]))
    folder = select_data(tree, volume, "c[1]/MANIFEST.yaml", None)
    assert folder.problem is None
    assert (folder.count, folder.size) == (3, 6)
    parts = select_data(tree, volume, "c[1]/MANIFEST.yaml", "part-*.csv")
    assert parts.problem is None
    assert [f.path for f in parts.files] == ["c[1]/part-0.csv", "c[1]/part-1.csv"]


def test_one_crawl_at_a_time_holds_a_crawl_state(tmp_path: Path) -> None:
    from crawler.state import CrawlState, StateError

    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    with pytest.raises(StateError, match="another crawl of file:///lake"):
        CrawlState(tmp_path, "file:///lake", "catalogue-1")
    # Another catalogue, or another volume, is another state.
    CrawlState(tmp_path, "file:///lake", "catalogue-2").close()
    CrawlState(tmp_path, "file:///other", "catalogue-1").close()
    state.close()
    CrawlState(tmp_path, "file:///lake", "catalogue-1").close()


def test_a_problem_is_one_line_whatever_its_path_holds() -> None:
    """A folder named with a newline (or a tab, an escape) split a text report's line in two,
    and an ANSI escape in a name could redraw the terminal."""
    from crawler.problems import Problem

    problem = Problem(path="new\nline/\x1b[2JMANIFEST.yaml", reason="bad", line=3)
    assert str(problem) == "new\\nline/\\x1b[2JMANIFEST.yaml:3: bad"
    assert problem.to_dict()["path"] == "new\nline/\x1b[2JMANIFEST.yaml"  # JSON keeps it whole


class _AnsweringPusher:
    """Answers every push with ``created``; the push numbered ``hold`` waits for ``gate``."""

    def __init__(self, hold: int | None = None) -> None:
        import threading

        self.sizes: list[int] = []
        self.ids: list[str] = []
        self.hold = hold
        self.gate = threading.Event()

    def bulk(self, items: list[dict[str, Any]]) -> Any:
        from types import SimpleNamespace

        self.sizes.append(len(items))
        self.ids.extend(d["id"] for d in items)
        if len(self.sizes) == self.hold:
            assert self.gate.wait(10)
        return SimpleNamespace(results=[SimpleNamespace(status="created")] * len(items))


def _sender(pusher: _AnsweringPusher, batch_size: int) -> Any:
    from crawler.crawl import CrawlReport, _Sender

    report = CrawlReport(volume="file:///lake", started_at="now")
    return _Sender(pusher, batch_size, None, report, {}, crawled_at="now")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("batch_size", "sizes"),
    [
        (1000, [125, 250, 500, 1000, 1000, 125]),
        (300, [125, 250, *[300] * 8, 225]),
        (50, [50] * 60),
    ],
)
def test_the_first_pushes_are_smaller_and_double_up_to_the_batch_size(
    batch_size: int, sizes: list[int]
) -> None:
    # The catalogue starts on the first few documents built, not on a full batch; the cuts
    # depend on the count alone, whenever the documents come.
    pusher = _AnsweringPusher()
    sender = _sender(pusher, batch_size)
    for i in range(3000):
        sender.add({"id": f"a{i}", "manifest_path": f"m{i}"})
    sender.finish()
    assert pusher.sizes == sizes
    assert pusher.ids == [f"a{i}" for i in range(3000)]  # all of them, in order
    assert sender.acked_ids == set(pusher.ids)
    assert sender.answered == 3000


def test_finish_runs_its_errand_while_the_last_answers_are_awaited() -> None:
    pusher = _AnsweringPusher(hold=4)
    sender = _sender(pusher, 1000)
    for i in range(1000):  # pushes of 125, 250, 500 and the last 125, which waits
        sender.add({"id": f"a{i}", "manifest_path": f"m{i}"})
    seen: list[tuple[int, int]] = []

    def errand() -> None:
        import time

        # The first three answers are in (and applied) before the errand runs.
        for _ in range(200):
            sender._apply()
            if sender.answered == 875:
                break
            time.sleep(0.01)
        seen.append((sender.answered, len(sender.acked_ids)))
        pusher.gate.set()

    sender.finish(errand)
    assert seen == [(875, 875)]
    assert sender.answered == 1000
    # Nothing left to wait for: no errand.
    sender.finish(lambda: seen.append((-1, -1)))
    assert seen == [(875, 875)]


def test_the_state_of_what_was_answered_is_saved_before_the_rest(tmp_path: Path) -> None:
    # Saved in two parts (while the last batches are ingested, then after their answers),
    # each part keeps the single UPDATE of a row marked with its very documents.
    from cairn.settings import Settings
    from crawler.crawl import Crawler, Pending, Tree
    from crawler.state import UNSETTLED, CrawlState, ManifestState

    state = CrawlState(tmp_path, "file:///lake", "catalogue-1")
    docs = {p: [{"id": f"{p}-a", "manifest_path": p, "_hash": "h"}] for p in ("m1", "m2")}
    state.mark_unsettled([*docs["m1"], *docs["m2"]], lambda path: False)
    pending = {p: Pending(ManifestState(f"fp-{p}", [None], d), {}, True) for p, d in docs.items()}
    sender = _sender(_AnsweringPusher(), 1000)
    sender.acked_ids = {"m1-a"}
    statements: list[str] = []
    state._conn.set_trace_callback(statements.append)
    crawler = Crawler(Settings(data_dir=tmp_path / "data"), catalogue_url="http://127.0.0.1:9")
    crawler._save_answered(state, sender, pending, {}, Tree())
    assert list(pending) == ["m2"]
    assert {p: s.fingerprint for p, s in state.load().items()} == {"m1": "fp-m1", "m2": UNSETTLED}
    crawler._save_state(state, pending, {}, Tree(), set(), set())
    assert {p: s.fingerprint for p, s in state.load().items()} == {"m1": "fp-m1", "m2": "fp-m2"}
    assert sum(s.startswith("UPDATE manifests SET fingerprint") for s in statements) == 2
    assert not any(s.startswith("INSERT OR REPLACE INTO manifests") for s in statements)
    state.close()


def test_cairn_crawl_leaves_what_is_alive_out_of_the_collectors_last_passes() -> None:
    # The interpreter's exit collects several times, scanning every object still alive: 50 ms
    # of each crawl, for nothing. The crawl command freezes them once its work is done.
    import gc

    from typer.testing import CliRunner

    from cairn.cli import app

    gc.unfreeze()
    try:
        result = CliRunner().invoke(app, ["crawl"])  # nothing to crawl: exit 1, at once
        assert result.exit_code == 1
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_text_report_counts_in_english_with_thousands_separators() -> None:
    def text(**counts: int) -> str:
        report = CrawlReport(volume="file:///lake", started_at="now", duration_s=1.5)
        for field, value in counts.items():
            setattr(report, field, value)
        out = Console(record=True, width=200)
        show_report(report, False, out)
        return out.export_text()

    one = text(files_seen=1, manifests_found=1, manifests_parsed=1, documents=1, created=1)
    assert "in 1.50s: 1 file, 1 manifest, 1 asset\n" in one, one
    big = text(
        files_seen=100_000,
        manifests_found=10_000,
        manifests_parsed=2_500,
        documents=10_000,
        created=2_500,
        unchanged=7_500,
    )
    assert ": 100,000 files, 10,000 manifests (2,500 new or changed), 10,000 assets" in big, big
    assert "created 2,500, updated 0, deleted 0, unchanged 7,500, failed 0" in big, big

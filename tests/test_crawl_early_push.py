"""A cold crawl pushes assets while the walk still goes on (crawler/crawl.py, _EarlyAssembly):
what it builds during the walk must be exactly what it would have built after it, in the same
order, with the same problems and the same crawl state."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import crawler.crawl as crawl_module
from cairn.settings import Settings
from connectors import LocalVolume
from connectors.base import FolderListing, ProblemSink
from crawler.crawl import PARALLEL_THRESHOLD, Crawler, NamePatterns, Tree, walk_tree
from crawler.push import CataloguePusher
from crawler.state import CrawlState
from tests.conftest import ProcessServer, cairn_env

PATTERNS = NamePatterns(Settings().manifest_patterns)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def tricky_volume(root: Path) -> None:
    """Folders whose walk order is not their paths' sort order ('-' sorts before '/'),
    manifests above folders with data of their own, a manifest at the root, empty folders."""
    write(root / "a/MANIFEST.yaml", "name: a\ntype: dataset\n")
    write(root / "a/b/part-0.csv", "id\n1\n")
    write(root / "a/b/c/part-1.csv", "id,x\n1,2\n")
    write(root / "a-1/MANIFEST.yaml", "name: a_1\ntype: dataset\n")
    write(root / "a-1/data.csv", "id\n1\n")
    write(root / "a.b/x.cairn.yaml", "name: a_b\ntype: dataset\n")
    (root / "a/empty").mkdir()
    write(root / "z/y/MANIFEST.yaml", "name: zy\ntype: dataset\n")
    write(root / "z/y-2/MANIFEST.yaml", "name: zy2\ntype: dataset\n")
    write(root / "z/y/w/v/data.csv", "id\n1\n")
    write(root / "z/MANIFEST.yaml", "name: z\ntype: dataset\n")
    write(root / "MANIFEST.yaml", "name: root\ntype: dataset\n")


def test_a_settled_manifest_sees_what_it_would_see_after_the_walk(tmp_path: Path) -> None:
    tricky_volume(tmp_path)
    final = walk_tree(LocalVolume(tmp_path), PATTERNS)
    tree = Tree()
    seen: dict[str, tuple[list[str], tuple[int, int, int], list[str]]] = {}

    def listed() -> None:
        for path in tree.manifests:
            if path not in seen and tree.settled(path):
                folder = path.rpartition("/")[0]
                seen[path] = (
                    sorted(tree.manifests),
                    tree.subtree_stats(folder),
                    tree.dirs_below(folder),
                )

    walk_tree(LocalVolume(tmp_path), PATTERNS, tree=tree, on_listed=listed)
    assert not tree.walking and sorted(tree.manifests) == sorted(final.manifests)
    for path, (found, stats, below) in seen.items():
        folder = path.rpartition("/")[0]
        # Every manifest that sorts before it had been found, and its folder's data was whole.
        assert [p for p in sorted(final.manifests) if p <= path] == [
            p for p in found if p <= path
        ], path
        assert stats == final.subtree_stats(folder), path
        assert below == final.dirs_below(folder), path
    # Some settle during the walk; the root's manifest only once every folder was listed.
    assert len(seen["a-1/MANIFEST.yaml"][0]) < len(final.manifests)
    assert seen["MANIFEST.yaml"][0] == sorted(final.manifests)
    # After the walk, a tracked tree gives the same index as an untracked one.
    for folder in final.dirs:
        assert tree.subtree_stats(folder) == final.subtree_stats(folder)
        assert tree.dirs_below(folder) == final.dirs_below(folder)


class SlowLocalVolume(LocalVolume):
    """A local volume whose walk pauses after each folder while no asset was built yet, as a
    slow disk would: the parsing workers start and answer while the walk still goes on."""

    taken_during_walk: list[str]

    def walk_folders(self, on_problem: ProblemSink | None = None) -> Iterator[FolderListing]:
        deadline = time.monotonic() + 30
        for listed, listing in enumerate(super().walk_folders(on_problem), 1):
            yield listing
            if listed > 100 and not self.taken_during_walk and time.monotonic() < deadline:
                time.sleep(0.02)


def big_volume(root: Path) -> None:
    count = PARALLEL_THRESHOLD + 100
    for i in range(count):
        folder = root / f"d{i // 100}" / f"a{i:04d}"
        write(folder / "MANIFEST.yaml", f"name: asset_{i}\ntype: dataset\ntags: [t{i % 5}]\n")
        write(folder / "data.csv", f"id,value_{i % 3}\n1,2\n")
        if i % 50 == 7:
            write(folder / "sub/part-0.csv", "id\n1\n")  # data below a manifest's folder
    # Problems, each with its path and line, in path order among the built assets:
    write(root / "d1/a0150/MANIFEST.yaml", "name: [unclosed\ntype: dataset\n")
    write(root / "d2/a0250/MANIFEST.yaml", "name: asset_3\ntype: dataset\n")  # a taken name
    write(root / "d2/a0251/MANIFEST.yaml", "name: odd\ntype: dataset\nowner_team: x\n")
    write(root / "d3/MANIFEST.yaml/keep.txt", "a folder named like a manifest\n")
    # A location may point anywhere: from here on, assets wait for the walk's end.
    write(root / "d4/a0420/MANIFEST.yaml", "name: located\ntype: dataset\nlocation: ../../d0\n")


def crawl_recording(
    crawler: Crawler, volume: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], list[list[tuple[str, str]]], list[str]]:
    """The crawl's report, the batches it pushed (id, manifest path), and the manifests
    assembled while the walk still went on."""
    batches: list[list[tuple[str, str]]] = []
    taken: list[str] = []
    bulk = CataloguePusher.bulk
    take = crawl_module._Assembly.take

    def recording_bulk(self: CataloguePusher, items: list[dict[str, Any]]) -> Any:
        batches.append([(d["id"], d["manifest_path"]) for d in items])
        return bulk(self, items)

    def recording_take(self: Any, pm: Any) -> None:
        if self._tree.walking:
            taken.append(pm.path)
        take(self, pm)

    slow = SlowLocalVolume(volume)
    slow.taken_during_walk = taken
    with monkeypatch.context() as patch:
        patch.setattr(CataloguePusher, "bulk", recording_bulk)
        patch.setattr(crawl_module._Assembly, "take", recording_take)
        patch.setattr(crawl_module, "open_volume", lambda url: slow)
        report = crawler.crawl(str(volume)).to_dict()
    for key in ("started_at", "duration_s"):
        report.pop(key)
    return report, batches, taken


def state_of(settings: Settings, volume: Path, catalogue: ProcessServer) -> dict[str, Any]:
    with CataloguePusher(catalogue.url) as pusher:
        instance = pusher.instance_id()
    state = CrawlState(settings.crawl_state_dir, LocalVolume(volume).url, instance)
    try:
        return {
            path: (s.fingerprint, s.locations, [{**d, "crawled_at": None} for d in s.docs])
            for path, s in state.load().items()
        }
    finally:
        state.close()


def test_assets_pushed_during_the_walk_are_those_pushed_after_it(
    tmp_path: Path, catalogue_process: ProcessServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    volume = tmp_path / "lake"
    big_volume(volume)
    other = ProcessServer("catalogue", cairn_env(tmp_path / "data2"), tmp_path / "other.log")
    other.start()
    try:
        runs = []
        for server, during_walk in ((catalogue_process, True), (other, False)):
            settings = Settings(
                data_dir=tmp_path / f"state-{during_walk}", crawl_workers=2, crawl_batch_size=50
            )
            crawler = Crawler(settings, catalogue_url=server.url)
            crawler.push_during_walk = during_walk
            report, batches, taken = crawl_recording(crawler, volume, monkeypatch)
            runs.append((report, batches, taken, state_of(settings, volume, server)))
    finally:
        other.stop()
    (early, early_batches, taken, early_state), (late, late_batches, none, late_state) = runs
    assert taken and none == []
    # Built during the walk: a run of manifests in path order, all before the first located one.
    assert taken == sorted(taken) and taken[-1] < "d4/a0420/MANIFEST.yaml"
    assert early == late
    assert early_batches == late_batches
    assert early_state == late_state
    assert early["created"] == PARALLEL_THRESHOLD + 100 - 2  # the broken one, the taken name
    assert [e["path"] for e in early["errors"]] == [
        "d1/a0150/MANIFEST.yaml",
        "d2/a0250/MANIFEST.yaml",
    ]
    assert early["warnings"][0]["path"] == "d3/MANIFEST.yaml"  # the walk's own, first


def test_parsing_processes_run_below_the_crawlers_priority(tmp_path: Path) -> None:
    """The crawler's own thread and a catalogue on the same machine get the cores first."""
    from crawler.crawl import WORKER_NICE, _init_worker, _parse_chunk, _parse_one
    from crawler.pipeline import Stage, WorkPool

    write(tmp_path / "a/MANIFEST.yaml", "name: a\ntype: dataset\n")
    own = os.getpriority(os.PRIO_PROCESS, 0)
    with WorkPool(
        LocalVolume(tmp_path),
        [Stage("parse", _parse_chunk, _parse_one, 1)],
        workers=2,
        remote_threads=1,
        parallel_threshold=1,
        initializer=_init_worker,
        preload=["crawler.crawl"],
    ) as work:
        work.submit("parse", "a/MANIFEST.yaml")
        assert work.result("parse", "a/MANIFEST.yaml").docs
        assert work._executor is not None
        pids = list(work._executor._processes)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while True:  # the second worker may still be starting
            found = [os.getpriority(os.PRIO_PROCESS, pid) for pid in pids]
            if all(n == min(19, own + WORKER_NICE) for n in found) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert found == [min(19, own + WORKER_NICE)] * len(pids)
    assert os.getpriority(os.PRIO_PROCESS, 0) == own

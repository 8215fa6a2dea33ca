"""The crawl's pipeline pieces (crawler/pipeline.py) on a real local volume: jobs handed to
worker processes while they are found, results taken back by path, and the same results
whether the work ran in workers or in the crawler's own process."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors import Entry, LocalVolume
from crawler.crawl import (
    CSV_HEAD_BYTES,
    FOOTER_AHEAD_BYTES,
    PARALLEL_THRESHOLD,
    NamePatterns,
    _init_worker,
    _parse_chunk,
    _parse_many,
    _parse_one,
    _read_schema,
    _schema_chunk,
    walk_tree,
)
from crawler.manifest import MAX_MANIFEST_BYTES
from crawler.pipeline import Stage, WorkPool

FRESH = "CAIRN_TEST_FRESH_PROCESS"
CHILD_ARGS = ("-q", "-p", "no:cacheprovider", "-p", "no:randomly")


def in_a_fresh_process(test: Callable[..., None]) -> Callable[..., None]:
    """Runs ``test`` in a pytest process of its own. The pool forks its workers only while no
    other thread runs, and the suite's process keeps threads of earlier tests' servers alive,
    so there the fork path could never be taken."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        if os.environ.get(FRESH) == test.__name__:
            test(*args, **kwargs)
            return
        done = subprocess.run(
            [sys.executable, "-m", "pytest", f"{__file__}::{test.__name__}", *CHILD_ARGS],
            env={**os.environ, FRESH: test.__name__},
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert "1 passed" in done.stdout, done.stdout[-4000:]

    return run


def make_volume(root: Path, count: int) -> list[str]:
    paths = []
    for n in range(count):
        folder = root / f"d{n % 7}" / f"a{n:04d}"
        folder.mkdir(parents=True)
        (folder / "MANIFEST.yaml").write_text(f"name: asset_{n}\ntype: dataset\n")
        (folder / "data.csv").write_text(f"id,value_{n}\n1,2\n")
        paths.append(f"d{n % 7}/a{n:04d}/MANIFEST.yaml")
    # A broken one: its problem must come back with its path and line from any process.
    (root / "d0" / "a0000" / "MANIFEST.yaml").write_text("name: [unclosed\ntype: dataset\n")
    return paths


def pool(volume: LocalVolume, workers: int, threshold: int) -> WorkPool:
    return WorkPool(
        volume,
        [
            Stage("parse", _parse_chunk, _parse_one, 5),
            Stage("schemas", _schema_chunk, _read_schema, 3),
        ],
        workers=workers,
        remote_threads=2,
        parallel_threshold=threshold,
        initializer=_init_worker,
        preload=["crawler.crawl"],
    )


def results(work: WorkPool, paths: list[str]) -> list[Any]:
    out: list[Any] = []
    for path in paths:
        pm = work.result("parse", path, forget=True)
        out.append((pm.path, pm.docs, [(p.path, p.line, p.reason) for p in pm.problems]))
        data = path.rsplit("/", 1)[0] + "/data.csv"
        work.submit("schemas", data)
    work.flush()
    for path in paths:
        data = path.rsplit("/", 1)[0] + "/data.csv"
        out.append(work.result("schemas", data))
    return out


class _InlineExecutor:
    """Runs each chunk at once, here, and records its size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def submit(self, fn: Callable[..., Any], jobs: list[Any]) -> Any:
        from concurrent.futures import Future

        self.sizes.append(len(jobs))
        future: Future[list[Any]] = Future()
        future.set_result([("done", job) for job in jobs])
        return future

    def shutdown(self, **_: Any) -> None:
        pass


def test_the_backlog_is_shared_out_and_each_workers_first_chunks_are_smaller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The jobs queued before the workers started went out as one chunk (400 manifests on a
    # large crawl), which one worker parsed alone while the crawl waited for its first
    # results; each worker's first chunk is now a quarter of the stage's, its second a half.
    inline = _InlineExecutor()
    work = WorkPool(
        LocalVolume(tmp_path),
        [Stage("parse", _parse_chunk, _parse_one, 8)],
        workers=2,
        remote_threads=2,
        parallel_threshold=30,
        initializer=_init_worker,
        preload=[],
    )
    monkeypatch.setattr(work, "_start", lambda: setattr(work, "_executor", inline))
    paths = [f"m{n:03d}" for n in range(60)]
    for path in paths[:30]:
        work.submit("parse", path)
    assert inline.sizes == [2, 2, 4, 4, 8, 8, 2]  # the backlog of 30, at the 30th
    for path in paths[30:]:
        work.submit("parse", path)
    work.flush()
    assert inline.sizes == [2, 2, 4, 4, 8, 8, 2, 8, 8, 8, 6]
    assert [work.result("parse", p) for p in paths] == [("done", p) for p in paths]


def test_jobs_found_during_the_walk_run_in_workers_with_the_same_results(tmp_path: Path) -> None:
    paths = make_volume(tmp_path, 40)
    volume = LocalVolume(tmp_path)
    found: list[str] = []
    with pool(volume, workers=2, threshold=10) as work:

        def on_manifest(entry: Entry) -> None:
            found.append(entry.path)
            work.submit("parse", entry.path)
            if len(found) == 12:
                # Past the threshold while the walk goes on: the workers have started.
                assert work.parallel

        tree = walk_tree(volume, NamePatterns(["MANIFEST.yaml"]), on_manifest=on_manifest)
        assert sorted(found) == sorted(paths) == sorted(tree.manifests)
        in_workers = results(work, sorted(paths))
    with pool(volume, workers=2, threshold=PARALLEL_THRESHOLD) as work:
        here = results(work, sorted(paths))
        assert not work.parallel  # 40 manifests: not worth a process
    assert in_workers == here
    broken = next(r for r in here if r[0] == "d0/a0000/MANIFEST.yaml")
    ((path, line, reason),) = broken[2]
    # Line 2: where the parser finds the bracket still open.
    assert path == "d0/a0000/MANIFEST.yaml" and line == 2 and reason
    (schema_path, columns, warning, transient) = here[-1]
    assert schema_path.endswith("data.csv") and warning is None and not transient
    assert [c["name"] for c in columns] == ["id", f"value_{paths.index(sorted(paths)[-1])}"]


def test_one_worker_means_no_process(tmp_path: Path) -> None:
    paths = make_volume(tmp_path, 12)
    with pool(LocalVolume(tmp_path), workers=1, threshold=2) as work:
        for path in paths:
            work.submit("parse", path)
        work.flush()
        assert not work.parallel
        assert {work.result("parse", p).path for p in paths} == set(paths)


@in_a_fresh_process
def test_workers_are_forked_only_while_no_other_thread_runs(tmp_path: Path) -> None:
    # A fork copies locks other threads hold; with another thread alive the workers must
    # come from the fork server, and both ways give the same results.
    paths = sorted(make_volume(tmp_path, 12))
    volume = LocalVolume(tmp_path)
    outcomes = {}
    for other_thread in (False, True):
        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)
        if other_thread:
            thread.start()
        try:
            with pool(volume, workers=2, threshold=1) as work:
                outcomes[other_thread] = results(work, paths)
                assert work.parallel
                assert work.start_method == ("forkserver" if other_thread else "fork")
        finally:
            stop.set()
            if other_thread:
                thread.join()
    assert outcomes[False] == outcomes[True]
    # The broken manifest's problem comes back from a worker with its path and line.
    assert outcomes[False][0][2][0][:2] == ("d0/a0000/MANIFEST.yaml", 2)


@in_a_fresh_process
def test_forked_workers_get_their_modules_imported_once_before_the_fork(
    tmp_path: Path, monkeypatch: Any
) -> None:
    import sys

    # A module nothing has imported: the pool imports it only when it forks its workers.
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "cairn_fork_probe.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(lib))
    monkeypatch.delitem(sys.modules, "cairn_fork_probe", raising=False)
    paths = sorted(make_volume(tmp_path / "vol", 6))
    volume = LocalVolume(tmp_path / "vol")

    def probe_pool(threshold: int) -> WorkPool:
        return WorkPool(
            volume,
            [Stage("parse", _parse_chunk, _parse_one, 5)],
            workers=2,
            remote_threads=2,
            parallel_threshold=threshold,
            initializer=_init_worker,
            preload=["crawler.crawl"],
            fork_imports=["cairn_fork_probe"],
        )

    with probe_pool(threshold=100) as work:  # too few jobs: no workers, no import
        assert {work.result("parse", p).path for p in paths} == set(paths)
        assert not work.parallel
    assert "cairn_fork_probe" not in sys.modules
    with probe_pool(threshold=1) as work:
        assert {work.result("parse", p).path for p in paths} == set(paths)
        assert work.start_method == "fork"
    assert "cairn_fork_probe" in sys.modules


def _gc_state(_volume: Any, path: str) -> tuple[str, bool]:
    import gc

    return path, gc.isenabled()


def _gc_chunk(paths: list[str]) -> list[tuple[str, bool]]:
    return [_gc_state(None, p) for p in paths]


@in_a_fresh_process
def test_workers_forked_while_the_walk_pauses_the_collector_run_theirs(tmp_path: Path) -> None:
    import gc

    from crawler.crawl import _gc_paused

    paths = sorted(make_volume(tmp_path, 6))
    with _gc_paused():
        work = WorkPool(
            LocalVolume(tmp_path),
            [Stage("gc", _gc_chunk, _gc_state, 2)],
            workers=2,
            remote_threads=2,
            parallel_threshold=1,
            initializer=_init_worker,
            preload=["crawler.crawl"],
        )
        for path in paths:
            work.submit("gc", path)
        work.flush()
        assert work.start_method == "fork" and not gc.isenabled()
    with work:
        assert [work.result("gc", p) for p in paths] == [(p, True) for p in paths]
    assert gc.isenabled()


def _sigint_ignored(paths: list[str]) -> list[tuple[str, bool]]:
    import signal

    return [(p, signal.getsignal(signal.SIGINT) is signal.SIG_IGN) for p in paths]


def _ignores_sigint(pid: int) -> bool:
    """From /proc: whether process ``pid`` ignores SIGINT (its bit in SigIgn)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (2 - 1)))  # SIGINT is signal 2
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@in_a_fresh_process
def test_the_fork_server_and_the_workers_leave_ctrl_c_to_the_crawl(tmp_path: Path) -> None:
    # Ctrl-C on a terminal reaches the whole process group: the fork server (while it imported
    # its preload) and the workers each printed a KeyboardInterrupt traceback, though the crawl
    # handles the shutdown and its workers end with it. Fresh process: the fork server must be
    # one this pool started.
    from multiprocessing import forkserver

    paths = sorted(make_volume(tmp_path, 6))
    for other_thread in (False, True):
        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)
        if other_thread:
            thread.start()
        try:
            with WorkPool(
                LocalVolume(tmp_path),
                [Stage("sigint", _sigint_ignored, lambda _v, p: (p, False), 2)],
                workers=2,
                remote_threads=2,
                parallel_threshold=1,
                initializer=_init_worker,
                preload=["crawler.crawl"],
            ) as work:
                for path in paths:
                    work.submit("sigint", path)
                work.flush()
                assert work.start_method == ("forkserver" if other_thread else "fork")
                assert [work.result("sigint", p) for p in paths] == [(p, True) for p in paths]
        finally:
            stop.set()
            if other_thread:
                thread.join()
    server = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    assert server is not None and _ignores_sigint(server)


# Manifests by folder: one each for the ways a parse job reads (or skips) a folder's schema.
PARSE_CASES = {
    "plain": "name: plain\ntype: dataset\n",
    "two-docs": "name: a\ntype: dataset\n---\nname: b\ntype: dataset\n",
    "located": "name: located\ntype: dataset\nlocation: ../plain/\n",
    "own-schema": "name: own\ntype: dataset\nschema: [{name: x, type: int64}]\n",
    "broken": "name: [broken\ntype: dataset\n",
}


def test_a_parse_job_reads_the_schema_it_was_told_of_only_for_documents_that_take_it(
    tmp_path: Path,
) -> None:
    cases = dict(PARSE_CASES)
    for folder, text in cases.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "MANIFEST.yaml").write_text(text)
        (tmp_path / folder / "data.csv").write_text(f"id,{folder}\n1,2\n")
    volume = LocalVolume(tmp_path)
    for folder in cases:
        path, data = f"{folder}/MANIFEST.yaml", f"{folder}/data.csv"
        told = _parse_one(volume, path, data)
        alone = _parse_one(volume, path)
        assert (told.docs, told.problems) == (alone.docs, alone.problems)
        if folder in ("plain", "two-docs"):
            # The same answer the schema job gives for that file.
            assert told.schema == _read_schema(volume, data)
            assert told.schema is not None and told.schema[1] is not None
            assert [c["name"] for c in told.schema[1]] == ["id", folder]
        else:
            assert told.schema is None
        assert alone.schema is None
    # In a worker process too: a job is (path, hint) once a hint was given.
    with pool(volume, workers=2, threshold=1) as work:
        work.submit("parse", "plain/MANIFEST.yaml", "plain/data.csv")
        work.submit("parse", "located/MANIFEST.yaml")
        work.flush()
        assert work.result("parse", "plain/MANIFEST.yaml").schema == _read_schema(
            volume, "plain/data.csv"
        )
        assert work.result("parse", "located/MANIFEST.yaml").schema is None


def _parsed_the_old_way(volume: LocalVolume, job: str | tuple[str, str]) -> tuple[Any, ...]:
    """What a job gave when each manifest went through every step before the next one: the
    reference the chunk's step-by-step parse must match."""
    from connectors import VolumeError
    from crawler.manifest import parse_manifest

    path, hint = (job, None) if isinstance(job, str) else job
    try:
        data = volume.read(path, MAX_MANIFEST_BYTES)
    except VolumeError as exc:
        return path, [], [str(exc)], None
    parsed, problems = parse_manifest(data, path)
    docs = [
        (d.index, d.line, d.manifest.model_dump(mode="json", by_alias=True, exclude_none=True))
        for d in parsed
    ]
    schema = None
    if hint and docs and not any("schema" in f or "location" in f for _, _, f in docs):
        schema = _read_schema(volume, hint)
    return path, docs, [p.reason for p in problems], schema


def test_a_chunk_parsed_a_step_at_a_time_gives_what_each_manifest_gave_alone(
    tmp_path: Path,
) -> None:
    cases = {
        **PARSE_CASES,
        "unknown-field": "name: odd\ntype: dataset\ncolour: blue\n",
        "empty": "",
        "too-large": "name: big\ntype: dataset\ndescription: " + "x" * (1 << 20) + "\n",
    }
    for folder, text in cases.items():
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "MANIFEST.yaml").write_text(text)
        (tmp_path / folder / "data.csv").write_text(f"id,{folder}\n1,2\n")
    (tmp_path / "plain" / "bad.parquet").write_bytes(b"not parquet")
    volume = LocalVolume(tmp_path)
    jobs: list[str | tuple[str, str]] = ["gone/MANIFEST.yaml"]  # vanished since the walk
    for folder in cases:
        jobs += [f"{folder}/MANIFEST.yaml", (f"{folder}/MANIFEST.yaml", f"{folder}/data.csv")]
    jobs += [("plain/MANIFEST.yaml", "plain/bad.parquet"), ("plain/MANIFEST.yaml", "gone.csv")]
    chunk = _parse_many(volume, list(jobs))
    assert len(chunk) == len(jobs)
    for job, pm in zip(jobs, chunk, strict=True):
        assert (pm.path, pm.docs, [p.reason for p in pm.problems], pm.schema) == (
            _parsed_the_old_way(volume, job)
        )
    # The schema was read where, and only where, every document takes its folder's schema.
    read = {pm.schema[0] for pm in chunk if pm.schema is not None}
    assert read == {
        "plain/data.csv",
        "two-docs/data.csv",
        "unknown-field/data.csv",
        "plain/bad.parquet",
        "gone.csv",
    }
    assert chunk[0].problems and chunk[0].problems[0].path == "gone/MANIFEST.yaml"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_a_chunk_asks_for_all_its_files_before_reading_and_keeps_none_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The manifests, then the data files whose schema the hint names (a CSV's head, a Parquet
    # file's end), all asked for before the first read; those no document took (a manifest
    # naming its own schema) are closed all the same.
    for folder, data in (("a", "data.csv"), ("b", "part.parquet"), ("c", "data.csv")):
        (tmp_path / folder).mkdir()
        text = "name: x\ntype: dataset\n"
        if folder == "c":
            text += "schema:\n  - name: id\n    type: int\n"
        (tmp_path / folder / "MANIFEST.yaml").write_text(text)
        (tmp_path / folder / data).write_bytes(b"id\n1\n")
    volume = LocalVolume(tmp_path)
    asked: list[tuple[str, int, bool]] = []
    reads_seen: list[int] = []
    real_ahead, real_read = volume.read_ahead, volume.read

    def read_ahead(path: str, nbytes: int, *, from_end: bool = False) -> None:
        asked.append((path, nbytes, from_end))
        real_ahead(path, nbytes, from_end=from_end)

    def read(path: str, max_bytes: int) -> bytes:
        reads_seen.append(len(asked))
        return real_read(path, max_bytes)

    monkeypatch.setattr(volume, "read_ahead", read_ahead)
    monkeypatch.setattr(volume, "read", read)
    jobs: list[str | tuple[str, str]] = [
        ("a/MANIFEST.yaml", "a/data.csv"),
        ("b/MANIFEST.yaml", "b/part.parquet"),
        ("c/MANIFEST.yaml", "c/data.csv"),
    ]
    before = set(os.listdir("/proc/self/fd"))
    chunk = _parse_many(volume, list(jobs))
    assert set(os.listdir("/proc/self/fd")) == before
    assert asked == [
        ("a/MANIFEST.yaml", MAX_MANIFEST_BYTES + 1, False),
        ("b/MANIFEST.yaml", MAX_MANIFEST_BYTES + 1, False),
        ("c/MANIFEST.yaml", MAX_MANIFEST_BYTES + 1, False),
        ("a/data.csv", CSV_HEAD_BYTES, False),
        ("b/part.parquet", FOOTER_AHEAD_BYTES, True),
        ("c/data.csv", CSV_HEAD_BYTES, False),
    ]
    assert reads_seen == [6, 6, 6]
    assert [pm.schema is not None for pm in chunk] == [True, True, False]
    assert [_parsed_the_old_way(volume, job) for job in jobs] == [
        (pm.path, pm.docs, [p.reason for p in pm.problems], pm.schema) for pm in chunk
    ]


def test_a_result_put_by_hand_is_taken_without_a_job_and_never_replaces_one(
    tmp_path: Path,
) -> None:
    make_volume(tmp_path, 3)
    volume = LocalVolume(tmp_path)
    with pool(volume, workers=1, threshold=PARALLEL_THRESHOLD) as work:
        work.put("schemas", "d0/a0000/data.csv", ("d0/a0000/data.csv", None, "given"))
        assert work.done("schemas", "d0/a0000/data.csv")
        assert work.result("schemas", "d0/a0000/data.csv")[2] == "given"
        # Submitted first: the job's own result stands.
        work.submit("schemas", "d1/a0001/data.csv")
        work.put("schemas", "d1/a0001/data.csv", ("d1/a0001/data.csv", None, "given"))
        assert work.result("schemas", "d1/a0001/data.csv") == _read_schema(
            volume, "d1/a0001/data.csv"
        )


def test_a_parsed_manifest_comes_back_from_a_worker_whole(tmp_path: Path) -> None:
    import pickle

    make_volume(tmp_path, 2)
    volume = LocalVolume(tmp_path)
    for path in ("d0/a0000/MANIFEST.yaml", "d1/a0001/MANIFEST.yaml"):  # broken, then good
        pm = _parse_one(volume, path, path.rsplit("/", 1)[0] + "/data.csv")
        back = pickle.loads(pickle.dumps(pm, protocol=pickle.HIGHEST_PROTOCOL))
        assert back == pm
        assert (back.path, back.docs, back.problems, back.schema) == (
            pm.path,
            pm.docs,
            pm.problems,
            pm.schema,
        )
    assert pm.schema is not None and back.problems == [] and back.docs


def test_a_crawl_leaves_the_collector_on_with_nothing_frozen(
    tmp_path: Path, catalogue_process: Any
) -> None:
    import gc

    from cairn.settings import Settings
    from crawler.crawl import Crawler, CrawlFailed

    make_volume(tmp_path / "vol", 30)
    settings = Settings(data_dir=tmp_path / "state", http_retries=1)
    assert gc.isenabled()
    report = Crawler(settings, catalogue_url=catalogue_process.url).crawl(str(tmp_path / "vol"))
    assert report.created == 29 and len(report.errors) == 1  # one broken manifest
    # The pauses froze what they made; the crawl's end gives it back to the collector.
    assert gc.isenabled() and gc.get_freeze_count() == 0
    again = Crawler(settings, catalogue_url=catalogue_process.url).crawl(str(tmp_path / "vol"))
    assert again.writes == 0
    assert gc.isenabled() and gc.get_freeze_count() == 0
    # A crawl that fails gives it back too.
    unreachable = Crawler(settings, catalogue_url="http://127.0.0.1:9")
    with pytest.raises(CrawlFailed):
        unreachable.crawl(str(tmp_path / "vol"))
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_schema_reads_share_each_distinct_column(tmp_path: Path) -> None:
    import pickle

    (tmp_path / "a.csv").write_text("id,name\n1,x\n")
    (tmp_path / "b.csv").write_text("id,other\n2,y\n")
    volume = LocalVolume(tmp_path)
    a = _read_schema(volume, "a.csv").columns
    b = _read_schema(volume, "b.csv").columns
    assert a == [
        {"name": "id", "type": "int64", "nullable": False},
        {"name": "name", "type": "string", "nullable": False},
    ]
    assert b is not None and b[0] == a[0] and b[1]["name"] == "other"
    # One dict for the same column: what a worker sends back pickles it once.
    assert a[0] is b[0] and a[1] is not b[1]
    back_a, back_b = pickle.loads(pickle.dumps([a, b]))
    assert back_a[0] is back_b[0] and (back_a, back_b) == (a, b)

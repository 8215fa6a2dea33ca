"""`cairn crawl --profile`: crawled Parquet/CSV data profiled into the metric store, checks
from manifests, incremental re-crawls, drift on changed data, and nothing that stops a crawl."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cairn.models import MAX_COLUMNS
from cairn.settings import Settings
from featurestore_service.app import create_app
from tests.conftest import (
    ROOT,
    ProcessServer,
    ThreadServer,
    cairn_env,
    patient,
    refused_port,
    run_cairn,
)

CHECKS = """checks:
  - {type: not_null, column: amount}
  - {type: range, column: amount, min: 0}
  - {type: row_count, min: 1}
"""


@pytest.fixture
def metric_store(tmp_path: Path) -> Iterator[ThreadServer]:
    settings = Settings(
        data_dir=tmp_path / "fs", catalogue_url=f"http://127.0.0.1:{refused_port()}"
    )
    with ThreadServer(create_app(settings)) as server:
        yield server


def sales(seed: int, shift: float = 0.0, rows: int = 5000) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "store": rng.choice(["a", "b", "c"], rows),
            "amount": np.abs(rng.normal(50 + 40 * shift, 10, rows)),
        }
    )


def make_volume(root: Path) -> None:
    (root / "sales").mkdir(parents=True)
    (root / "sales/MANIFEST.yaml").write_text("name: sales\ntype: dataset\n" + CHECKS)
    pq.write_table(sales(1), root / "sales/part-0.parquet")
    (root / "daily").mkdir()
    (root / "daily/MANIFEST.yaml").write_text(
        "name: daily\ntype: dataset\nchecks:\n  - {type: allowed_values, column: kind, "
        "values: [x, y]}\n  - {type: nope}\n"
    )
    (root / "daily/daily.csv").write_text("day,kind,amount\n2026-01-01,x,1.5\n2026-01-02,z,\n")


def asset_id(catalogue: str, name: str) -> str:
    return str(httpx.get(f"{catalogue}/api/v1/assets/by-name/{name}").json()["id"])


def profile_env(tmp_path: Path, catalogue: str, store: str) -> dict[str, str]:
    """A crawl's environment: its own data dir, a catalogue and a metric store."""
    return cairn_env(
        tmp_path / "crawl", CAIRN_CATALOGUE_URL=catalogue, CAIRN_FEATURESTORE_URL=store
    )


def crawl_profiled(
    tmp_path: Path, volume: Path, catalogue: str, store: str
) -> subprocess.CompletedProcess[str]:
    """``cairn crawl VOLUME --profile --json`` against a catalogue and a metric store."""
    env = profile_env(tmp_path, catalogue, store)
    return run_cairn("crawl", str(volume), "--profile", "--json", env=env)


def history(store: str, asset: str) -> list[dict]:
    answer = httpx.get(f"{store}/api/v1/metrics/assets/{asset}/history")
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def test_crawl_profiles_data_incrementally_with_checks_and_drift(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    volume = tmp_path / "lake"
    make_volume(volume)
    env = profile_env(tmp_path, catalogue_process.url, metric_store.url)
    first = run_cairn("crawl", str(volume), "--profile", "--json", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "unknown field 'checks'" not in first.stdout
    assert "check allowed_values(kind) failed on daily/daily.csv" in first.stdout
    assert "checks.0.type" in first.stdout or "checks.1.type" in first.stdout  # {type: nope}

    sales_id = asset_id(catalogue_process.url, "sales")
    profile = httpx.get(f"{metric_store.url}/api/v1/metrics/assets/{sales_id}/profile").json()
    assert profile["rows"] == 5000 and {c["name"] for c in profile["columns"]} == {
        "store",
        "amount",
    }
    assert all(c["passed"] for c in profile["checks"])
    daily = httpx.get(
        f"{metric_store.url}/api/v1/metrics/assets/{asset_id(catalogue_process.url, 'daily')}"
        "/profile"
    ).json()
    assert daily["rows"] == 2 and [c["passed"] for c in daily["checks"]] == [False]
    assert daily["checks"][0]["failing"] == ["z"]

    again = run_cairn("crawl", str(volume), "--profile", env=env)
    assert again.returncode == 0
    assert len(history(metric_store.url, sales_id)) == 1  # unchanged file: not profiled again

    pq.write_table(sales(2, shift=1.0), volume / "sales/part-0.parquet")
    changed = run_cairn("crawl", str(volume), "--profile", env=env)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    items = history(metric_store.url, sales_id)
    assert [(i["version"], i["drifted"]) for i in items] == [(2, True), (1, False)]
    assert "amount" in items[0]["drifted_columns"]
    # The verdict is a catalogue search facet: only "sales" was compared, and it drifted.
    flagged = httpx.get(f"{catalogue_process.url}/api/v1/assets", params={"drifted": "true"})
    assert [a["name"] for a in flagged.json()["items"]] == ["sales"], flagged.text
    assert flagged.json()["items"][0]["drift"]["profile_version"] == 2
    assert flagged.json()["facets"]["drift"] == {"drifted": 1}
    # A manifest edit alone (same data) keeps the flag.
    manifest = volume / "sales/MANIFEST.yaml"
    manifest.write_text(manifest.read_text() + "description: edited\n")
    edited = run_cairn("crawl", str(volume), "--profile", env=env)
    assert edited.returncode == 0, edited.stdout + edited.stderr
    kept = httpx.get(f"{catalogue_process.url}/api/v1/assets/by-name/sales").json()
    assert kept["description"] == "edited" and kept["drift"]["drifted"] is True
    assert len(history(metric_store.url, sales_id)) == 2

    bad = sales(3).set_column(1, "amount", pa.array([-1.0] * 5000))
    pq.write_table(bad, volume / "sales/part-0.parquet")
    strict = run_cairn("crawl", str(volume), "--fail-on-checks", env=env)
    assert strict.returncode == 2, strict.stdout + strict.stderr
    assert "check range(amount) failed" in strict.stdout + strict.stderr


def test_a_crawl_with_profiles_profiles_what_crawls_without_them_sent(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    """A volume crawled once without --profile: the next crawl with it found every manifest
    unchanged and profiled nothing, on every later crawl too."""
    volume = tmp_path / "lake"
    make_volume(volume)
    down = f"http://127.0.0.1:{refused_port()}"
    plain = run_cairn("crawl", str(volume), env=profile_env(tmp_path, catalogue_process.url, down))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    ids = {name: asset_id(catalogue_process.url, name) for name in ("sales", "daily")}

    profiled = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert profiled.returncode == 0, profiled.stdout + profiled.stderr
    assert json.loads(profiled.stdout)["manifests_parsed"] == 0, profiled.stdout
    for name, rows in (("sales", 5000), ("daily", 2)):
        found = history(metric_store.url, ids[name])
        assert [(i["version"], i["rows"]) for i in found] == [(1, rows)], (name, found)

    # Profiled and unchanged: not again, and no question to the (now down) store either.
    after = crawl_profiled(tmp_path, volume, catalogue_process.url, down)
    assert after.returncode == 0 and json.loads(after.stdout)["warnings"] == [], after.stdout

    # One file changes during a crawl without profiles; a crawl with them profiles that one
    # again, and only asks the store about the other, whose profile stands.
    pq.write_table(sales(2), volume / "sales/part-0.parquet")
    plain = run_cairn("crawl", str(volume), env=profile_env(tmp_path, catalogue_process.url, down))
    assert plain.returncode == 0, plain.stdout + plain.stderr
    again = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [i["version"] for i in history(metric_store.url, ids["sales"])] == [2, 1]
    assert [i["version"] for i in history(metric_store.url, ids["daily"])] == [1]


def test_check_problems_name_the_line_of_their_check(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    """An invalid or failed check was reported with its field and no line at all."""
    volume = tmp_path / "lake"
    make_volume(volume)  # daily: allowed_values(kind) on line 4 fails, {type: nope} on line 5
    (volume / "two").mkdir()
    (volume / "two/MANIFEST.yaml").write_text(
        "name: first\ntype: dataset\nlocation: ../daily\n---\nname: second\ntype: dataset\n"
        "location: ../sales\nchecks:\n  - {type: row_count, max: 1}\n  - {type: wat}\n"
    )
    done = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert done.returncode == 0, done.stdout + done.stderr
    said = {
        (w["path"], w["field"]): w["line"]
        for w in json.loads(done.stdout)["warnings"]
        if (w["field"] or "").startswith("checks")
    }
    assert said == {
        ("daily/MANIFEST.yaml", "checks.allowed_values(kind)"): 4,
        ("daily/MANIFEST.yaml", "checks.1.type"): 5,
        ("two/MANIFEST.yaml", "checks.row_count"): 9,
        ("two/MANIFEST.yaml", "checks.1.type"): 10,
    }, done.stdout


def test_a_check_that_can_never_pass_fails_a_gated_crawl(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    volume = tmp_path / "lake"
    (volume / "sales").mkdir(parents=True)
    pq.write_table(sales(1), volume / "sales/part-0.parquet")
    (volume / "sales/MANIFEST.yaml").write_text(
        "name: sales\ntype: dataset\nchecks:\n  - {type: range, column: amount, min: 5, max: 1}\n"
    )
    env = cairn_env(
        tmp_path / "crawl",
        CAIRN_CATALOGUE_URL=catalogue_process.url,
        CAIRN_FEATURESTORE_URL=metric_store.url,
    )
    # Profiling alone: the crawl goes on and says why the check was not evaluated.
    loose = run_cairn("crawl", str(volume), "--profile", env=env)
    assert loose.returncode == 0, loose.stdout + loose.stderr
    assert "check not evaluated" in loose.stdout + loose.stderr
    # Gated by checks: a check that can never pass must not let the crawl through.
    (volume / "sales/MANIFEST.yaml").write_text(
        "name: sales\ntype: dataset\ndescription: gated\n"
        "checks:\n  - {type: range, column: amount, min: 5, max: 1}\n"
    )
    gated = run_cairn("crawl", str(volume), "--fail-on-checks", env=env)
    assert gated.returncode == 2, gated.stdout + gated.stderr
    assert "check not evaluated" in gated.stdout + gated.stderr


def test_crawl_goes_on_when_the_metric_store_is_down_and_a_later_crawl_sends_the_profiles(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    """The next crawl found the manifests unchanged and profiled nothing: the profiles the
    down metric store missed were never sent, and no crawl said so again."""
    volume = tmp_path / "lake"
    make_volume(volume)
    down = f"http://127.0.0.1:{refused_port()}"
    done = crawl_profiled(tmp_path, volume, catalogue_process.url, down)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "profiles not sent: the metric store does not answer" in done.stdout
    assert "the next crawl with profiles on sends them" in done.stdout
    assert httpx.get(f"{catalogue_process.url}/api/v1/assets/by-name/sales").status_code == 200

    # A crawl without profiles leaves them owed, and does not ask the metric store.
    plain = run_cairn("crawl", str(volume), env=profile_env(tmp_path, catalogue_process.url, down))
    assert plain.returncode == 0 and "profile" not in plain.stdout + plain.stderr, plain.stdout
    # The store is back; nothing changed on the volume: the owed profiles are sent.
    back = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert back.returncode == 0, back.stdout + back.stderr
    report = json.loads(back.stdout)
    assert report["unchanged"] == 2 and report["manifests_parsed"] == 0, report
    assert "check allowed_values(kind) failed on daily/daily.csv" in back.stdout
    for name, rows in (("sales", 5000), ("daily", 2)):
        found = history(metric_store.url, asset_id(catalogue_process.url, name))
        assert [(i["version"], i["rows"]) for i in found] == [(1, rows)], (name, found)
    # Sent, they are owed no more: the next crawl does not even ask the (now down) store.
    after = crawl_profiled(tmp_path, volume, catalogue_process.url, down)
    assert after.returncode == 0, after.stdout + after.stderr
    assert json.loads(after.stdout)["warnings"] == [], after.stdout


def test_a_profile_the_metric_store_refuses_for_good_is_not_sent_again_by_unchanged_crawls(
    tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    """A refused profile (413 past the body limit, 422) stayed owed: every later crawl with
    profiles on read, profiled, sent and was refused the unchanged file again."""
    volume = tmp_path / "lake"
    make_volume(volume)
    settings = Settings(
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        max_body_bytes=256,  # smaller than any profile
    )
    with ThreadServer(create_app(settings)) as small:
        done = crawl_profiled(tmp_path, volume, catalogue_process.url, small.url)
    assert done.returncode == 0, done.stdout + done.stderr
    said = [w["reason"] for w in json.loads(done.stdout)["warnings"]]
    refused = [w for w in said if w.startswith("profile refused by the metric store: HTTP 413")]
    assert len(refused) == 2, said
    assert all(w.endswith("not sent again until the data changes") for w in refused), said
    # Settled: the next crawl of the unchanged volume does not even ask the (now down) store.
    down = f"http://127.0.0.1:{refused_port()}"
    after = crawl_profiled(tmp_path, volume, catalogue_process.url, down)
    assert after.returncode == 0, after.stdout + after.stderr
    assert json.loads(after.stdout)["warnings"] == [], after.stdout


def test_a_drift_flag_the_catalogue_refuses_for_good_is_not_sent_again_by_unchanged_crawls(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    """A drift flag naming more columns than the catalogue takes (a schema keeps the first
    10,000 columns, a profile every one: a 422) stayed owed: every later crawl with profiles
    on asked the metric store, sent the flag again and was refused again."""
    volume = tmp_path / "lake"
    (volume / "wide").mkdir(parents=True)
    (volume / "wide/MANIFEST.yaml").write_text("name: wide\ntype: dataset\n")

    def write(values: pa.Array) -> None:  # all null then all set: every column drifts
        table = pa.table({f"c{i}": values for i in range(MAX_COLUMNS + 1)})
        pq.write_table(table, volume / "wide/part-0.parquet")

    write(pa.array(["a"] * 20))
    first = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert first.returncode == 0, first.stdout + first.stderr
    write(pa.array([None] * 20, pa.string()))
    drifted = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert drifted.returncode == 0, drifted.stdout + drifted.stderr
    said = [w["reason"] for w in json.loads(drifted.stdout)["warnings"]]
    refused = [w for w in said if w.startswith("drift flag refused by the catalogue: HTTP 422")]
    assert len(refused) == 1, said
    assert refused[0].endswith("not sent again until the data changes"), said
    wide = asset_id(catalogue_process.url, "wide")
    assert [i["drifted"] for i in history(metric_store.url, wide)] == [True, False]
    # Settled: the next crawl of the unchanged volume does not even ask the (now down) store.
    down = f"http://127.0.0.1:{refused_port()}"
    after = crawl_profiled(tmp_path, volume, catalogue_process.url, down)
    assert after.returncode == 0, after.stdout + after.stderr
    clipped = f"has {MAX_COLUMNS + 1} columns; the schema keeps the first {MAX_COLUMNS}"
    said = [w["reason"] for w in json.loads(after.stdout)["warnings"]]
    assert said == [f"wide/part-0.parquet {clipped}"], said


@pytest.mark.parametrize(
    ("status", "for_good"),
    [
        *[(400, True), (413, True), (422, True)],
        *[(409, False), (408, False), (429, False), (401, False), (403, False), (404, False)],
        *[(405, False), (500, False), (503, False)],
    ],
)
def test_which_refusals_settle_a_profile_or_a_drift_flag(status: int, for_good: bool) -> None:
    """A 409 settled a profile as refused for good, though the metric store (and the
    catalogue, for a flag) answers it to writes that raced, saying to retry."""
    from crawler.profile_step import _refused_for_good

    assert _refused_for_good(status) is for_good


@pytest.fixture
def stalled_store() -> Iterator[tuple[str, threading.Event]]:
    """A metric store's address that takes connections and never answers (a store stuck in
    a long pause), and an event set once a client connected."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    connected = threading.Event()

    def accept() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                held.append(listener.accept()[0])
                connected.set()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", connected
    finally:
        listener.close()
        for conn in held:
            conn.close()


def test_a_crawl_killed_in_its_profile_step_leaves_the_profiles_to_the_next_crawl(
    tmp_path: Path,
    catalogue_process: ProcessServer,
    metric_store: ThreadServer,
    stalled_store: tuple[str, threading.Event],
) -> None:
    """The crawl saved its state before the profile step: killed there (kill -9, or Ctrl-C,
    which ends the crawl at once), it left the changed data recorded as done. The next crawl
    found it unchanged and exited 0 with no profile, no check and no drift flag, for good."""
    volume = tmp_path / "lake"
    (volume / "sales").mkdir(parents=True)
    (volume / "sales/MANIFEST.yaml").write_text(
        "name: sales\ntype: dataset\nchecks:\n  - {type: range, column: amount, max: 80}\n"
    )
    data = volume / "sales/part-0.parquet"
    pq.write_table(sales(1), data)
    first = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert first.returncode == 0, first.stdout + first.stderr
    sales_id = asset_id(catalogue_process.url, "sales")
    assert [i["version"] for i in history(metric_store.url, sales_id)] == [1]

    pq.write_table(sales(2, shift=1.0), data)  # drifted, and over the check's bound
    stalled, connected = stalled_store
    env = {**profile_env(tmp_path, catalogue_process.url, stalled), "CAIRN_CRAWL_WORKERS": "1"}
    env["CAIRN_HTTP_TIMEOUT"] = "300"
    crawl = subprocess.Popen(
        [sys.executable, "-m", "cairn", "crawl", str(volume), "--profile", "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert connected.wait(patient(60)), "the crawl never reached its profile step"
        assert crawl.poll() is None
    finally:
        crawl.kill()
        crawl.wait()
    # The catalogue has the new data's asset; the metric store never heard of it.
    assert httpx.get(f"{catalogue_process.url}/api/v1/assets/{sales_id}").status_code == 200

    again = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["unchanged"] == 1, again.stdout
    assert "check range(amount) failed on sales/part-0.parquet" in again.stdout
    items = history(metric_store.url, sales_id)
    assert [(i["version"], i["drifted"]) for i in items] == [(2, True), (1, False)], items
    flagged = httpx.get(f"{catalogue_process.url}/api/v1/assets/{sales_id}").json()["drift"]
    assert flagged["drifted"] is True and flagged["profile_version"] == 2, flagged
    # Delivered: a third crawl owes nothing, and profiles nothing again.
    third = crawl_profiled(tmp_path, volume, catalogue_process.url, stalled)
    assert third.returncode == 0, third.stdout + third.stderr
    assert json.loads(third.stdout)["warnings"] == [], third.stdout
    assert len(history(metric_store.url, sales_id)) == 2


def test_a_drift_flag_the_catalogue_missed_is_sent_by_the_next_profile_step(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    """A flag not sent (the catalogue did not answer) waited for the data to change again;
    the profile step now says the asset is not settled, and a later step that is handed it
    as owed sends the stored verdict, and the stored checks' failures, without profiling."""
    from connectors import open_volume
    from crawler.crawl import CrawlReport, NamePatterns, walk_tree
    from crawler.profile_step import ProfileStep

    root = tmp_path / "lake"
    (root / "sales").mkdir(parents=True)
    (root / "sales/MANIFEST.yaml").write_text("name: sales\ntype: dataset\n")
    pq.write_table(sales(1), root / "sales/part-0.parquet")
    made = httpx.put(
        f"{catalogue_process.url}/api/v1/assets/s-1", json={"name": "sales", "type": "dataset"}
    )
    assert made.status_code == 201, made.text
    volume = open_volume(str(root))
    check = {"type": "range", "column": "amount", "max": 80}
    doc = {
        "id": "s-1",
        "location": volume.url_for("sales"),
        "manifest_path": "sales/MANIFEST.yaml",
        "extra": {"checks": [check]},
    }

    def step(catalogue: str, *, owed: bool = False) -> tuple[set[str], CrawlReport]:
        settings = Settings(
            data_dir=tmp_path / "crawl", featurestore_url=metric_store.url, catalogue_url=catalogue
        )
        tree = walk_tree(volume, NamePatterns(settings.manifest_patterns))
        report = CrawlReport(volume=volume.url, started_at="now")
        with ProfileStep(settings, volume, report) as profiles:
            profiles.submit(tree, [doc], owed=owed)
        return profiles.settled, report

    settled, _ = step(catalogue_process.url)
    assert settled == {"s-1"}  # a first profile: no flag to send
    pq.write_table(sales(2, shift=1.0), root / "sales/part-0.parquet")
    settled, report = step(f"http://127.0.0.1:{refused_port()}")
    assert settled == set(), report.warnings  # profiled, but its flag is still owed
    said = [w.reason for w in report.warnings]
    assert any("drift flags not sent" in w for w in said), said
    assert httpx.get(f"{catalogue_process.url}/api/v1/assets/s-1").json().get("drift") is None

    settled, report = step(catalogue_process.url, owed=True)
    assert settled == {"s-1"}, report.warnings
    flag = httpx.get(f"{catalogue_process.url}/api/v1/assets/s-1").json()["drift"]
    assert flag["drifted"] is True and flag["profile_version"] == 2, flag
    said = [w.reason for w in report.warnings]
    assert any(w.startswith("check range(amount) failed") for w in said), said
    assert len(history(metric_store.url, "s-1")) == 2  # the stored profile, not a new one


def test_an_owed_asset_whose_data_the_walk_did_not_see_stays_owed(tmp_path: Path) -> None:
    """An owed asset whose manifest the walk saw but not its data file (a folder it could not
    list this time) was settled as having no file to profile: its profile was never sent."""
    from connectors import open_volume
    from crawler.crawl import CrawlReport, NamePatterns, walk_tree
    from crawler.profile_step import ProfileStep

    root = tmp_path / "lake"
    (root / "sales").mkdir(parents=True)
    (root / "sales/MANIFEST.yaml").write_text("name: sales\ntype: dataset\n")
    volume = open_volume(str(root))
    doc = {"id": "s-1", "location": volume.url_for("sales"), "manifest_path": "sales/MANIFEST.yaml"}
    # No store is asked: with no file seen, nothing is profiled.
    settings = Settings(
        data_dir=tmp_path / "crawl", featurestore_url=f"http://127.0.0.1:{refused_port()}"
    )
    tree = walk_tree(volume, NamePatterns(settings.manifest_patterns))

    def settled(*, owed: bool) -> set[str]:
        report = CrawlReport(volume=volume.url, started_at="now")
        with ProfileStep(settings, volume, report) as profiles:
            profiles.submit(tree, [doc], owed=owed)
        assert report.warnings == [], report.warnings
        return profiles.settled

    assert settled(owed=True) == set()
    # Sent by this crawl, the document is as the walk found the volume: no data, nothing owed.
    assert settled(owed=False) == {"s-1"}


class CountingPool(ThreadPoolExecutor):
    """A thread pool that remembers the most jobs it held at once (queued or running)."""

    def __init__(self, workers: int):
        super().__init__(workers)
        self.held = 0
        self.most = 0
        self.lock = threading.Lock()

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def,override]
        with self.lock:
            self.held += 1
            self.most = max(self.most, self.held)
        job = super().submit(fn, *args, **kwargs)
        job.add_done_callback(self._done)
        return job

    def _done(self, _: object) -> None:
        with self.lock:
            self.held -= 1


def test_profile_step_runs_in_a_bounded_pool_beside_the_crawl(
    tmp_path: Path, metric_store: ThreadServer
) -> None:
    from connectors import open_volume
    from crawler.crawl import CrawlReport, NamePatterns, walk_tree
    from crawler.profile_step import ProfileStep

    root = tmp_path / "lake"
    docs = []
    for i in range(12):
        (root / f"d{i}").mkdir(parents=True)
        (root / f"d{i}/MANIFEST.yaml").write_text(f"name: d{i}\ntype: dataset\n")
        pq.write_table(sales(i, rows=2000), root / f"d{i}/part-0.parquet")
    settings = Settings(
        data_dir=tmp_path / "crawl",
        featurestore_url=metric_store.url,
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        crawl_profile_workers=2,
    )
    volume = open_volume(str(root))
    for i in range(12):
        docs.append({"id": f"a-{i}", "location": volume.url_for(f"d{i}"), "name": f"d{i}"})
    tree = walk_tree(volume, NamePatterns(settings.manifest_patterns))
    report = CrawlReport(volume=volume.url, started_at="now")
    pool = CountingPool(2)
    with ProfileStep(settings, volume, report, executor=pool) as step:
        step.submit(tree, docs)  # returns at once; a feeder thread fills the pool
    pool.shutdown()
    assert pool.most <= 4, pool.most  # twice the workers, never every file at once
    for i in range(12):
        assert history(metric_store.url, f"a-{i}")[0]["rows"] == 2000
    assert not report.errors and not report.warnings, report.warnings  # first profiles: no flags


def test_a_corrupt_crawled_file_is_a_failed_profile_kept_until_the_file_changes(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    volume = tmp_path / "lake"
    (volume / "broken").mkdir(parents=True)
    (volume / "broken/MANIFEST.yaml").write_text("name: broken\ntype: dataset\n")
    data = volume / "broken/part-0.parquet"
    data.write_bytes(b"PAR1" + b"\x00" * 300 + b"PAR1")  # magic bytes, no readable footer
    env = cairn_env(
        tmp_path / "crawl",
        CAIRN_CATALOGUE_URL=catalogue_process.url,
        CAIRN_FEATURESTORE_URL=metric_store.url,
    )
    first = run_cairn("crawl", str(volume), "--profile", env=env)
    assert first.returncode == 0, first.stdout + first.stderr  # a warning, the crawl goes on
    assert "profile not computed" in first.stdout + first.stderr
    broken = asset_id(catalogue_process.url, "broken")
    base = f"{metric_store.url}/api/v1/metrics/assets/{broken}"
    items = history(metric_store.url, broken)
    assert [(i["version"], i["status"]) for i in items] == [(1, "failed")], items
    assert items[0]["error"].startswith("broken/part-0.parquet: OSError: ")
    record = httpx.get(f"{base}/profile").json()
    assert record["status"] == "failed" and record["error"] == items[0]["error"]
    drift = httpx.get(f"{base}/drift")
    assert drift.status_code == 200 and drift.json()["drift"] is None, drift.text

    # The manifest changes, the file does not: the failure is an answer, not tried again.
    manifest = volume / "broken/MANIFEST.yaml"
    manifest.write_text(manifest.read_text() + "description: still broken\n")
    again = run_cairn("crawl", str(volume), "--profile", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "profile not computed" not in again.stdout + again.stderr
    assert [i["version"] for i in history(metric_store.url, broken)] == [1]

    pq.write_table(sales(5), data)  # fixed: the next crawl profiles it as version 2
    fixed = run_cairn("crawl", str(volume), "--profile", env=env)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    items = history(metric_store.url, broken)
    assert [(i["version"], i["status"]) for i in items] == [(2, "done"), (1, "failed")]
    assert items[0]["rows"] == 5000
    against_failed = httpx.get(f"{base}/drift", params={"against": 1})
    assert against_failed.status_code == 409, against_failed.text
    assert "status is done" in against_failed.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {"fingerprint": "a:1:2"},
        {"fingerprint": "a:1:2", "error": "x", "profile": {"rows": 1, "columns": []}},
        {"fingerprint": "a:1:2", "error": ""},
    ],
)
def test_an_asset_profile_needs_a_profile_or_an_error(
    metric_store: ThreadServer, body: dict
) -> None:
    answer = httpx.put(f"{metric_store.url}/api/v1/metrics/assets/a-1/profile", json=body)
    assert answer.status_code == 422, answer.text
    assert "profile" in answer.text or "error" in answer.text


def test_a_metric_store_that_wants_a_key_is_one_warning_naming_the_setting(
    tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    """Each profile the metric store refused for want of a key was a warning of its own
    holding the server's raw problem JSON; now one warning says which setting to set."""
    settings = Settings(
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        api_keys="store-key-123",  # type: ignore[arg-type]
    )
    volume = tmp_path / "lake"
    make_volume(volume)
    (volume / "more").mkdir()
    (volume / "more/MANIFEST.yaml").write_text("name: more\ntype: dataset\n")
    pq.write_table(sales(7), volume / "more/part-0.parquet")
    with ThreadServer(create_app(settings)) as store:
        env = cairn_env(
            tmp_path / "crawl",
            CAIRN_CATALOGUE_URL=catalogue_process.url,
            CAIRN_FEATURESTORE_URL=store.url,
        )
        first = {m: m.read_text() for m in volume.glob("*/MANIFEST.yaml")}
        for key, says in ((None, "no key was sent"), ("wrong", "CAIRN_API_KEY was refused")):
            for manifest, text in first.items():  # changed: profiled again
                manifest.write_text(text + f"owners: [{key}]\n")
            run_env = env if key is None else {**env, "CAIRN_API_KEY": key}
            done = run_cairn("crawl", str(volume), "--profile", "--json", env=run_env)
            assert done.returncode == 0, done.stdout + done.stderr
            warnings = [w["reason"] for w in json.loads(done.stdout)["warnings"]]
            keyed = [w for w in warnings if "CAIRN_API_KEY" in w]
            assert len(keyed) == 1, warnings
            assert says in keyed[0] and "CAIRN_API_KEYS" in keyed[0], keyed
            assert store.url in keyed[0] and "HTTP 401" in keyed[0], keyed
            assert not any("cairn.dev/problems" in w for w in warnings), warnings
        # The right key, nothing changed on the volume: the refused profiles are sent now.
        keyed_env = {**env, "CAIRN_API_KEY": "store-key-123"}
        done = run_cairn("crawl", str(volume), "--profile", "--json", env=keyed_env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert json.loads(done.stdout)["manifests_parsed"] == 0, done.stdout
        for name in ("sales", "daily", "more"):
            found = asset_id(catalogue_process.url, name)
            profile = httpx.get(f"{store.url}/api/v1/metrics/assets/{found}/profile")
            assert profile.status_code == 200, (name, profile.text)


def test_a_csv_is_profiled_with_the_delimiter_and_encoding_its_schema_was_read_with(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    """The schema read takes a `;` or tab delimiter and a Latin-1 or UTF-16 file; the profile
    read every CSV as UTF-8 with commas: a TSV became one column named "day\\tamount", and a
    semicolon or Latin-1 export a failed profile."""
    volume = tmp_path / "lake"
    rows = [("day", "city", "amount"), ("2026-01-01", "Köln", "1"), ("2026-01-02", "Zürich", "")]
    files = {
        "semi/d.csv": ("\n".join(";".join(r) for r in rows) + "\n").encode(),
        "tabs/d.tsv": ("\n".join("\t".join(r) for r in rows) + "\n").encode(),
        "latin/d.csv": ("\n".join(",".join(r) for r in rows) + "\n").encode("latin-1"),
        "wide/d.csv": ("\n".join(",".join(r) for r in rows) + "\n").encode("utf-16"),
    }
    for path, data in files.items():
        folder = volume / path.split("/")[0]
        folder.mkdir(parents=True)
        (folder / "MANIFEST.yaml").write_text(f"name: {folder.name}\ntype: dataset\n")
        (volume / path).write_bytes(data)
    done = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["warnings"] == [], done.stdout
    for name in ("semi", "tabs", "latin", "wide"):
        found = asset_id(catalogue_process.url, name)
        profile = httpx.get(f"{metric_store.url}/api/v1/metrics/assets/{found}/profile").json()
        assert profile["status"] == "done", (name, profile)
        columns = {c["name"]: c for c in profile["columns"]}
        assert list(columns) == ["day", "city", "amount"], (name, list(columns))
        assert profile["rows"] == 2 and columns["amount"]["nulls"] == 1, (name, profile)
        assert {t["value"] for t in columns["city"]["top"]} == {"Köln", "Zürich"}, name


def test_a_metric_store_url_that_is_not_one_is_one_warning_naming_the_setting(
    tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    """CAIRN_FEATURESTORE_URL set to the catalogue (or any other service): each file got a
    warning of its own holding a raw 404 problem JSON."""
    volume = tmp_path / "lake"
    make_volume(volume)
    done = crawl_profiled(tmp_path, volume, catalogue_process.url, catalogue_process.url)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout)["warnings"]
    warnings = [w["reason"] for w in found if not w["reason"].startswith("check not evaluated")]
    assert len(warnings) == 1, warnings
    assert "CAIRN_FEATURESTORE_URL" in warnings[0] and "HTTP 404" in warnings[0], warnings
    assert catalogue_process.url in warnings[0] and "about:blank" not in warnings[0], warnings


def test_a_globbed_location_profiles_its_first_matching_file(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    """The README's manifest gives `location: ./part-*.parquet`; such an asset was never
    profiled (the step looked for a file or folder named like the glob), so its metrics page
    kept saying to run `cairn crawl --profile` after every such crawl."""
    volume = tmp_path / "lake"
    (volume / "sales").mkdir(parents=True)
    (volume / "sales/MANIFEST.yaml").write_text(
        "name: globbed\ntype: dataset\nlocation: ./part-*.parquet\n"
    )
    (volume / "sales/notes.csv").write_text("a,b\n1,2\n")  # beside it, not matched
    pq.write_table(sales(1, rows=40), volume / "sales/part-1.parquet")
    pq.write_table(sales(2, rows=30), volume / "sales/part-0.parquet")
    done = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert done.returncode == 0, done.stdout + done.stderr
    found = asset_id(catalogue_process.url, "globbed")
    profile = httpx.get(f"{metric_store.url}/api/v1/metrics/assets/{found}/profile").json()
    assert profile.get("status") == "done", profile
    assert profile["rows"] == 30 and [c["name"] for c in profile["columns"]] == ["store", "amount"]


def test_a_folder_of_two_formats_is_profiled_from_a_file_of_its_format(
    tmp_path: Path, catalogue_process: ProcessServer, metric_store: ThreadServer
) -> None:
    """The schema comes from a file of the asset's format; the profile took the folder's first
    Parquet file whatever the format, so a CSV asset was profiled from an old export."""
    volume = tmp_path / "lake"
    (volume / "sales").mkdir(parents=True)
    (volume / "sales/MANIFEST.yaml").write_text("name: csv_sales\ntype: dataset\nformat: csv\n")
    (volume / "sales/data.csv").write_text("day,amount\n2026-01-01,1\n2026-01-02,2\n")
    # Two old exports: a guess from the names alone says Parquet.
    pq.write_table(sales(1, rows=40), volume / "sales/old_export.parquet")
    pq.write_table(sales(2, rows=40), volume / "sales/older_export.parquet")
    done = crawl_profiled(tmp_path, volume, catalogue_process.url, metric_store.url)
    assert done.returncode == 0, done.stdout + done.stderr
    found = asset_id(catalogue_process.url, "csv_sales")
    asset = httpx.get(f"{catalogue_process.url}/api/v1/assets/{found}").json()
    assert [c["name"] for c in asset["schema"]] == ["day", "amount"], asset
    profile = httpx.get(f"{metric_store.url}/api/v1/metrics/assets/{found}/profile").json()
    assert profile.get("status") == "done", profile
    assert profile["rows"] == 2 and [c["name"] for c in profile["columns"]] == ["day", "amount"]

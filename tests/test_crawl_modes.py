"""Long-running crawl modes as real subprocesses: --watch, --every and --config."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import ROOT, ProcessServer, cairn_env, run_cairn
from tests.test_crawl_e2e import write

WAIT_S = 15  # generous bound for a change to land; the speed itself is benchmarked, not tested


@contextmanager
def crawler(*args: str, env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cairn", "crawl", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def wait_for(base: str, name: str, *, deleted: bool = False) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        response = httpx.get(f"{base}/api/v1/assets/by-name/{name}", timeout=5)
        if response.status_code == 200 and response.json()["deleted"] is deleted:
            return response.json()
        time.sleep(0.1)
    raise AssertionError(f"{name} (deleted={deleted}) did not land within {WAIT_S}s")


def test_watch_pushes_changes(tmp_path: Path, catalogue_process: ProcessServer) -> None:
    volume = tmp_path / "lake"
    write(volume / "a/MANIFEST.yaml", "name: first\ntype: dataset\n")
    env = cairn_env(tmp_path / "data")
    base = catalogue_process.url
    with crawler(str(volume), "--watch", "--catalogue", base, env=env):
        wait_for(base, "first")
        write(volume / "b/MANIFEST.yaml", "name: second\ntype: dataset\ntags: [new]\n")
        wait_for(base, "second")
        write(volume / "b/MANIFEST.yaml", "name: second\ntype: dataset\ntags: [changed]\n")
        deadline = time.monotonic() + WAIT_S
        while httpx.get(f"{base}/api/v1/assets/by-name/second").json()["tags"] != ["changed"]:
            assert time.monotonic() < deadline, "the change did not land"
            time.sleep(0.1)
        (volume / "a/MANIFEST.yaml").unlink()
        wait_for(base, "first", deleted=True)


def test_watch_refuses_remote_volumes(tmp_path: Path) -> None:
    result = run_cairn("crawl", "hdfs://nn:9870/lake", "--watch", env=cairn_env(tmp_path))
    assert result.returncode == 1 and "--every" in result.stderr


def test_every_recrawls_on_schedule(tmp_path: Path, catalogue_process: ProcessServer) -> None:
    volume = tmp_path / "lake"
    write(volume / "a/MANIFEST.yaml", "name: scheduled\ntype: dataset\n")
    env = cairn_env(tmp_path / "data")
    base = catalogue_process.url
    with crawler(str(volume), "--every", "1s", "--catalogue", base, env=env):
        wait_for(base, "scheduled")
        write(volume / "b/MANIFEST.yaml", "name: later\ntype: dataset\n")
        wait_for(base, "later")


def test_bad_schedule_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cairn("crawl", str(tmp_path), "--every", "soon", env=cairn_env(tmp_path))
    assert result.returncode == 1 and "30s, 15m, 1h" in result.stderr


def test_config_file_with_mastro_keys(tmp_path: Path, catalogue_process: ProcessServer) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one / "MANIFEST.yaml", "name: from_one\ntype: dataset\n")
    write(two / "meta.yml", "name: from_two\ntype: table\n")  # only matched by the regex
    write(two / "MANIFEST.yaml", "name: ignored_by_regex\ntype: table\n")
    config = tmp_path / "crawl.yaml"
    config.write_text(
        "volumes:\n"
        f"  - root: {one}\n"
        f"    catalogue-endpoint: {catalogue_process.url}\n"
        f"  - root: {two}\n"
        "    filter-filename: '^meta\\.ya?ml$'\n"
        f"    catalogue-endpoint: {catalogue_process.url}\n"
    )
    result = run_cairn("crawl", "--config", str(config), "--json", env=cairn_env(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["created"] for r in reports] == [1, 1]
    names = {i["name"] for i in httpx.get(catalogue_process.url + "/api/v1/assets").json()["items"]}
    assert names == {"from_one", "from_two"}


def test_config_a_volume_that_could_not_run_outweighs_bad_manifests(
    tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    # README (crawling): 2 is "some manifests were bad", 1 "the crawl could not run". The
    # larger code won, so a missing volume hid behind another volume's bad manifest.
    bad = tmp_path / "bad"
    write(bad / "MANIFEST.yaml", "name: [unclosed\ntype: dataset\n")
    missing = tmp_path / "missing"
    config = tmp_path / "crawl.yaml"
    config.write_text(
        "volumes:\n"
        f"  - root: {bad}\n    catalogue-endpoint: {catalogue_process.url}\n"
        f"  - root: {missing}\n    catalogue-endpoint: {catalogue_process.url}\n"
    )
    result = run_cairn("crawl", "--config", str(config), "--json", env=cairn_env(tmp_path / "d"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["exit_code"] for r in reports] == [2, 1], reports
    # The failed volume's line says which volume it is, as a report does.
    assert reports[1]["volume"] == str(missing) and reports[1]["error"], reports[1]


def test_config_file_patterns_key_picks_the_manifests(
    tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    # README (crawling): crawl.yaml takes Cairn's own keys too; `patterns` replaces the default
    # file names for its volume.
    lake = tmp_path / "lake"
    write(lake / "a/sales.meta.yaml", "name: by_pattern\ntype: dataset\n")
    write(lake / "b/MANIFEST.yaml", "name: not_a_pattern\ntype: dataset\n")
    config = tmp_path / "crawl.yaml"
    config.write_text(
        f"volumes:\n  - root: {lake}\n    patterns: ['*.meta.yaml']\n"
        f"    catalogue-endpoint: {catalogue_process.url}\n"
    )
    result = run_cairn("crawl", "--config", str(config), "--json", env=cairn_env(tmp_path / "d"))
    assert result.returncode == 0, result.stderr
    names = {i["name"] for i in httpx.get(catalogue_process.url + "/api/v1/assets").json()["items"]}
    assert names == {"by_pattern"}


def test_scheduled_config_volume(tmp_path: Path, catalogue_process: ProcessServer) -> None:
    volume = tmp_path / "lake"
    write(volume / "MANIFEST.yaml", "name: cfg_scheduled\ntype: dataset\n")
    config = tmp_path / "crawl.yaml"
    config.write_text(
        f"root: {volume}\nschedule: 1s\nstart-now: true\n"
        f"catalogue-endpoint: {catalogue_process.url}\n"  # a Mastro config: one volume, no list
    )
    with crawler("--config", str(config), env=cairn_env(tmp_path / "d")):
        wait_for(catalogue_process.url, "cfg_scheduled")
        write(volume / "sub/MANIFEST.yaml", "name: cfg_later\ntype: dataset\n")
        wait_for(catalogue_process.url, "cfg_later")


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "crawl.yaml"
    config.write_text("volumes:\n  - root: /x\n    schedule: sometimes\n")
    result = run_cairn("crawl", "--config", str(config), env=cairn_env(tmp_path))
    assert result.returncode == 1 and "schedule" in result.stderr
    # Not UTF-8: a UnicodeDecodeError traceback before.
    config.write_bytes(b"\xff\xfe")
    result = run_cairn("crawl", "--config", str(config), env=cairn_env(tmp_path))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines == [f"error: {config} is not UTF-8 text (byte 0); save it as UTF-8"], lines
    neither = run_cairn("crawl", env=cairn_env(tmp_path))
    assert neither.returncode == 1 and "--config" in neither.stderr


def test_a_command_line_crawl_cannot_parse_exits_1_not_2(tmp_path: Path) -> None:
    """Exit 2 means some manifests were bad; click gave it to an unknown option too, so a
    cron job could not tell a typo in its own command line from a broken manifest."""
    env = cairn_env(tmp_path, CAIRN_CATALOGUE_URL="http://127.0.0.1:9")
    for args, says in (
        (("--bogus", str(tmp_path)), "No such option: --bogus"),
        ((str(tmp_path), "--every"), "'--every' requires an argument"),
        ((str(tmp_path), "--catalogue"), "'--catalogue' requires an argument"),
    ):
        result = run_cairn("crawl", *args, env=env)
        assert result.returncode == 1, (args, result.stderr)
        assert says in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
    # Only the crawl's code changes: other commands keep click's usage exit code.
    other = run_cairn("serve", "--bogus", env=env)
    assert other.returncode == 2 and "No such option: --bogus" in other.stderr, other.stderr
    assert run_cairn("crawl", "--help", env=env).returncode == 0


def test_a_bad_manifest_pattern_is_one_line_before_anything_is_crawled(tmp_path: Path) -> None:
    """A pattern that cannot match (a broken re:, an empty one) would otherwise crash the
    crawl with a traceback, or find no manifest and soft-delete the volume's assets."""
    volume = tmp_path / "lake"
    write(volume / "a/MANIFEST.yaml", "name: kept\ntype: dataset\n")
    config = tmp_path / "crawl.yaml"
    config.write_text(f"volumes:\n  - root: {volume}\n    patterns: ['re:(']\n")
    env = cairn_env(tmp_path / "data", CAIRN_CATALOGUE_URL="http://127.0.0.1:9")
    runs = {
        "--pattern re:(": run_cairn("crawl", str(volume), "--pattern", "re:(", env=env),
        "--pattern ''": run_cairn("crawl", str(volume), "--pattern", "", env=env),
        "--config": run_cairn("crawl", "--config", str(config), env=env),
        "CAIRN_MANIFEST_PATTERNS": run_cairn(
            "crawl", str(volume), env={**env, "CAIRN_MANIFEST_PATTERNS": "re:a(b"}
        ),
        "snapshot": run_cairn("snapshot", str(volume / "a"), "--pattern", "re:(", env=env),
    }
    for how, result in runs.items():
        assert result.returncode == 1, (how, result.stderr)
        assert "Traceback" not in result.stderr, (how, result.stderr)
        # One line, and refused before the catalogue (unreachable here) is asked: a retry
        # would have logged lines of its own.
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "manifest pattern" in lines[0], (how, result.stderr)


def test_a_catalogue_url_without_http_fails_at_once(tmp_path: Path) -> None:
    """No retry can make ``--catalogue catalogue.local:8001`` work: it is said at once, not
    after seven retries."""
    volume = tmp_path / "lake"
    write(volume / "a/MANIFEST.yaml", "name: kept\ntype: dataset\n")
    for url in ("catalogue.local:8001", "ftp://catalogue.local"):
        result = run_cairn("crawl", str(volume), "--catalogue", url, env=cairn_env(tmp_path))
        assert result.returncode == 1, result.stderr
        assert "retry" not in result.stderr and "Traceback" not in result.stderr, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and url in lines[0] and "http" in lines[0], lines


def _crawl_on(terminal: bool, catalogue: str, env: dict[str, str]) -> tuple[int, str]:
    """``cairn crawl examples/lake`` with stderr on a pseudo-terminal (or a pipe); its exit code
    and every byte it wrote to stderr."""
    args = [sys.executable, "-m", "cairn", "crawl", "examples/lake", "--catalogue", catalogue]
    if not terminal:
        done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, timeout=300)
        return done.returncode, done.stderr.decode()
    master, slave = os.openpty()
    try:
        child = subprocess.Popen(
            args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=slave, close_fds=True
        )
        os.close(slave)
        written = bytearray()
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal's last writer
                break
            if not chunk:
                break
            written += chunk
        return child.wait(timeout=300), written.decode(errors="replace")
    finally:
        os.close(master)


def test_the_crawl_draws_a_progress_bar_on_a_terminal_only(
    tmp_path: Path, catalogue_process: ProcessServer
) -> None:
    """README (Crawling): `cairn crawl examples/lake` shows a progress bar on a terminal; piped
    (cron, CI, a log file) it prints no bar, only the report."""
    env = {**cairn_env(tmp_path / "crawler"), "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    code, drawn = _crawl_on(True, catalogue_process.url, env)
    assert code == 0, drawn
    assert "\x1b[" in drawn  # drawn, redrawn and erased with terminal control sequences
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn)
    # Each stage's line: its name, the bar, done/total; the push ends complete.
    assert re.search(r"parse +━+ +\d+/\d+", text), drawn
    assert re.search(r"push +━+ +(\d+)/\1 ", text), drawn
    code, piped = _crawl_on(False, catalogue_process.url, env)
    assert code == 0, piped
    assert "━" not in piped and "\x1b[" not in piped, piped


def test_watch_ignores_the_crawl_state_it_writes_inside_the_volume(tmp_path: Path) -> None:
    """`cd lake && cairn crawl . --watch` keeps its state in ./.cairn (the default data dir),
    inside the watched folder: each crawl's own state writes must not start the next crawl,
    which crawled again and again for ever."""
    from watchdog.events import FileCreatedEvent, FileModifiedEvent, FileMovedEvent

    from crawler.watch import ChangeFlag

    volume = tmp_path / "lake"
    data = volume / ".cairn"
    flag = ChangeFlag(ignore=[data])
    for event in (
        FileCreatedEvent(str(data / "crawl-state/0123.db-wal")),
        FileModifiedEvent(str(data / "crawl-state/0123.db")),
        FileMovedEvent(str(data / "a.tmp"), str(data / "a")),
    ):
        flag.dispatch(event)
    assert not flag.is_set()
    flag.dispatch(FileCreatedEvent(str(volume / ".cairnx/MANIFEST.yaml")))  # not below it
    assert flag.is_set()
    flag.clear()
    flag.dispatch(FileMovedEvent(str(data / "MANIFEST.yaml"), str(volume / "MANIFEST.yaml")))
    assert flag.is_set()


def test_watch_of_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    result = run_cairn("crawl", str(tmp_path / "nowhere"), "--watch", env=cairn_env(tmp_path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nowhere" in lines[0] and "does not exist" in lines[0], lines


def test_options_that_cannot_go_together_are_one_line(tmp_path: Path) -> None:
    """`--pattern`, `--every` and `--watch` were silently dropped with `--config` (and
    `--every` with `--watch`): the crawl ran without what was asked."""
    config = tmp_path / "crawl.yaml"
    config.write_text(f"volumes:\n  - root: {tmp_path}\n")
    env = cairn_env(tmp_path / "data", CAIRN_CATALOGUE_URL="http://127.0.0.1:9")
    runs = {
        "--pattern": ("--config", str(config), "--pattern", "*.meta.yaml"),
        "--every": ("--config", str(config), "--every", "1m"),
        "--watch": ("--config", str(config), "--watch"),
        "pick one": (str(tmp_path), "--watch", "--every", "1m"),
    }
    for says, args in runs.items():
        result = run_cairn("crawl", *args, env=env)
        assert result.returncode == 1, (says, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and says in lines[0], (says, result.stderr)

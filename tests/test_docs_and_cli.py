"""Docs stay true: every setting and command is documented; `cairn up` does what it says."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer.main

from cairn.cli import app
from cairn.settings import Settings
from tests.conftest import ROOT, cairn_env, free_port, run_cairn

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    for name in Settings.model_fields:
        assert f"`CAIRN_{name.upper()}`" in README, f"CAIRN_{name.upper()} is not documented"


def test_readme_settings_exist() -> None:
    documented = set(re.findall(r"`CAIRN_([A-Z_]+)`", README))
    assert documented <= {n.upper() for n in Settings.model_fields}


def test_readme_has_the_two_commands_and_ci_runs_the_second() -> None:
    assert "make up" in README and "make test" in README
    ci = (ROOT / ".ci/run").read_text()
    assert re.search(r"^exec make test$", ci, re.M)


def test_every_command_has_help() -> None:
    group = typer.main.get_group(app)
    assert set(group.commands) >= {"up", "serve", "crawl"}
    for name, command in group.commands.items():
        assert command.help and len(command.help) > 20, f"cairn {name} lacks help"
        for param in command.params:
            if param.name != "help" and isinstance(param, typer.core.TyperOption):
                assert param.help, f"cairn {name} {param.name} lacks help"
        result = run_cairn(name, "--help", env=cairn_env(ROOT / ".cairn-test-unused"))
        assert result.returncode == 0 and "Usage" in result.stdout


def test_reindex_names_a_missing_extra_in_full(tmp_path: Path) -> None:
    # As if the mongo extra were not installed: the hint must survive the terminal formatter.
    hide = "import sys; sys.modules['pymongo'] = None; from cairn.cli import app; app(['reindex'])"
    result = subprocess.run(
        [sys.executable, "-c", hide],
        env=cairn_env(tmp_path / "data", CAIRN_BACKEND="mongo"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert re.search(r"pip install '[\w-]+\[mongo\]'", result.stderr), result.stderr


def test_reindex_outside_a_project_refuses_and_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-project" / ".cairn"
    result = run_cairn("reindex", env=cairn_env(empty))
    assert result.returncode == 1
    assert f"no catalogue at {empty / 'catalogue.db'}" in result.stderr, result.stderr
    assert "CAIRN_DATA_DIR" in result.stderr
    assert not empty.exists()


def test_reindex_rebuilds_an_embedded_catalogue(tmp_path: Path) -> None:
    import asyncio

    from catalogue_service.backends import create_store

    settings = Settings(data_dir=tmp_path / "data")

    async def make() -> None:
        store = create_store(settings)
        await store.open()
        await store.close()

    asyncio.run(make())
    result = run_cairn("reindex", env=cairn_env(tmp_path / "data"))
    assert result.returncode == 0, result.stderr
    assert "Reindexed 0 assets on the sqlite backend" in result.stdout


def test_settings_reject_bad_values(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CAIRN_CATALOGUE_PORT", "not-a-port")
    try:
        Settings()
    except ValueError as exc:
        assert "catalogue_port" in str(exc)
    else:
        raise AssertionError("a bad port was accepted")


def test_cairn_up_serves_and_crawls_the_example_lake(tmp_path: Path) -> None:
    port = free_port()
    fs_port = free_port()
    ui_port = free_port()
    env = cairn_env(
        tmp_path / "data",
        CAIRN_CATALOGUE_PORT=str(port),
        CAIRN_FEATURESTORE_PORT=str(fs_port),
        CAIRN_UI_PORT=str(ui_port),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cairn", "up"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        lines = []
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        assert "Press Ctrl-C" in output, output
        assert "created 53" in output, output
        body = httpx.get(f"http://127.0.0.1:{port}/api/v1/assets", params={"q": "churn"}).json()
        assert {"churn_model", "churn_scores"} <= {i["name"] for i in body["items"]}
        assert (tmp_path / "data" / "catalogue.db").exists()
        # The feature store is up and seeded with the example feature sets.
        assert "Seeded 9 example feature set version(s)" in output, output
        sets = httpx.get(f"http://127.0.0.1:{fs_port}/api/v1/featuresets").json()
        assert {i["name"]: i["version"] for i in sets["items"]}["churn_model_serving"] == 3
        assert {i["kind"] for i in sets["items"]} == {"values", "table"}
        # The web UI is up, reads both services, and is the last address printed.
        ui = f"http://127.0.0.1:{ui_port}"
        listed = re.findall(r"^  (\w+) +(http://\S+)", output, re.M)
        assert listed[-1] == ("ui", ui), output
        page = httpx.get(ui + "/", params={"q": "churn"})
        assert page.status_code == 200 and "churn_model" in page.text
        assert httpx.get(ui + "/featuresets/churn_model_serving").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
    assert proc.returncode in (0, 130, -signal.SIGINT)
    # The services went down with it.
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    except httpx.TransportError:
        pass
    else:
        raise AssertionError("the catalogue kept running after cairn up stopped")

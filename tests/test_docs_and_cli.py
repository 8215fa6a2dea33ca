"""Docs stay true: every setting and command is documented; `cairn up` does what it says."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import typer.main

from cairn.cli import app
from cairn.settings import Settings
from tests.conftest import ROOT, cairn_env, cairn_up, free_port, run_cairn
from tests.servers.processes import patient

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
    with cairn_up(env) as (proc, output):
        assert "Press Ctrl-C" in output, output
        assert "created 53" in output, output
        timeout = patient(30)
        body = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/assets", params={"q": "churn"}, timeout=timeout
        ).json()
        assert {"churn_model", "churn_scores"} <= {i["name"] for i in body["items"]}
        assert (tmp_path / "data" / "catalogue.db").exists()
        # The feature store is up and seeded with the example feature sets.
        assert "Seeded 9 example feature set version(s)" in output, output
        sets = httpx.get(f"http://127.0.0.1:{fs_port}/api/v1/featuresets", timeout=timeout).json()
        assert {i["name"]: i["version"] for i in sets["items"]}["churn_model_serving"] == 3
        assert {i["kind"] for i in sets["items"]} == {"values", "table"}
        # The web UI is up, reads both services, and is the last address printed.
        ui = f"http://127.0.0.1:{ui_port}"
        listed = re.findall(r"^  (\w+) +(http://\S+)", output, re.M)
        assert listed[-1] == ("ui", ui), output
        # ... and, run from a virtual environment, how to get `cairn` in another terminal.
        activate = Path(sys.prefix) / "bin" / "activate"
        if activate.is_relative_to(ROOT):
            activate = activate.relative_to(ROOT)
        assert f"`source {activate}`" in output, output
        page = httpx.get(ui + "/", params={"q": "churn"}, timeout=timeout)
        assert page.status_code == 200 and "churn_model" in page.text
        featureset = httpx.get(ui + "/featuresets/churn_model_serving", timeout=timeout)
        assert featureset.status_code == 200
        # Ctrl-C stops cairn up and, with it, the services.
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=patient(60))
        assert proc.returncode in (0, 130, -signal.SIGINT)
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    except httpx.TransportError:
        pass
    else:
        raise AssertionError("the catalogue kept running after cairn up stopped")


MISSING_PYMONGO = """
import sys
sys.modules["pymongo"] = None  # as if the mongo extra were not installed
from cairn.cli import app
app(["serve", sys.argv[1], "--port", sys.argv[2]])
"""


def test_serve_without_the_backends_extra_says_so_in_one_line(tmp_path: Path) -> None:
    env = cairn_env(tmp_path / "data", CAIRN_BACKEND="mongo")
    for service in ("catalogue", "featurestore"):
        result = subprocess.run(
            [sys.executable, "-c", MISSING_PYMONGO, service, str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=patient(60),
            cwd=ROOT,
        )
        assert result.returncode == 1
        assert "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "[mongo]" in errors[0], result.stderr

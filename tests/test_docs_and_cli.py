"""Docs stay true: every setting and command is documented; `cairn up` does what it says."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer.main

from cairn.cli import app
from cairn.settings import Settings
from tests.conftest import ROOT, cairn_env, cairn_up, free_port, refused_port, run_cairn
from tests.servers.processes import patient, stop_group

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    for name in Settings.model_fields:
        assert f"`CAIRN_{name.upper()}`" in README, f"CAIRN_{name.upper()} is not documented"


def test_readme_settings_exist() -> None:
    documented = set(re.findall(r"`CAIRN_([A-Z_]+)`", README))
    assert documented <= {n.upper() for n in Settings.model_fields}


def _documented_default(value: object) -> str | None:
    """How the README's configuration table writes a setting's default (None: no value)."""
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if value is None or value in ([], {}):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def test_readme_configuration_table_gives_each_settings_default() -> None:
    rows = re.findall(r"^\| `CAIRN_([A-Z0-9_]+)` \| (.+?) \| .+ \|$", README, re.M)
    assert {name for name, _ in rows} == {n.upper() for n in Settings.model_fields}
    for name, cell in rows:
        field = Settings.model_fields[name.lower()]
        default = field.default_factory() if field.default_factory else field.default
        expected = _documented_default(default)
        # A literal default is one code span; a setting without one says what applies instead.
        literal = re.fullmatch(r"`([^`]+)`", cell)
        written = literal[1] if literal else None
        assert written == expected, f"README gives CAIRN_{name} the default {cell}, not {expected}"


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


def test_crawl_help_lists_every_exit_code_the_readme_gives() -> None:
    # The README's 130 (interrupted by Ctrl-C) was missing from `cairn crawl --help`.
    start = README.index("Exit codes: `0` clean")
    codes = re.findall(r"`(\d+)`", README[start : README.index("\n\n", start)])
    assert {"0", "1", "2", "130"} <= set(codes), codes
    result = run_cairn("crawl", "--help", env=cairn_env(ROOT / ".cairn-test-unused"))
    text = " ".join(result.stdout.split())
    said = text[text.index("Exit codes:") : text.index("Arguments:")]
    for code in codes:
        assert re.search(rf"(?<![\w-]){code}\b", said), (code, said)


def test_every_subcommand_option_and_argument_has_help() -> None:
    # `cairn metrics show --help` listed its NAME argument as `name <str> [required]`, with
    # nothing to say what name it wants.
    def walk(command: typer.core.TyperCommand, path: str) -> list[str]:
        children = getattr(command, "commands", None)
        if children is not None:
            return [gap for name, sub in children.items() for gap in walk(sub, f"{path} {name}")]
        gaps = [] if command.help else [f"{path}: the command"]
        return gaps + [
            f"{path}: {param.name}"
            for param in command.params
            if param.name != "help" and not getattr(param, "help", None)
        ]

    assert walk(typer.main.get_group(app), "cairn") == []


def test_every_option_that_takes_a_value_names_it() -> None:
    # `cairn crawl --help` listed `--catalogue <str>`, `--pattern <list[str]>`, `--limit <int
    # range>`: the Python type, where a reader wants what to write (URL, PATTERN, N).
    def walk(command: typer.core.TyperCommand, path: str) -> list[str]:
        children = getattr(command, "commands", None)
        if children is not None:
            return [gap for name, sub in children.items() for gap in walk(sub, f"{path} {name}")]
        return [
            f"{path} {param.opts[0]}"
            for param in command.params
            if isinstance(param, typer.core.TyperOption)
            and not param.is_flag
            and not (param.metavar and param.metavar.isupper())
        ]

    assert walk(typer.main.get_group(app), "cairn") == []
    result = run_cairn("crawl", "--help", env=cairn_env(ROOT / ".cairn-test-unused"))
    assert "--catalogue URL" in result.stdout and "<str>" not in result.stdout.split("Options:")[1]


def test_every_command_is_in_the_readmes_command_table() -> None:
    table = README.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    group = typer.main.get_group(app)
    for name, command in group.commands.items():
        subcommands = getattr(command, "commands", None) or {"": command}
        for sub in subcommands:
            row = rf"^\| `cairn {name}{' [^`]*' + sub if sub else ''}\b"
            assert re.search(row, table, re.M), f"cairn {name} {sub} is not in the README's table"


def test_the_cli_does_not_import_the_httpx_command_line() -> None:
    # httpx imports click, pygments and rich's syntax for its own CLI when they are
    # installed: 30 ms of every crawl's start-up. The push client must still work.
    probe = (
        "import sys; import cairn.cli; from crawler.push import CataloguePusher; "
        "CataloguePusher('http://127.0.0.1:9').close(); "
        "print(sorted(m for m in ('click', 'pygments', 'rich.syntax', 'httpx._main') "
        "if sys.modules.get(m) is not None))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# Sends SIGINT to itself when ``typer`` is first looked for: mid-way through the imports of
# the command line, as a Ctrl-C right after the command was typed lands.
_CTRL_C_ON_IMPORT = """
import os, signal, sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "typer":
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlC())
sys.argv[1:] = ["--help"]
from cairn.main import main
main()
"""

# Sends SIGINT to itself when typer starts building the command line from the commands'
# signatures: after the imports, before the command.
_CTRL_C_ON_BUILD = """
import os, signal, sys
import typer.main
build = typer.main.get_command
def get_command(app):
    os.kill(os.getpid(), signal.SIGINT)
    return build(app)
typer.main.get_command = get_command
sys.argv[1:] = ["--help"]
from cairn.main import main
main()
"""


@pytest.mark.parametrize("probe", [_CTRL_C_ON_IMPORT, _CTRL_C_ON_BUILD], ids=["imports", "build"])
def test_ctrl_c_before_the_command_starts_ends_it_without_a_traceback(probe: str) -> None:
    # During the imports, the import machinery's KeyboardInterrupt traceback (a screen of
    # frozen importlib frames) was printed whenever Ctrl-C came within the command's first
    # third of a second; while typer built the command line, one through typing's and
    # inspect's frames (a Ctrl-C 0.08-0.10 s after `cairn crawl` was typed, on this machine).
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 128 + signal.SIGINT, result.stderr
    assert result.stderr == "" and result.stdout == ""
    # Without the Ctrl-C, the same entry point runs the command.
    quiet = probe.replace("os.kill(os.getpid(), signal.SIGINT)", "pass")
    result = subprocess.run(
        [sys.executable, "-c", quiet], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0 and "crawl" in result.stdout, result.stderr


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
    # No progress bar into a pipe: its end left an empty line in logs.
    assert result.stderr == "", repr(result.stderr)


def test_settings_reject_bad_values(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CAIRN_CATALOGUE_PORT", "not-a-port")
    try:
        Settings()
    except ValueError as exc:
        assert "catalogue_port" in str(exc)
    else:
        raise AssertionError("a bad port was accepted")


def test_log_level_takes_the_usual_names_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    for given, kept in (("warn", "warning"), ("WARNING", "warning"), ("Debug", "debug")):
        monkeypatch.setenv("CAIRN_LOG_LEVEL", given)
        assert Settings().log_level == kept


def test_a_variable_pydantic_settings_cannot_decode_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A JSON setting without a decoder of Cairn's own fails inside pydantic-settings, before
    # validation: still one error naming the variable, without its value.
    import cairn.settings

    class WithJson(Settings):
        some_map: dict[str, int] = {}

    monkeypatch.setattr(cairn.settings, "Settings", WithJson)
    monkeypatch.setenv("CAIRN_SOME_MAP", "secret-not-json")
    cairn.settings.get_settings.cache_clear()
    try:
        with pytest.raises(cairn.settings.SettingsError, match=r"^CAIRN_SOME_MAP: ") as caught:
            cairn.settings.get_settings()
        assert "secret" not in str(caught.value)
    finally:
        cairn.settings.get_settings.cache_clear()


@pytest.mark.parametrize("name", ["CAIRN_CRAWL_LIST_CONCURRENCY", "CAIRN_CRAWL_READ_CONCURRENCY"])
def test_crawl_concurrency_settings_take_1_to_64(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # README (configuration): each of these is "1 to 64".
    for good in ("1", "64"):
        monkeypatch.setenv(name, good)
        assert getattr(Settings(), name[6:].lower()) == int(good)
    for bad in ("0", "65"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValueError, match=name[6:].lower()):
            Settings()


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    """Every command reads the CAIRN_* settings first: a wrong one is an error line naming
    the variable and what it takes (no traceback, no value echoed: it may be a secret)."""
    cases = [
        (("serve", "catalogue"), "CAIRN_CATALOGUE_PORT", "not-a-port", "valid integer"),
        (("serve", "featurestore"), "CAIRN_FEATURESTORE_PORT", "70000", "65535"),
        (("crawl", str(tmp_path)), "CAIRN_HTTP_TIMEOUT", "-1", "greater than 0"),
        (("crawl", str(tmp_path)), "CAIRN_HTTP_RETRIES", "0", "greater than or equal to 1"),
        (("featureset", "list"), "CAIRN_HTTP_TIMEOUT", "soon", "valid number"),
        # uvicorn knew no "warn" (a KeyError traceback); the crawler took any name as INFO.
        (("serve", "catalogue"), "CAIRN_LOG_LEVEL", "verbose", "debug, info, warning"),
        (("crawl", str(tmp_path)), "CAIRN_LOG_LEVEL", "verbose", "debug, info, warning"),
        # Decoded by pydantic-settings itself, it was a SettingsError traceback, even for a
        # local crawl.
        (("crawl", str(tmp_path)), "CAIRN_HDFS_NAMESERVICES", "notjson", "takes JSON"),
    ]
    for args, variable, value, expected in cases:
        result = run_cairn(*args, env=cairn_env(tmp_path / "data", **{variable: value}))
        assert result.returncode == 1, (variable, result.stderr)
        assert "Traceback" not in result.stderr, (variable, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {variable}: "), (variable, lines)
        assert expected in lines[0] and value not in lines[0].removeprefix("error: "), lines
    # A data dir that is a file: said once, before a service or a crawl trips over it.
    not_a_folder = tmp_path / "data-file"
    not_a_folder.write_text("")
    for args in (("serve", "catalogue", "--port", "9"), ("crawl", str(tmp_path))):
        result = run_cairn(*args, env=cairn_env(not_a_folder))
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert lines == [f"error: CAIRN_DATA_DIR: {not_a_folder} is a file, not a folder"], lines


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
        # README: "a small retail lake of 49 manifests (53 assets, all 13 types)".
        assert "97 files, 49 manifests, 53 assets" in output, output
        timeout = patient(30)
        body = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/assets", params={"q": "churn"}, timeout=timeout
        ).json()
        assert {"churn_model", "churn_scores"} <= {i["name"] for i in body["items"]}
        assert (tmp_path / "data" / "catalogue.db").exists()
        # The feature store is up and seeded with the example feature sets.
        assert "Seeded 9 example feature set versions" in output, output
        sets = httpx.get(f"http://127.0.0.1:{fs_port}/api/v1/featuresets", timeout=timeout).json()
        assert {i["name"]: i["version"] for i in sets["items"]}["churn_model_serving"] == 3
        assert {i["kind"] for i in sets["items"]} == {"values", "table"}
        # README: "five sets (two tables), nine versions".
        assert sorted(i["kind"] for i in sets["items"]) == ["table"] * 2 + ["values"] * 3
        types = httpx.get(f"http://127.0.0.1:{port}/api/v1/types", timeout=timeout).json()
        assert len(types) == 13, types
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


def _listening_ports(pid: int) -> set[int]:
    """The TCP ports ``pid`` itself listens on: its socket inodes looked up in /proc/net."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _start_up(env: dict[str, str], log: Path) -> subprocess.Popen[str]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cairn", "up", "--no-crawl"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def _up_env(tmp_path: Path) -> tuple[dict[str, int], dict[str, str]]:
    """Free ports for `cairn up`'s three services, and its environment serving on them."""
    ports = {"catalogue": free_port(), "featurestore": free_port(), "ui": free_port()}
    env = cairn_env(
        tmp_path / "data",
        CAIRN_CATALOGUE_PORT=str(ports["catalogue"]),
        CAIRN_FEATURESTORE_PORT=str(ports["featurestore"]),
        CAIRN_UI_PORT=str(ports["ui"]),
    )
    return ports, env


def test_cairn_up_serves_every_service_from_one_process(tmp_path: Path) -> None:
    ports, env = _up_env(tmp_path)
    log = tmp_path / "up.log"
    proc = _start_up(env, log)
    try:
        deadline = time.monotonic() + patient(180)
        while "Press Ctrl-C" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()
        for service, port in ports.items():
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=patient(10))
            assert ready.status_code == 200, (service, ready.text)
        # One process serves the three ports; no service runs in a child of its own.
        assert _listening_ports(proc.pid) >= set(ports.values())
        assert _children(proc.pid) == []
        # The UI reads the catalogue and the feature store in the same process over HTTP.
        page = httpx.get(f"http://127.0.0.1:{ports['ui']}/status", timeout=patient(10))
        assert page.status_code == 200, page.text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=patient(60)) == 0
        text = log.read_text()
        for service in ports:
            # Each service ran its own shutdown, and its log lines say which service wrote them.
            assert f"[{service}] uvicorn.error: Application shutdown complete" in text, text
        assert "Traceback" not in text, text
        for port in ports.values():
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"
    finally:
        stop_group(proc)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_cairn_up_killed_takes_its_crawl_child_along(tmp_path: Path) -> None:
    # A lake big enough that the crawl child is still at work when `cairn up` is killed.
    lake = tmp_path / "lake"
    for i in range(3000):
        folder = lake / f"d{i // 100}" / f"t{i}"
        folder.mkdir(parents=True)
        (folder / "MANIFEST.yaml").write_text(f"name: table_{i}\ntype: dataset\ntags: [kill]\n")
    catalogue = free_port()
    env = cairn_env(
        tmp_path / "data",
        CAIRN_CATALOGUE_PORT=str(catalogue),
        CAIRN_FEATURESTORE_PORT=str(free_port()),
        CAIRN_UI_PORT=str(free_port()),
        # Retrying pushes to the services for minutes, were the child left to its own end.
        CAIRN_HTTP_RETRIES="40",
    )
    log = tmp_path / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cairn", "up", "--lake", str(lake)],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + patient(180)
        pushed = 0
        while not pushed:  # the child crawls: its first batch is in the catalogue
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
            with contextlib.suppress(httpx.HTTPError):
                found = httpx.get(
                    f"http://127.0.0.1:{catalogue}/api/v1/assets", params={"tag": "kill"}
                )
                pushed = found.json()["total"] if found.status_code == 200 else 0
        children = _children(proc.pid)
        assert children, log.read_text()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # The crawl child (and the parsing workers it forked) end with `cairn up`; before,
        # the child crawled on and retried its pushes to the services that were gone.
        deadline = time.monotonic() + patient(20)
        while any(_alive(pid) for pid in children):
            assert time.monotonic() < deadline, (children, log.read_text())
            time.sleep(0.1)
        assert "Press Ctrl-C" not in log.read_text()
    finally:
        stop_group(proc)


def test_cairn_up_stops_at_once_on_ctrl_c_while_a_later_service_starts(tmp_path: Path) -> None:
    # Ctrl-C once the catalogue was ready and while the feature store (or the UI) started:
    # the waits for the later service's /readyz only asked whether that service had stopped,
    # while the catalogue's stop was what showed, so `cairn up` polled on for 60 s and ended
    # with "was not ready after 60s" and exit 1; a Ctrl-C during the catalogue's own start
    # said "error: ... stopped while starting" (exit 1).
    ports, env = _up_env(tmp_path)
    log = tmp_path / "up.log"
    proc = _start_up(env, log)
    try:
        deadline = time.monotonic() + patient(180)
        while "catalogue ready at" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=patient(20)) == 0, log.read_text()
    finally:
        stop_group(proc)
    text = log.read_text()
    assert not re.search(r"^error:", text, re.M) and "Traceback" not in text, text
    for port in ports.values():
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


def test_cairn_up_says_which_service_could_not_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ui_port = taken.getsockname()[1]
        catalogue_port = free_port()
        env = cairn_env(
            tmp_path / "data",
            CAIRN_CATALOGUE_PORT=str(catalogue_port),
            CAIRN_FEATURESTORE_PORT=str(free_port()),
            CAIRN_UI_PORT=str(ui_port),
        )
        log = tmp_path / "up.log"
        proc = _start_up(env, log)
        try:
            assert proc.wait(timeout=patient(180)) == 1, log.read_text()
        finally:
            stop_group(proc)
    text = log.read_text()
    assert f"error: the ui service did not start on 127.0.0.1:{ui_port}" in text, text
    assert "set CAIRN_UI_PORT to a free one" in text, text  # what to do about it
    # The services that had started were shut down, not left running.
    assert "[catalogue] uvicorn.error: Application shutdown complete" in text, text
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", catalogue_port)) != 0


@pytest.mark.parametrize("port", ["99999", "0", "-5"])
def test_serve_refuses_a_port_out_of_range_as_a_usage_error(tmp_path: Path, port: str) -> None:
    # 99999 was served on 99999 % 65536 while uvicorn said 99999, 0 quietly meant the
    # default port, and -5 ended with uvicorn's "Servname not supported" and exit 3.
    env = cairn_env(tmp_path / "data", CAIRN_UI_PORT=str(free_port()))
    result = run_cairn("serve", "ui", f"--port={port}", env=env, timeout=patient(30))
    assert result.returncode == 2, result.stderr
    assert "Invalid value for '--port'" in result.stderr, result.stderr


def test_serve_on_a_host_that_is_not_an_address_says_which_and_exits_1(tmp_path: Path) -> None:
    # uvicorn said only "[Errno -2] Name or service not known", and exited 3.
    env = cairn_env(tmp_path / "data")
    port = str(free_port())
    result = run_cairn("serve", "ui", "--host", "999.1.1.1", "--port", port, env=env)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"999.1.1.1:{port}" in errors[0], result.stderr
    assert "--host" in errors[0] and "CAIRN_UI_HOST" in errors[0], result.stderr


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


@pytest.mark.parametrize(
    ("args", "param"),
    [
        (["metrics", "show", "s", "--version", "0"], "--version"),
        (["metrics", "drift", "s", "0"], "VERSION"),
        (["metrics", "drift", "s", "2", "--against", "0"], "--against"),
        (["featureset", "get", "s", "--version", "0"], "--version"),
        (["featureset", "diff", "s", "0", "2"], "OLD"),
        (["featureset", "diff", "s", "1", "0"], "NEW"),
        (["featureset", "delete", "s", "0"], "VERSION"),
        (["featureset", "materialize", "s", "--version", "0"], "--version"),
    ],
)
def test_a_version_below_1_is_a_usage_error_before_any_request(args: list[str], param: str) -> None:
    # Nothing listens on the URL: a bad version must be refused by the CLI itself (exit 2,
    # as click does for any bad option), not sent to the server (exit 1, its message).
    from typer.testing import CliRunner

    url = f"http://127.0.0.1:{refused_port()}"
    result = CliRunner().invoke(app, [*args, "--url", url])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and param.lower() in errors[0].lower() and "1" in errors[0], errors
    assert "Cannot reach" not in result.output


TOO_BIG = str(2**63)  # one past the stores' 64-bit integers


@pytest.mark.parametrize(
    ("args", "param"),
    [
        (["metrics", "show", "s", "--version", TOO_BIG], "--version"),
        (["metrics", "drift", "s", TOO_BIG], "VERSION"),
        (["metrics", "drift", "s", "2", "--against", TOO_BIG], "--against"),
        (["featureset", "get", "s", "--version", TOO_BIG], "--version"),
        (["featureset", "get", "s", "--limit", TOO_BIG], "--limit"),
        (["featureset", "diff", "s", TOO_BIG, "2"], "OLD"),
        (["featureset", "diff", "s", "1", TOO_BIG], "NEW"),
        (["featureset", "delete", "s", TOO_BIG], "VERSION"),
        (["featureset", "materialize", "s", "--version", TOO_BIG], "--version"),
    ],
)
def test_a_version_or_limit_past_64_bits_is_a_usage_error_before_any_request(
    args: list[str], param: str
) -> None:
    # These were sent, and the service's answer (exit 1) named its own parameter (version).
    from typer.testing import CliRunner

    url = f"http://127.0.0.1:{refused_port()}"  # nothing listens: no request may be needed
    result = CliRunner().invoke(app, [*args, "--url", url])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"'{param.lower()}'" in errors[0].lower(), result.output
    assert str(2**63 - 1) in errors[0], errors
    assert "Cannot reach" not in result.output


TABLE = str(ROOT / "examples/featuresets/customer_features/v2.parquet")
VALUES = str(ROOT / "examples/featuresets/churn_model_serving/v1.yaml")
ENTITIES = str(ROOT / "examples/featuresets/customer_entities.parquet")
KEYED = ["--entity", "customer_id", "--timestamp", "feature_date"]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (
            ["featureset", "get", "s", "--version", "1", "--as-of", "2025-01-01T00:00:00Z"],
            "--as-of",
        ),
        (["featureset", "get", "s", "--format", "csv"], "--format"),
        (["featureset", "get", "s", "--limit", "0"], "--limit"),
        (["featureset", "list", "--limit", "0"], "--limit"),
        (["featureset", "list", "--limit", "1001"], "--limit"),
        (["featureset", "list", "--label", "team"], "--label"),
        (["featureset", "put", VALUES, "--ttl", "7d"], "--ttl"),
        (["featureset", "put", VALUES, "--entity", "customer_id"], "--entity"),
        (["featureset", "put", TABLE], "--name"),
        # These were sent, and the service's answer named its own parameter or field (as_of,
        # ttl, features[0]), not the option to change.
        (["featureset", "get", "s", "--as-of", "yesterday"], "--as-of"),
        (["featureset", "get", "s", "--as-of", "2025-06-16T00:00:00"], "--as-of"),
        (["featureset", "get", "s", "--format", "parquet", "--as-of", "2025-06-16"], "--as-of"),
        (["featureset", "put", TABLE, "--name", "s", *KEYED, "--ttl", "soon"], "--ttl"),
        (["featureset", "put", TABLE, "--name", "s", *KEYED, "--ttl", "9" * 20], "--ttl"),
        (["features", "online", "-f", "s_x", "-e", "customer_id=C1"], "--feature"),
        (["features", "online", "-f", "s@one:x", "-e", "customer_id=C1"], "--feature"),
        (["features", "historical", ENTITIES, "-f", "s:x", "-f", "s_x", "-o", "x.pq"], "--feature"),
        (["features", "online", "-f", "s:x", "-e", "customer_id"], "--entity"),
        (["features", "online", "-f", "s:x", "-e", "a=1", "-e", "a=2", "-e", "b=1"], "--entity"),
    ],
)
def test_a_wrong_command_line_is_a_usage_error_before_any_request(
    args: list[str], option: str
) -> None:
    # These exited 1, as a failed request does, or (--ttl, --entity on a YAML set of values)
    # were accepted and never sent anywhere; a command line that cannot work is exit 2.
    from typer.testing import CliRunner

    url = f"http://127.0.0.1:{refused_port()}"  # nothing listens: no request may be needed
    result = CliRunner().invoke(app, [*args, "--url", url])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"'{option}'" in errors[0], result.output
    assert "Cannot reach" not in result.output


def test_an_as_of_the_service_would_refuse_is_shown_with_an_example() -> None:
    from typer.testing import CliRunner

    url = f"http://127.0.0.1:{refused_port()}"
    args = ["featureset", "get", "s", "--as-of", "yesterday", "--url", url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "'yesterday' is not an RFC 3339 timestamp such as 2025-06-16T05:45:00Z" in result.output
    assert "as_of" not in result.output


def test_readme_names_the_featureset_commands_that_take_json() -> None:
    # It left out `materialize --json`.
    group = typer.main.get_group(app).commands["featureset"]
    with_json = {
        name
        for name, command in group.commands.items()  # type: ignore[attr-defined]
        if any(param.name == "as_json" for param in command.params)
    }
    sentence = re.search(r"Every command takes `--url`.*?take `--json`", README, re.S)
    assert sentence is not None
    named = set(re.findall(r"`(\w+)`", sentence.group(0).split("`);", 1)[1]))
    assert named == with_json

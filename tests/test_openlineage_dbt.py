"""Real dbt runs on DuckDB, emitting OpenLineage through ``dbt-ol`` (OpenLineage's dbt
integration, its HTTP transport) into a real catalogue; what Cairn records is read back over
its API. dbt lives in a venv of its own (``tests/servers/dbt.py``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cairn.settings import Settings
from catalogue_service.app import create_app
from catalogue_service.openlineage import ol_id
from tests.conftest import ProcessServer, ThreadServer, cairn_env
from tests.servers.dbt import ensure_dbt
from tests.servers.processes import patient, stop_group

PROJECT = Path(__file__).parent / "data" / "dbt_shop"
NAMESPACE = "shop-nightly"  # the jobs' namespace (OPENLINEAGE_NAMESPACE)
KEY = "dbt-ol-key"


@pytest.fixture(scope="module")
def dbt_bin() -> Path:
    return ensure_dbt()


class Shop:
    """A copy of the dbt project with its DuckDB file and OpenLineage config in ``root``."""

    def __init__(self, root: Path, dbt_bin: Path, catalogue_url: str, key: str | None = None):
        self.root = root
        self.dir = root / "shop"
        shutil.copytree(PROJECT, self.dir)
        self.db = root / "shop.duckdb"
        self.dbt_bin = dbt_bin
        (self.dir / "profiles.yml").write_text(
            "shop:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
            f"      path: {self.db}\n      threads: 1\n"
        )
        auth = f"  auth:\n    type: api_key\n    apiKey: {key}\n" if key else ""
        # Retries generous enough to outlast a catalogue restart (connection refused, 503).
        (self.dir / "openlineage.yml").write_text(
            f"transport:\n  type: http\n  url: {catalogue_url}\n  timeout: 10\n{auth}"
            "  retry:\n    total: 20\n    connect: 20\n    read: 20\n"
            "    backoff_factor: 0.5\n    backoff_max: 4\n"
        )
        self.namespace = f"duckdb://{self.db}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{self.dbt_bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "OPENLINEAGE_CONFIG": str(self.dir / "openlineage.yml"),
            "OPENLINEAGE_NAMESPACE": NAMESPACE,
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        }

    def command(self, tool: str, verb: str) -> list[str]:
        where = ["--project-dir", str(self.dir), "--profiles-dir", str(self.dir)]
        return [str(self.dbt_bin / tool), verb, *where]

    def run(self, tool: str, verb: str) -> str:
        done = subprocess.run(
            self.command(tool, verb),
            env=self.env(),
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=patient(600),
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        return output

    def dataset(self, schema: str, table: str) -> str:
        return ol_id("dataset", self.namespace, f"shop.{schema}.{table}")

    def model_job(self, model: str) -> str:
        # dbt-ol names a model's job <database>.<schema>.<project>.<model>.
        return ol_id("job", NAMESPACE, f"shop.main.shop.{model}")


EMITTING = "Emitting OpenLineage events"


class Output:
    """A child's output as it comes, read in a thread; progress bars end lines with ``\\r``,
    so the text is searched, not its lines."""

    def __init__(self, proc: subprocess.Popen[bytes]):
        self.proc = proc
        self.text = ""
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        while chunk := os.read(self.proc.stdout.fileno(), 4096):
            with self.changed:
                self.text += chunk.decode(errors="replace")
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, marker: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while marker not in self.text:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.thread.is_alive()):
                    return marker in self.text
                self.changed.wait(min(left, 1.0))
        return True


@pytest.fixture
def catalogue_api(tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    with (
        ThreadServer(create_app(Settings(data_dir=tmp_path / "data"))) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=30) as client,
    ):
        yield server.url, client


def edges_up(api: httpx.Client, asset_id: str) -> set[tuple[str, str, str]]:
    answer = api.get(f"/assets/{asset_id}/lineage", params={"direction": "up", "depth": 4})
    assert answer.status_code == 200, answer.text
    return {(e["source"], e["target"], e["origin"]) for e in answer.json()["edges"]}


def check_the_shop(api: httpx.Client, shop: Shop) -> None:
    orders, customers = shop.dataset("main_raw", "orders"), shop.dataset("main_raw", "customers")
    totals, top = shop.dataset("main", "customer_totals"), shop.dataset("main", "top_customers")
    totals_job, top_job = shop.model_job("customer_totals"), shop.model_job("top_customers")
    for asset_id, kind in [
        (orders, "dataset"),
        (customers, "dataset"),
        (totals, "dataset"),
        (top, "dataset"),
        (totals_job, "pipeline"),
        (top_job, "pipeline"),
    ]:
        found = api.get(f"/assets/{asset_id}")
        assert found.status_code == 200, f"{asset_id}: {found.text}"
        assert found.json()["type"] == kind
    # Sources -> model job -> model -> next model job -> next model.
    assert edges_up(api, top) == {
        (orders, totals_job, "openlineage"),
        (customers, totals_job, "openlineage"),
        (totals_job, totals, "openlineage"),
        (totals, top_job, "openlineage"),
        (top_job, top, "openlineage"),
    }
    columns = api.get(f"/assets/{totals}/columns").json()
    assert {c["name"] for c in columns["schema"]} == {"customer_id", "name", "total"}
    feeds = {
        column: {(s["asset_id"], s["field"]) for s in sources}
        for column, sources in columns["columns"].items()
    }
    assert feeds["total"] == {(orders, "amount")}
    assert feeds["name"] == {(customers, "name")}
    top_columns = api.get(f"/assets/{top}/columns").json()["columns"]
    assert {(s["asset_id"], s["field"]) for s in top_columns["total"]} == {(totals, "total")}
    # One run per job, started and completed; the whole dbt invocation is a job too.
    for job in (totals_job, top_job, ol_id("job", NAMESPACE, "dbt-run-shop")):
        runs = api.get(f"/assets/{job}/runs").json()
        assert [r["state"] for r in runs] == ["COMPLETE"], runs
        assert set(runs[0]["events"]) == {"START", "COMPLETE"}


def test_a_dbt_run_fills_cairns_lineage(
    dbt_bin: Path, catalogue_api: tuple[str, httpx.Client], tmp_path: Path
) -> None:
    url, api = catalogue_api
    shop = Shop(tmp_path, dbt_bin, url)
    shop.run("dbt", "seed")
    output = shop.run("dbt-ol", "run")
    assert "Emitted" in output, output[-2000:]
    check_the_shop(api, shop)


def test_a_catalogue_restart_during_a_dbt_run_loses_and_doubles_nothing(
    dbt_bin: Path, tmp_path: Path
) -> None:
    env = cairn_env(tmp_path / "data", CAIRN_API_KEYS=KEY)
    catalogue = ProcessServer("catalogue", env, tmp_path / "catalogue.log").start()
    shop = Shop(tmp_path, dbt_bin, catalogue.url, key=KEY)
    try:
        shop.run("dbt", "seed")
        dbt = subprocess.Popen(
            shop.command("dbt-ol", "run"),
            env=shop.env(),
            cwd=shop.dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output = Output(dbt)
        try:
            catalogue.kill()  # while dbt runs its models
            # dbt-ol sends its events once dbt is done: they find the catalogue down, and it
            # comes back while the client is retrying them.
            assert output.wait_for(EMITTING, patient(300)), output.text[-4000:]
            catalogue.start()
            dbt.wait(timeout=patient(300))
        finally:
            stop_group(dbt)
        output.thread.join(timeout=10)
        assert dbt.returncode == 0, output.text[-4000:]
        assert "Emitted 6 OpenLineage events" in output.text, output.text[-4000:]
        with httpx.Client(
            base_url=catalogue.url + "/api/v1",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        ) as api:
            check_the_shop(api, shop)
            # The key rule held: the events carried the client's key.
            assert httpx.post(catalogue.url + "/api/v1/lineage", json={}).status_code == 401
    finally:
        catalogue.stop()

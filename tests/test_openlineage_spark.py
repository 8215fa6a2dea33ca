"""A real Spark job (PySpark in local mode on the machine's Java) with OpenLineage's Spark
listener, its HTTP transport pointed at a real catalogue that has crawled the job's input:
Spark's ``file`` datasets land on the crawled asset at that location, and the output, its
column lineage and the job's runs appear in Cairn. Spark lives in a venv of its own
(``tests/servers/spark.py``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from cairn.settings import Settings
from catalogue_service.app import create_app
from catalogue_service.openlineage import ol_id
from tests.conftest import ThreadServer, cairn_env, run_cairn
from tests.servers.processes import patient
from tests.servers.spark import ensure_spark

JOB = """\
import sys
from pyspark.sql import SparkSession

jar, url, source, target = sys.argv[1:5]
spark = (
    SparkSession.builder.master("local[1]")
    .appName("orders_totals")
    .config("spark.jars", jar)
    .config("spark.extraListeners", "io.openlineage.spark.agent.OpenLineageSparkListener")
    .config("spark.openlineage.transport.type", "http")
    .config("spark.openlineage.transport.url", url)
    .config("spark.openlineage.namespace", "spark-nightly")
    .config("spark.ui.enabled", "false")
    .config("spark.driver.host", "127.0.0.1")
    .getOrCreate()
)
orders = spark.read.option("header", True).csv(source)
totals = orders.selectExpr("cast(amount as double) as amount").groupBy().sum("amount")
totals.withColumnRenamed("sum(amount)", "total").write.mode("overwrite").parquet(target)
spark.stop()
"""


def test_a_spark_job_fills_cairns_lineage(tmp_path: Path) -> None:
    python, jar = ensure_spark()
    lake = tmp_path / "lake"
    (lake / "raw").mkdir(parents=True)
    source = lake / "raw" / "orders.csv"
    source.write_text("id,amount\n1,2.5\n2,3.0\n")
    (lake / "raw" / "MANIFEST.yaml").write_text(
        "name: orders\ntype: dataset\nlocation: orders.csv\n"
    )
    target = tmp_path / "out" / "totals"
    with (
        ThreadServer(create_app(Settings(data_dir=tmp_path / "data"))) as server,
        httpx.Client(base_url=server.url + "/api/v1", timeout=30) as api,
    ):
        crawl = run_cairn(
            "crawl", str(lake), "--catalogue", server.url, env=cairn_env(tmp_path / "c")
        )
        assert crawl.returncode == 0, crawl.stdout + crawl.stderr
        orders = api.get("/assets/by-name/orders").json()

        script = tmp_path / "job.py"
        script.write_text(JOB)
        done = subprocess.run(
            [str(python), str(script), str(jar), server.url, str(source), str(target)],
            env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": str(python)},
            capture_output=True,
            text=True,
            timeout=patient(900),
        )
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

        totals_id = ol_id("dataset", "file", str(target))
        totals = api.get(f"/assets/{totals_id}")
        assert totals.status_code == 200, totals.text
        assert totals.json()["location"] == f"file://{target}"
        assert "total" in {c["name"] for c in totals.json()["schema"]}
        # Spark's input is the crawled asset, which the events never rewrote.
        answer = api.get(f"/assets/{totals_id}/lineage", params={"direction": "up"}).json()
        edges = {(e["source"], e["target"], e["origin"]) for e in answer["edges"]}
        jobs = {s for s, t, o in edges if t == totals_id and o == "openlineage"}
        assert len(jobs) == 1, edges
        (job,) = jobs
        assert (orders["id"], job, "openlineage") in edges
        assert api.get(f"/assets/{orders['id']}").json()["revision"] == orders["revision"]
        pipeline = api.get(f"/assets/{job}").json()
        assert pipeline["type"] == "pipeline"
        assert pipeline["name"].startswith("spark-nightly/orders_totals")
        columns = api.get(f"/assets/{totals_id}/columns").json()["columns"]
        assert {(s["asset_id"], s["field"]) for s in columns["total"]} == {(orders["id"], "amount")}
        runs = api.get(f"/assets/{job}/runs").json()
        assert [r["state"] for r in runs] == ["COMPLETE"], runs
        assert runs[0]["started_at"] is not None

"""A feature store with three profiled versions of a table (the third drifted) and a UI over
it, in threads: shared by the metrics page's server and browser tests. Yields the UI's and
the feature store's base URLs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from cairn.settings import Settings
from tests.conftest import ThreadServer, free_port
from tests.test_featurestore_api import parquet_bytes, upload
from tests.test_metrics_api import profiled, table

NAME = "churn"
HOSTILE = "<img src=x onerror=alert(1)>"  # a column name: shown as text, never obeyed


@contextmanager
def metrics_stack(data: Path) -> Iterator[tuple[str, str]]:
    from featurestore_service.app import create_app as fs_app
    from ui.app import create_app as ui_app

    nowhere = f"http://127.0.0.1:{free_port()}"  # no catalogue: registrations wait, that is all
    with ThreadServer(fs_app(Settings(data_dir=data, catalogue_url=nowhere))) as fs:
        with httpx.Client(base_url=fs.url + "/api/v1", timeout=60) as client:
            checks = [{"type": "not_null", "column": "visits"}]
            assert client.put(f"/featuresets/{NAME}/checks", json={"checks": checks}).is_success
            for seed, shift in ((1, 0.0), (2, 0.0), (3, 1.0)):
                data_table = table(seed, shift)
                data_table = data_table.append_column(HOSTILE, data_table.column("spend"))
                assert upload(client, NAME, parquet_bytes(data_table)).status_code == 201
            profiled(client, NAME, 3)
        settings = Settings(data_dir=data, featurestore_url=fs.url, catalogue_url=nowhere)
        with ThreadServer(ui_app(settings)) as ui:
            yield ui.url, fs.url

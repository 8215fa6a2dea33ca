"""A feature store with three profiled versions of a table (the third drifted) and a UI over
it, in threads: shared by the metrics page's server and browser tests. Yields the UI's and
the feature store's base URLs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa

from cairn.settings import Settings
from tests.conftest import ThreadServer, refused_port
from tests.test_featurestore_api import parquet_bytes, upload
from tests.test_metrics_api import profiled, table

NAME = "churn"
HOSTILE = "<img src=x onerror=alert(1)>"  # a column name: shown as text, never obeyed


def signup_days(seed: int, shift: float, rows: int = 20_000) -> pa.Array:
    """A date32 column: days of 2025 (a later half of it when shifted)."""
    rng = np.random.default_rng(seed)
    start = date(2025, 1, 1) + timedelta(days=int(180 * shift))
    days = rng.integers(0, 180, rows)
    return pa.array([start + timedelta(days=int(d)) for d in days], pa.date32())


@contextmanager
def metrics_stack(data: Path) -> Iterator[tuple[str, str]]:
    from featurestore_service.app import create_app as fs_app
    from ui.app import create_app as ui_app

    nowhere = f"http://127.0.0.1:{refused_port()}"  # no catalogue: registrations wait, that is all
    with ThreadServer(fs_app(Settings(data_dir=data, catalogue_url=nowhere))) as fs:
        with httpx.Client(base_url=fs.url + "/api/v1", timeout=60) as client:
            checks = [{"type": "not_null", "column": "visits"}]
            assert client.put(f"/featuresets/{NAME}/checks", json={"checks": checks}).is_success
            for seed, shift in ((1, 0.0), (2, 0.0), (3, 1.0)):
                data_table = table(seed, shift)
                data_table = data_table.append_column(HOSTILE, data_table.column("spend"))
                data_table = data_table.append_column("signup_day", signup_days(seed, shift))
                assert upload(client, NAME, parquet_bytes(data_table)).status_code == 201
            profiled(client, NAME, 3)
        settings = Settings(data_dir=data, featurestore_url=fs.url, catalogue_url=nowhere)
        with ThreadServer(ui_app(settings)) as ui:
            yield ui.url, fs.url

"""The feature store's memory bounds and its log, measured on a real ``cairn serve`` process.

Memory is read from the server's /proc status: VmHWM (the peak resident set, reset through
clear_refs before each step) and VmRSS. A bound on memory is a behaviour, not a timing; the
ceilings below are what the design promises (one row group per decode, a fixed number of
decodes at once), with room to spare, and far below what the server used before.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.conftest import ProcessServer, cairn_env, refused_port

PARQUET = "application/vnd.apache.parquet"
MB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ProcessServer]:
    env = cairn_env(tmp_path / "data", CAIRN_CATALOGUE_URL=f"http://127.0.0.1:{refused_port()}")
    process = ProcessServer("featurestore", env, tmp_path / "featurestore.log").start()
    yield process
    process.stop()


def memory(server: ProcessServer) -> dict[str, int]:
    """VmRSS and VmHWM of the server process, in bytes."""
    assert server.proc is not None
    found = {}
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) * 1024
    return found


def reset_peak(server: ProcessServer) -> int:
    """Starts a new peak (VmHWM) from the current resident set; returns that."""
    assert server.proc is not None
    Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")
    return memory(server)["VmRSS"]


def upload(client: httpx.Client, name: str, path: Path) -> dict:
    with path.open("rb") as body:
        response = client.post(
            f"/api/v1/featuresets/{name}/versions", content=body, headers={"content-type": PARQUET}
        )
    assert response.status_code == 201, response.text
    return response.json()


def test_reads_decode_a_row_group_at_most_and_parallel_reads_share_the_slots(
    server: ProcessServer, tmp_path: Path
) -> None:
    # 40 million rows x 3 int64 columns in 10 row groups: under the default limits, 530 KB on
    # disk, 97.5 MB per row group and 975 MB in all once decoded.
    rows_per_group = 4_000_000
    chunk = pa.repeat(pa.scalar(0, pa.int64()), 1_000_000)
    column = pa.chunked_array([chunk] * (rows_per_group // 1_000_000))
    group = pa.table({"a": column, "b": column, "c": column})
    path = tmp_path / "zeros.parquet"
    with pq.ParquetWriter(path, group.schema, compression="zstd") as writer:
        for _ in range(10):
            writer.write_table(group, row_group_size=rows_per_group)
    row_group_bytes = rows_per_group * 3 * 8

    with httpx.Client(base_url=server.url, timeout=300) as client:
        assert upload(client, "zeros", path)["table"]["row_groups"] == 10
        for params in (
            {"limit": "1"},
            {"limit": "1", "columns": "b"},
            {"format": "arrow", "limit": "1"},
            {"format": "parquet", "limit": "1"},
            {"offset": "12000000", "limit": "3"},
        ):
            base = reset_peak(server)
            response = client.get("/api/v1/featuresets/zeros", params=params)
            assert response.status_code == 200
            grew = memory(server)["VmHWM"] - base
            assert grew < row_group_bytes / 2, (params, grew // MB)

        # Six parallel JSON pages and six parallel limited Arrow reads.
        base = reset_peak(server)
        answers: list[int] = []

        def get(params: dict[str, str]) -> None:
            answers.append(client.get("/api/v1/featuresets/zeros", params=params).status_code)

        threads = [
            threading.Thread(target=get, args=(params,))
            for params in [{}] * 6 + [{"format": "arrow", "limit": "200000"}] * 6
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert answers == [200] * 12
        grew = memory(server)["VmHWM"] - base
        assert grew < row_group_bytes, grew // MB


def test_a_large_arrow_read_streams_and_hands_memory_back(
    server: ProcessServer, tmp_path: Path
) -> None:
    # 2 million rows x 20 double columns in two row groups: 320 MB decoded, about 9 MB of file
    # (a thousand distinct values per column).
    repeated = pc.round(pc.multiply(pc.random(1_000_000), 1000.0))
    table = pa.table({f"c{i}": pa.chunked_array([repeated, repeated]) for i in range(20)})
    path = tmp_path / "wide.parquet"
    pq.write_table(table, path, row_group_size=1_000_000)
    decoded = table.nbytes

    with httpx.Client(base_url=server.url, timeout=300) as client:
        upload(client, "wide", path)
        time.sleep(0.5)  # let the upload's worker threads settle before the baseline
        base = reset_peak(server)
        received = 0
        with client.stream("GET", "/api/v1/featuresets/wide", params={"format": "arrow"}) as r:
            assert r.status_code == 200
            for piece in r.iter_bytes():
                received += len(piece)
        assert received > decoded
        after = memory(server)
    # Never the whole table in memory, and what the read took is handed back afterwards.
    assert after["VmHWM"] - base < decoded / 2, (after["VmHWM"] - base) // MB
    assert after["VmRSS"] - base < 64 * MB, (after["VmRSS"] - base) // MB


def test_an_upload_dropped_mid_stream_logs_one_line(server: ProcessServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(
            b"POST /api/v1/featuresets/cut/versions HTTP/1.1\r\nhost: x\r\n"
            b"content-type: application/vnd.apache.parquet\r\ncontent-length: 10000000\r\n\r\n"
            + bytes(1_000_000)
        )
        time.sleep(0.2)  # the server has read part of the body; then the client goes away
    deadline = time.monotonic() + 10
    while "cut short" not in server.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    logs = server.logs()
    assert "Traceback" not in logs, logs
    lines = [line for line in logs.splitlines() if "cut short" in line]
    assert len(lines) == 1, logs
    assert "nothing stored" in lines[0]
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/api/v1/featuresets/cut/versions").status_code == 404


def test_an_upload_cut_short_reports_the_bytes_that_arrived(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 800 KB, less than one flush to disk: the count must include what was still pending.
    from starlette.requests import ClientDisconnect

    from featurestore_service.blobstore import open_blob_store
    from featurestore_service.blobstore.tables import TableBlobs, UploadCutShort
    from featurestore_service.table_limits import TableLimits
    from featurestore_service.tables import DecodeSlots

    async def body() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield bytes(100_000)
        raise ClientDisconnect()

    async def nothing_named(hashes: list[str]) -> set[str]:
        return set()

    async def upload_cut_short() -> str:
        store = open_blob_store(str(tmp_path / "blobs"))
        blobs = TableBlobs(store, tmp_path / "work", TableLimits(1, 1, 1), DecodeSlots(1), MB)
        blobs.open()
        try:
            async with blobs.ingest(body(), nothing_named):
                pass
        except UploadCutShort as exc:
            return str(exc)
        finally:
            blobs.close()
        raise AssertionError("the upload was not refused")

    with caplog.at_level(logging.WARNING, logger="cairn.featurestore.blobs"):
        message = asyncio.run(upload_cut_short())
    assert "after 800000 bytes" in message
    assert [r.getMessage() for r in caplog.records if "cut short" in r.getMessage()] == [
        "upload cut short by the client after 800000 bytes; nothing stored"
    ]

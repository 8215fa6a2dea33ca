"""A bulk write sent again with its Idempotency-Key gets the first answer, not a second run's
"unchanged" for every item (catalogue_service/replays.py); the crawler's pusher and the
Python client send a key with each batch."""

from __future__ import annotations

import logging
import threading
import uuid

import httpx
import orjson
import pytest

from cairn.client import CatalogueClient
from cairn.client.catalogue import CatalogueCalls
from crawler.push import CataloguePusher
from tests.conftest import ProcessServer, ThreadServer

BULK = "/api/v1/assets/bulk"


def _assets(count: int, tag: str = "replay") -> list[dict[str, object]]:
    return [{"name": f"{tag}_{i:05d}", "type": "dataset", "tags": [tag]} for i in range(count)]


def test_a_bulk_request_sent_again_with_its_key_gets_the_first_answer(
    catalogue: ThreadServer,
) -> None:
    body = orjson.dumps(_assets(50))
    key = {"idempotency-key": uuid.uuid4().hex}
    with httpx.Client(base_url=catalogue.url, timeout=60) as http:
        first = http.post(BULK, content=body, headers=key)
        assert first.status_code == 200, first.text
        assert first.json()["created"] == 50
        assert "idempotent-replayed" not in first.headers
        again = http.post(BULK, content=body, headers=key)
        assert again.status_code == 200, again.text
        assert again.content == first.content
        assert again.headers["idempotent-replayed"] == "true"
        # Another key is another request: it runs, and finds everything written.
        other = http.post(BULK, content=body, headers={"idempotency-key": uuid.uuid4().hex})
        assert other.json()["unchanged"] == 50
        assert http.post(BULK, content=body).json()["unchanged"] == 50  # no key: as before
        reused = http.post(BULK, content=orjson.dumps(_assets(3, "other")), headers=key)
        assert reused.status_code == 422, reused.text
        assert "was sent with another body" in reused.json()["detail"]
        assert http.get("/api/v1/assets", params={"tag": "other"}).json()["total"] == 0
        for bad in ("", "x" * 256, "with space"):
            refused = http.post(BULK, content=body, headers={"idempotency-key": bad})
            assert refused.status_code == 422, (bad, refused.text)
            assert "1 to 255 visible ASCII characters" in refused.json()["detail"]
        # A request that fails keeps nothing: sent again with its key, it runs again.
        broken_key = {"idempotency-key": uuid.uuid4().hex}
        broken = orjson.dumps([{"name": "fixed_later"}])  # no type
        assert http.post(BULK, content=broken, headers=broken_key).json()["failed"] == 1
        assert http.post(BULK, content=broken, headers=broken_key).json()["failed"] == 1


def test_a_request_sent_again_while_the_first_runs_waits_for_its_answer(
    catalogue: ThreadServer,
) -> None:
    body = orjson.dumps(_assets(2000))
    key = {"idempotency-key": uuid.uuid4().hex}
    answers: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=catalogue.url, timeout=120) as http:
            answers.append(http.post(BULK, content=body, headers=key))

    threads = [threading.Thread(target=post) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200, 200], [a.text[:300] for a in answers]
    # Both say what the one run did; without the key the second said "unchanged" for each.
    assert [a.json()["created"] for a in answers] == [2000, 2000]
    assert answers[0].content == answers[1].content
    assert sorted("idempotent-replayed" in a.headers for a in answers) == [False, True]


def test_a_push_retried_after_a_timeout_counts_what_the_first_attempt_wrote(
    catalogue_process: ProcessServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The crawler's pusher with a timeout far below the batch's time: its first attempt
    times out while the catalogue writes, and a retry gets that write's answer."""
    items = _assets(5000, "pushed")
    with (
        caplog.at_level(logging.WARNING, logger="cairn.retry"),
        CataloguePusher(catalogue_process.url, timeout=0.2, attempts=12) as pusher,
    ):
        answer = pusher.bulk(items)
    assert any("timed out" in r.getMessage().lower() for r in caplog.records), caplog.text
    assert (answer.created, answer.unchanged, answer.failed) == (5000, 0, 0)


def test_the_client_sends_a_key_with_each_bulk_write(catalogue: ThreadServer) -> None:
    call = CatalogueCalls.bulk(_assets(1))  # type: ignore[arg-type]
    other = CatalogueCalls.bulk(_assets(1))  # type: ignore[arg-type]
    assert call.headers["idempotency-key"] != other.headers["idempotency-key"]
    with CatalogueClient(catalogue.url) as client:
        assert client.bulk(_assets(2)).created == 2  # type: ignore[arg-type]

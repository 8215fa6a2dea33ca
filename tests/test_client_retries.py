"""The clients and the commands built on them retry what is safe to retry, as the crawler's
pusher does (cairn.retry), and take their timeout and attempts from CAIRN_HTTP_TIMEOUT and
CAIRN_HTTP_RETRIES unless their arguments say otherwise (DESIGN 8)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from cairn.cli import app
from cairn.client import AsyncCatalogueClient, CatalogueClient, FeatureStoreClient
from cairn.errors import Unavailable
from cairn.settings import get_settings
from tests.conftest import ThreadServer

EMPTY_PAGE = b'{"items": [], "total": 0}'


class Stub:
    """An ASGI app answering each request with the next scripted status (200 once they run
    out, with ``body``), after ``delay`` seconds; it counts the requests per path."""

    def __init__(self, *statuses: int, body: bytes = b"{}", delay: float = 0.0):
        self.statuses = list(statuses)
        self.body = body
        self.delay = delay
        self.seen: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.seen.append(f"{scope['method']} {scope['path']}")
        await asyncio.sleep(self.delay)
        status = self.statuses.pop(0) if self.statuses else 200
        body = self.body if status == 200 else b'{"detail": "busy, nothing was done"}'
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def stub() -> Iterator[tuple[Stub, ThreadServer]]:
    app_ = Stub()
    with ThreadServer(app_) as server:
        yield app_, server


@pytest.fixture(autouse=True)
def http_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The defaults (README's settings table), whatever the shell running the tests has set;
    # get_settings() is cached, so each variable set here is read afresh.
    monkeypatch.delenv("CAIRN_HTTP_TIMEOUT", raising=False)
    monkeypatch.delenv("CAIRN_HTTP_RETRIES", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def setenv(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    get_settings.cache_clear()


def test_sync_client_retries_a_503_by_default(stub: tuple[Stub, ThreadServer]) -> None:
    app_, server = stub
    app_.statuses = [503]
    with CatalogueClient(server.url) as cat:
        assert cat.types() == {}
    assert app_.seen == ["GET /api/v1/types"] * 2


def test_async_client_retries_502_503_504_up_to_its_retries(
    stub: tuple[Stub, ThreadServer],
) -> None:
    app_, server = stub

    async def scenario() -> None:
        app_.statuses = [502, 503, 504]
        async with AsyncCatalogueClient(server.url, retries=3) as cat:
            assert await cat.types() == {}
        assert len(app_.seen) == 4
        app_.statuses, app_.seen = [503, 503], []
        async with AsyncCatalogueClient(server.url, retries=1) as cat:
            with pytest.raises(Unavailable, match="nothing was done"):
                await cat.types()
            assert cat.health.state == "down"
        assert len(app_.seen) == 2

    asyncio.run(scenario())


def test_cairn_http_retries_sets_the_attempts(
    stub: tuple[Stub, ThreadServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app_, server = stub
    setenv(monkeypatch, "CAIRN_HTTP_RETRIES", "1")
    app_.statuses = [503]
    with CatalogueClient(server.url) as cat, pytest.raises(Unavailable):
        cat.types()
    assert len(app_.seen) == 1
    app_.statuses, app_.seen = [503], []
    with CatalogueClient(server.url, retries=1) as cat:  # the argument wins
        assert cat.types() == {}
    assert len(app_.seen) == 2


def test_a_new_feature_set_version_is_not_sent_again_after_a_503(
    stub: tuple[Stub, ThreadServer],
) -> None:
    """The feature store may answer 503 after storing a version (its checks were not kept):
    sending the POST again could store a second one."""
    app_, server = stub
    app_.statuses = [503]
    with FeatureStoreClient(server.url) as fs, pytest.raises(Unavailable):
        fs.put("serving", [{"name": "t", "dtype": "int", "value": 1}])
    assert app_.seen == ["POST /api/v1/featuresets"]


def test_featureset_list_retries_and_times_out_as_the_settings_say(
    stub: tuple[Stub, ThreadServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    app_, server = stub
    app_.body = EMPTY_PAGE
    app_.statuses = [503]
    setenv(monkeypatch, "CAIRN_HTTP_RETRIES", "5")
    listed = CliRunner().invoke(app, ["featureset", "list", "--url", server.url])
    assert listed.exit_code == 0, listed.output
    assert "0 feature sets" in listed.output and len(app_.seen) == 2

    app_.seen, app_.delay = [], 3.0
    setenv(monkeypatch, "CAIRN_HTTP_TIMEOUT", "1")
    start = time.monotonic()
    slow = CliRunner().invoke(app, ["featureset", "list", "--url", server.url])
    took = time.monotonic() - start
    assert slow.exit_code == 1 and "ReadTimeout" in slow.output, slow.output
    assert took < 2.5 and len(app_.seen) == 1  # a timeout is not tried again


def test_retry_after_is_waited_and_a_long_one_is_handed_back() -> None:
    import httpx

    from cairn.retry import RetryPolicy, call_with_retries

    answers = iter([httpx.Response(429, headers={"retry-after": "0.3"}), httpx.Response(200)])
    start = time.monotonic()
    done = call_with_retries(lambda: next(answers), what="test", policy=RetryPolicy(3))
    assert done.status_code == 200 and time.monotonic() - start >= 0.3

    policy = RetryPolicy(3)
    assert policy.wait(0, httpx.Response(503, headers={"retry-after": "3600"}), None) is None

"""``POST /get-online-features`` and ``/api/v1/online-features`` are answered in front of
FastAPI's middleware stack (``cairn.front``): the shared plumbing (key check, body limit,
problem+json, metrics by route, CORS) must still apply, the stack must answer what the front
route passes on with the same bytes, and the methods it leaves to FastAPI must still work."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.types import Scope

from cairn.settings import Settings
from featurestore_service.api.routes.online import OnlineFront
from featurestore_service.app import create_app
from tests.conftest import ThreadServer, refused_port
from tests.test_online import NOW, put_customers, wait_online

KEY = "k-online-0123456789"
ORIGIN = "http://ui.example"


def _settings(tmp_path: Path, **fields: object) -> Settings:
    return Settings(
        data_dir=tmp_path / "fs",
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        **fields,  # type: ignore[arg-type]
    )


def _body(keys: list[str]) -> dict:
    return {"features": ["cust:spend", "cust:visits"], "entities": {"customer_id": keys}}


@pytest.fixture
def front_answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths ``OnlineFront`` answered (the requests it did not pass on to the stack)."""
    answered: list[str] = []
    answer = OnlineFront.answer

    async def spied(self: OnlineFront, scope: Scope, body: bytes) -> bytes:
        answered.append(scope["path"])
        return await answer(self, scope, body)

    monkeypatch.setattr(OnlineFront, "answer", spied)
    return answered


@pytest.mark.parametrize("path", ["/get-online-features", "/api/v1/online-features"])
def test_online_lookups_keep_the_shared_plumbing(
    tmp_path: Path, path: str, front_answers: list[str]
) -> None:
    settings = _settings(tmp_path, cors_origins=[ORIGIN], max_body_bytes=4096)
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        version = put_customers(http, "cust", [("C1", NOW, 2.5, 3)])
        wait_online(http, "cust", version)

        front = http.post(path, json=_body(["C1", "C9"]))
        assert front.status_code == 200, front.text
        assert front_answers == [path]  # answered in front of the stack
        assert front.headers["content-type"] == "application/json"
        # As the CORS middleware marks answers to requests without an Origin.
        assert front.headers["vary"] == "Origin"
        assert front.json()["results"][1]["values"] == [2.5, None]
        # With an Origin the request goes through the whole stack (CORS headers): same bytes.
        stacked = http.post(path, json=_body(["C1", "C9"]), headers={"origin": ORIGIN})
        assert stacked.status_code == 200
        assert front_answers == [path]  # passed on, not answered in front
        assert stacked.headers["access-control-allow-origin"] == ORIGIN
        assert stacked.content == front.content

        bad = http.post(path, json={"features": [], "entities": {"customer_id": ["C1"]}})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["instance"] == path
        assert bad.json()["errors"][0]["field"] == "features"
        assert bad.headers["vary"] == "Origin"
        # A body that is not JSON is the 422 a FastAPI-parsed route answers; so is one that
        # is JSON but not an object (it was a 400), naming what to send.
        not_json = http.post(path, content=b"{not json")
        assert not_json.status_code == 422
        (error,) = not_json.json()["errors"]
        assert error["field"] == "(body)" and error["message"].startswith("is not valid JSON: ")
        for shape in (b"[]", b'"customer_id"'):
            not_object = http.post(path, content=shape)
            assert not_object.status_code == 422, not_object.text
            assert not_object.headers["content-type"] == "application/problem+json"
            (error,) = not_object.json()["errors"]
            assert error["field"] == "(body)" and "a JSON object" in error["message"]

        # Past the body limit: refused on the declared length, and on the bytes streamed
        # without one (a chunked body), before the lookup runs.
        declared = http.post(path, json=_body([f"C{i:04d}" for i in range(600)]))
        assert declared.status_code == 413
        assert "larger than 4096 bytes" in declared.json()["detail"]
        streamed = http.post(path, content=iter([b'{"features": [', b" " * 5000, b"]}"]))
        assert streamed.status_code == 413
        assert "larger than 4096 bytes" in streamed.json()["detail"]
        assert streamed.json()["instance"] == declared.json()["instance"] == path
        assert len(front_answers) == 5  # the 200 and 422s above: no 413 reached a lookup

        # Other methods are not on the front route: FastAPI's routing answers them.
        refused = http.get(path)
        assert refused.status_code == 405 and "POST" in refused.headers["allow"]

        metrics = http.get("/metrics").text
        for status in ("200", "413", "422"):
            assert f'route="{path}",service="featurestore",status="{status}"' in metrics


def test_online_lookups_need_the_key_when_reads_do(tmp_path: Path) -> None:
    settings = _settings(tmp_path, api_keys=[KEY], read_needs_key=True)
    auth = {"authorization": f"Bearer {KEY}"}
    with (
        ThreadServer(create_app(settings)) as server,
        httpx.Client(base_url=server.url, timeout=60, headers=auth) as keyed,
    ):
        version = put_customers(keyed, "cust", [("C1", NOW, 2.5, 3)])
        wait_online(keyed, "cust", version)
        path = server.url + "/get-online-features"
        # A declared length past the limit is refused first, key or not, as by the stack.
        oversized = httpx.post(path, content=b"{" + b" " * (settings.max_body_bytes + 1) + b"}")
        assert oversized.status_code == 413
        missing = httpx.post(path, json=_body(["C1"]))
        assert missing.status_code == 401
        assert missing.headers["content-type"] == "application/problem+json"
        assert "Authorization: Bearer" in missing.json()["detail"]
        wrong = httpx.post(path, json=_body(["C1"]), headers={"authorization": "Bearer no"})
        assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
        found = keyed.post("/get-online-features", json=_body(["C1"]))
        assert found.status_code == 200, found.text
        assert found.json()["results"][1]["values"] == [2.5]

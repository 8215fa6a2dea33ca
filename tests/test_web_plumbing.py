"""The request plumbing both services share (cairn/web.py, cairn/openapi.py), on real servers:
keys checked before a body is read, the JSON layer, bounded numbers, the documentation and
metrics behind the keys, /docs without a CDN, and an OpenAPI document that says what happens.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cairn.settings import Settings
from catalogue_service.app import create_app as catalogue_app
from featurestore_service.app import create_app as featurestore_app
from tests.conftest import ThreadServer
from tests.servers.processes import refused_port

KEY = "plumbing-key"
AUTH = {"authorization": f"Bearer {KEY}"}
APPS: dict[str, Callable[[Settings], FastAPI]] = {
    "catalogue": catalogue_app,
    "featurestore": featurestore_app,
}
HUGE = 10**30


def _settings(root: Path, **fields: Any) -> Settings:
    # The feature store's catalogue is not running: nothing here registers a set there.
    return Settings(data_dir=root, catalogue_url=f"http://127.0.0.1:{refused_port()}", **fields)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ThreadServer]]:
    """Both services with keys required for writes and reads."""
    root = tmp_path_factory.mktemp("keyed")
    settings = {"api_keys": [KEY], "read_needs_key": True}
    with (
        ThreadServer(catalogue_app(_settings(root / "c", **settings))) as cat,
        ThreadServer(featurestore_app(_settings(root / "f", **settings))) as fs,
    ):
        yield {"catalogue": cat, "featurestore": fs}


def _guarded_body_operations() -> list[tuple[str, str, str, str]]:
    """(service, method, path, the 401's media type) of every operation that needs a key and
    takes a body (Mastro's routes answer in Mastro's error shape, the others problem+json)."""
    found = []
    for service, create_app in APPS.items():
        settings = Settings(data_dir=Path("/nonexistent"), api_keys=[KEY], read_needs_key=True)
        for path, operations in create_app(settings).openapi()["paths"].items():
            for method, operation in operations.items():
                if operation.get("security") and method in {"post", "put", "patch"}:
                    (media,) = operation["responses"]["401"]["content"]
                    found.append((service, method.upper(), path, media))
    return found


GUARDED = _guarded_body_operations()


def test_every_write_route_is_covered() -> None:
    paths = {(m, p) for _, m, p, _ in GUARDED}
    assert ("PUT", "/api/v1/assets/{asset_id}") in paths
    assert ("PUT", "/api/v1/asset/") in paths  # Mastro's
    assert ("POST", "/api/v1/featuresets") in paths
    assert ("PUT", "/api/v1/featureset/") in paths  # Mastro's
    assert ("PUT", "/featureset/") in paths  # Mastro's, at the root as Mastro serves it
    assert ("POST", "/api/v1/featuresets/{name}/versions") in paths
    assert ("POST", "/api/v1/assets/search") in paths  # a read, keyed with READ_NEEDS_KEY
    assert len(GUARDED) >= 12


@pytest.mark.parametrize(("service", "method", "template", "media"), GUARDED)
def test_a_request_without_a_key_is_refused_before_its_body_is_read(
    keyed: dict[str, ThreadServer], service: str, method: str, template: str, media: str
) -> None:
    # Announce a 1 MB body and send 16 bytes of it: a server that reads the body before it
    # checks the key waits for the rest and never answers; one that checks first answers now.
    path = re.sub(r"\{version\}", "1", re.sub(r"\{[a-z_]+\}", "x", template))
    content_type = (
        "application/vnd.apache.parquet" if template.endswith("/versions") else ("application/json")
    )
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: test\r\ncontent-type: {content_type}\r\n"
        "content-length: 1000000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", keyed[service].port), timeout=30) as raw:
        raw.sendall(head.encode() + b'{"name": "x", "t')
        answer = raw.recv(65536)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert f"content-type: {media}\r\n".encode() in answer


@pytest.mark.parametrize(
    ("service", "path", "method"),
    [
        ("catalogue", "/api/v1/assets/x", "PUT"),
        ("catalogue", "/api/v1/asset/", "PUT"),
        ("catalogue", "/api/v1/assets/bulk", "POST"),
        ("catalogue", "/api/v1/assets/search", "POST"),
        ("featurestore", "/api/v1/featuresets", "POST"),
        ("featurestore", "/api/v1/featureset/", "PUT"),
    ],
)
def test_malformed_json_without_a_key_is_401(
    keyed: dict[str, ThreadServer], service: str, path: str, method: str
) -> None:
    url = keyed[service].url + path
    headers = {"content-type": "application/json"}
    unkeyed = httpx.request(method, url, content=b"{not json", headers=headers)
    assert unkeyed.status_code == 401, unkeyed.text
    keyed_answer = httpx.request(method, url, content=b"{not json", headers={**headers, **AUTH})
    assert keyed_answer.status_code in (400, 422), keyed_answer.text
    answer = keyed_answer.json()
    # Mastro's routes answer in Mastro's shape: {message, status, error}.
    assert "JSON" in answer.get("detail", answer.get("message"))


# Routes that parse their body by hand (cairn.web.parse_json) rather than through a body model.
HAND_PARSED = [
    ("catalogue", "POST", "/api/v1/assets/bulk"),
    ("catalogue", "POST", "/api/v1/lineage"),
    ("featurestore", "POST", "/api/v1/online-features"),
    ("featurestore", "POST", "/get-online-features"),
    ("featurestore", "PUT", "/api/v1/featuresets/x/checks"),
    ("featurestore", "POST", "/api/v1/featuresets/x/skew/samples"),
    ("featurestore", "PUT", "/api/v1/metrics/assets/x/profile"),
]


@pytest.mark.parametrize("body", [b"{not json", b"[" * 100_000 + b"]" * 100_000])
@pytest.mark.parametrize(("service", "method", "path"), HAND_PARSED)
def test_a_body_that_is_not_json_gets_the_asset_routes_answer(
    keyed: dict[str, ThreadServer], service: str, method: str, path: str, body: bytes
) -> None:
    headers = {**AUTH, "content-type": "application/json"}
    model = httpx.put(keyed["catalogue"].url + "/api/v1/assets/x", content=body, headers=headers)
    answer = httpx.request(method, keyed[service].url + path, content=body, headers=headers)
    assert answer.status_code == model.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    got, want = answer.json(), model.json()
    assert (got["type"], got["title"]) == (want["type"], want["title"])
    # The parsers' own words differ (orjson's say where); what to fix is said the same way.
    assert [e["field"] for e in got["errors"]] == [e["field"] for e in want["errors"]]
    assert got["errors"][0]["message"].startswith("is not valid JSON: ")
    assert got["detail"].startswith("Fix these fields and send again: (body): is not valid JSON")


@pytest.mark.parametrize(
    ("service", "path", "method"),
    [
        ("catalogue", "/api/v1/assets/x", "PUT"),
        ("catalogue", "/api/v1/assets/x/drift", "PUT"),
        ("catalogue", "/api/v1/assets/search", "POST"),
        ("catalogue", "/api/v1/lineage/edges", "POST"),
        ("catalogue", "/assets/tags", "POST"),
        ("catalogue", "/api/v1/assets/bulk", "POST"),
        ("featurestore", "/api/v1/featuresets", "POST"),
        ("featurestore", "/api/v1/featureset/search", "POST"),
        ("featurestore", "/api/v1/featureset/", "PUT"),
        ("featurestore", "/get-online-features", "POST"),
        ("featurestore", "/api/v1/online-features", "POST"),
    ],
)
def test_json_nested_too_deeply_is_refused_saying_so(
    keyed: dict[str, ThreadServer], service: str, path: str, method: str
) -> None:
    headers = {**AUTH, "content-type": "application/json"}
    # Past orjson's limit; and within it, but with a 20-digit integer that the standard
    # library reads again, past Python's recursion limit (was a 500 where orjson parses).
    for deep in (
        b"[" * 100_000 + b"]" * 100_000,
        b"[" * 1000 + b"1" + b"0" * 20 + b"]" * 1000,
    ):
        answer = httpx.request(method, keyed[service].url + path, content=deep, headers=headers)
        assert answer.status_code in (400, 422), answer.text
        # Was FastAPI's "There was an error parsing the body", which says nothing to fix.
        assert "nests arrays or objects too deeply" in answer.text, answer.text


META = ["/metrics", "/docs", "/redoc", "/openapi.json"]


@pytest.mark.parametrize("service", APPS)
def test_metrics_and_docs_need_a_key_unless_opened(tmp_path: Path, service: str) -> None:
    create_app = APPS[service]
    with ThreadServer(create_app(_settings(tmp_path / "a", api_keys=[KEY]))) as server:
        for path in META:
            assert httpx.get(server.url + path).status_code == 401, path
            assert httpx.get(server.url + path, headers=AUTH).status_code == 200, path
        # The probes stay open: orchestrators cannot send keys.
        assert httpx.get(server.url + "/healthz").status_code == 200
        assert httpx.get(server.url + "/readyz").status_code == 200
    opened = _settings(tmp_path / "b", api_keys=[KEY], open_docs=True, open_metrics=True)
    with ThreadServer(create_app(opened)) as server:
        for path in META:
            assert httpx.get(server.url + path).status_code == 200, path
    only_metrics = _settings(tmp_path / "c", api_keys=[KEY], open_metrics=True)
    with ThreadServer(create_app(only_metrics)) as server:
        assert httpx.get(server.url + "/metrics").status_code == 200
        assert httpx.get(server.url + "/docs").status_code == 401
    with ThreadServer(create_app(_settings(tmp_path / "d"))) as server:  # no keys at all
        for path in META:
            assert httpx.get(server.url + path).status_code == 200, path


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_their_assets_from_this_server(tmp_path: Path, page: str) -> None:
    with ThreadServer(catalogue_app(_settings(tmp_path))) as server:
        answer = httpx.get(server.url + page)
        html = answer.text
        # The browser is told to load nothing from elsewhere.
        assert "default-src 'self'" in answer.headers["content-security-policy"]
        references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        references += re.findall(r"""url:\s*["']([^"']+)["']""", html)
        assert references, html
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html), html
        for reference in references:
            assert reference.startswith("/"), reference
            answer = httpx.get(server.url + reference)
            assert answer.status_code == 200, reference
            assert len(answer.content) > 0
        if page == "/docs":
            assert '"validatorUrl": null' in html  # no spec sent to a public validator
            script = httpx.get(server.url + "/docs/assets/swagger-ui-bundle.js")
            assert "SwaggerUIBundle" in script.text


@pytest.mark.parametrize(
    ("service", "method", "path", "field", "body"),
    [
        ("featurestore", "GET", f"/api/v1/featuresets/x/versions/{HUGE}", "version", None),
        ("featurestore", "DELETE", f"/api/v1/featuresets/x/versions/{HUGE}", "version", None),
        ("featurestore", "GET", f"/api/v1/featuresets/x/diff?from={HUGE}&to=1", "from", None),
        ("featurestore", "GET", f"/api/v1/featuresets/x?limit={HUGE}", "limit", None),
        ("featurestore", "GET", f"/api/v1/featuresets/x?offset={HUGE}", "offset", None),
    ],
)
def test_huge_numbers_are_a_422_naming_the_parameter_and_its_bound(
    keyed: dict[str, ThreadServer],
    service: str,
    method: str,
    path: str,
    field: str,
    body: dict[str, Any] | None,
) -> None:
    json = None if body is None else {**body, field: HUGE}
    answer = httpx.request(method, keyed[service].url + path, json=json, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert [e["field"] for e in problem["errors"]] == [field]
    assert re.search(r"\d{4,}", problem["detail"]), problem["detail"]  # the bound, spelt out


MASTRO_HUGE = [
    ("featurestore", "GET", f"/api/v1/featureset/?limit=1&page={HUGE}", "page", None),
    ("featurestore", "GET", f"/featureset/?page=1&limit={HUGE}", "limit", None),
    ("featurestore", "GET", f"/api/v1/featureset/name/x?limit=1&page={HUGE}", "page", None),
    ("featurestore", "POST", "/featureset/search", "page", {"query": "a", "limit": 1}),
    ("featurestore", "POST", "/featureset/labels", "page", {"labels": {"a": "b"}, "limit": 1}),
    ("catalogue", "GET", f"/api/v1/assets/?limit=1&page={HUGE}", "page", None),
    ("catalogue", "GET", f"/assets/?page=1&limit={HUGE}", "limit", None),
    ("catalogue", "POST", "/assets/search", "page", {"query": "a", "limit": 1}),
    ("catalogue", "POST", "/api/v1/assets/tags", "page", {"tags": ["a"], "limit": 1}),
]


@pytest.mark.parametrize(("service", "method", "path", "field", "body"), MASTRO_HUGE)
def test_huge_numbers_on_mastro_routes_are_mastros_400_naming_the_parameter(
    keyed: dict[str, ThreadServer],
    service: str,
    method: str,
    path: str,
    field: str,
    body: dict[str, Any] | None,
) -> None:
    json = None if body is None else {**body, field: HUGE}
    answer = httpx.request(method, keyed[service].url + path, json=json, headers=AUTH)
    assert answer.status_code == 400, answer.text
    error = answer.json()
    assert error["status"] == 400 and error["error"] == "bad_request"
    assert f"{field}:" in error["message"]
    assert re.search(r"\d{4,}", error["message"]), error["message"]  # the bound, spelt out


LONE = b'"a\\ud800b"'


@pytest.mark.parametrize(
    ("service", "method", "path", "body"),
    [
        (
            "featurestore",
            "POST",
            "/api/v1/featuresets",
            b'{"name": "s", "features": [{"name": "f", "dtype": "string", "value": %s}]}',
        ),
        (
            "featurestore",
            "PUT",
            "/api/v1/featureset/",
            b'{"name": "s", "features": [{"name": "f", "data_type": "string", "value": %s}]}',
        ),
        (
            "featurestore",
            "POST",
            "/api/v1/featuresets",
            b'{"name": "t", "description": %s, '
            b'"features": [{"name": "f", "dtype": "int", "value": 1}]}',
        ),
        ("catalogue", "PUT", "/api/v1/assets/x", b'{"name": "x", "type": "dataset", "x": %s}'),
        ("catalogue", "POST", "/api/v1/assets/bulk", b'[{"name": %s, "type": "dataset"}]'),
        ("catalogue", "PUT", "/api/v1/assets/", b'[{"name": "y", "type": "dataset", "d": %s}]'),
    ],
)
def test_text_that_is_not_unicode_is_a_422(
    keyed: dict[str, ThreadServer], service: str, method: str, path: str, body: bytes
) -> None:
    url = keyed[service].url + path
    headers = {**AUTH, "content-type": "application/json"}
    # Mastro's routes answer bad input with Mastro's 400 and its error shape.
    mastro = _is_mastro(service, method, path)
    for bad in (LONE, b'"\\udc00"', b'"\xff\xfe"'):
        answer = httpx.request(method, url, content=body % bad, headers=headers)
        assert answer.status_code == (400 if mastro else 422), (bad, answer.text)
        expected = "application/json" if mastro else "application/problem+json"
        assert answer.headers["content-type"] == expected
    # A proper surrogate pair is one character and is fine.
    pair = httpx.request(method, url, content=body % b'"\\ud83d\\ude00"', headers=headers)
    assert pair.status_code < 300, pair.text


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("catalogue", "/api/v1/assets"),  # the search answered in front of the stack
        ("catalogue", "/api/v1/tags"),
        ("featurestore", "/api/v1/featuresets"),
    ],
)
def test_a_query_string_that_is_not_utf8_is_a_422(
    keyed: dict[str, ThreadServer], service: str, path: str
) -> None:
    url = keyed[service].url + path
    # Starlette alone reads %ff as U+FFFD and would search for a character nobody typed.
    for bad in ("q=%ff%fe", "q=caf%E9", "limit=5&q=%C3"):
        answer = httpx.get(f"{url}?{bad}")
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert "not valid UTF-8" in answer.json()["detail"], answer.text
    # Percent-encoded UTF-8 is fine, and so is a literal percent sign encoded as %25.
    for good in ("q=caf%C3%A9", "q=100%25"):
        assert httpx.get(f"{url}?{good}", headers=AUTH).status_code == 200, good


def _document(service: str, **fields: Any) -> dict[str, Any]:
    return APPS[service](Settings(data_dir=Path("/nonexistent"), **fields)).openapi()


def _is_mastro(service: str, method: str, path: str) -> bool:
    operation = _document(service)["paths"].get(path, {}).get(method.lower(), {})
    return "mastro-compatible" in operation.get("tags", [])


@pytest.mark.parametrize("service", APPS)
def test_the_openapi_documents_problems_keys_and_bounds(service: str) -> None:
    document = _document(service, api_keys=[KEY])
    assert "Problem" in document["components"]["schemas"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            # Mastro's routes answer Mastro's {message, status, error}, except the body cap's
            # 413, which is answered before any route runs.
            mastro = "mastro-compatible" in operation.get("tags", [])
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    content = response.get("content", {})
                    if mastro and status != "413":
                        media, schema = "application/json", "MastroError"
                    else:
                        media, schema = "application/problem+json", "Problem"
                    assert list(content) == [media], (where, status)
                    assert content[media]["schema"] == {"$ref": f"#/components/schemas/{schema}"}
            statuses = set(operation["responses"])
            probes = {"/healthz", "/readyz"}
            assert "503" in statuses or path in probes or path.startswith("/healthcheck/"), where
            # Mastro's queries are POSTs that read.
            # Feast's online lookup and the point-in-time join are POSTs that read as well.
            reads = method == "get" or path.endswith(
                ("/search", "/tags", "/labels", "online-features", "/historical-features")
            )
            if method != "get":
                assert "413" in statuses, where  # a body can be too large
            if not reads and path.startswith("/api/"):
                # Writes need the key.
                assert operation["security"] == [{"bearer": []}], where
                assert "401" in statuses, where
            if reads and path.startswith("/api/"):
                # Reads are open unless CAIRN_READ_NEEDS_KEY.
                assert "security" not in operation and "401" not in statuses, where
    if service == "featurestore":
        one = document["paths"]["/api/v1/featuresets/{name}/versions/{version}"]["get"]
        assert {"400", "404", "406", "422"} <= set(one["responses"])
        limit = next(p for p in one["parameters"] if p["name"] == "limit")
        assert limit["schema"]["minimum"] == 1
        upload = document["paths"]["/api/v1/featuresets/{name}/versions"]["post"]
        assert "415" in upload["responses"]
    else:
        assert "404" in document["paths"]["/api/v1/assets/{asset_id}"]["get"]["responses"]
        assert "400" in document["paths"]["/api/v1/assets"]["get"]["responses"]


def test_keyed_reads_are_documented_as_keyed() -> None:
    document = _document("featurestore", api_keys=[KEY], read_needs_key=True)
    latest = document["paths"]["/api/v1/featuresets/{name}"]["get"]
    assert latest["security"] == [{"bearer": []}] and "401" in latest["responses"]
    unkeyed = _document("catalogue")
    assert "securitySchemes" not in unkeyed["components"]
    assert "401" not in unkeyed["paths"]["/api/v1/assets/{asset_id}"]["put"]["responses"]


def test_405_lists_every_method_of_the_path(keyed: dict[str, ThreadServer]) -> None:
    answer = httpx.request("PATCH", keyed["catalogue"].url + "/api/v1/assets/", headers=AUTH)
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, HEAD, PUT"
    assert answer.headers["content-type"] == "application/problem+json"


def test_head_is_answered_as_get_without_a_body(keyed: dict[str, ThreadServer]) -> None:
    # A 405 names HEAD among the allowed methods of every GET route (as HTTP requires of a
    # server), yet HEAD itself was a 405: monitors and link checkers that send it failed.
    for service, path in (
        ("catalogue", "/healthz"),
        ("catalogue", "/api/v1/assets?q=x"),  # the search's front path
        ("catalogue", "/api/v1/assets/nobody"),  # a 404 stays a 404
        ("catalogue", "/api/v1/assets/?limit=1&page=1"),  # Mastro's
        ("featurestore", "/api/v1/featuresets"),
    ):
        url = keyed[service].url + path
        got, head = httpx.get(url, headers=AUTH), httpx.head(url, headers=AUTH)
        assert head.status_code == got.status_code, (path, head.status_code, got.text)
        assert head.content == b"", path
        for name in ("content-type", "content-length"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
    # A path without GET still refuses it.
    post_only = httpx.head(keyed["catalogue"].url + "/api/v1/lineage", headers=AUTH)
    assert post_only.status_code == 405 and post_only.headers["allow"] == "POST"


def test_long_integers_are_parsed_exactly_and_digit_runs_in_text_parse_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A JSON integer of 20+ digits is read exactly (orjson would round it to a float); a run
    of digits inside a string after letters (a crawled id) costs no second parse."""
    import json

    import cairn.web as web

    huge = 123456789012345678901234
    for body, expected in (
        (b"[%d]" % huge, [huge]),
        (b'{"a":-%d}' % huge, {"a": -huge}),
        (b'{"a": [1,\n  %d]}' % huge, {"a": [1, huge]}),
        (b'{"d": "ref %d"}' % huge, {"d": f"ref {huge}"}),  # a space before: parsed again
    ):
        assert web.parse_json(body) == expected
        assert type(web.parse_json(body)) is type(expected)
    assert web.parse_json(b"[%d]" % huge)[0] == huge  # an int, not 1.2345678901234568e+23

    def second_parse(raw: bytes) -> None:
        raise AssertionError("parsed a second time")

    monkeypatch.setattr(json, "loads", second_parse)
    body = b'[{"id": "a-bb4801693667743378692327", "n": 12345678901234567, "f": 0.%d}]' % huge
    assert web.parse_json(body) == [
        {"id": "a-bb4801693667743378692327", "n": 12345678901234567, "f": float(f"0.{huge}")}
    ]


@pytest.fixture(scope="module")
def open_writes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ThreadServer]]:
    """Both services as `make up` runs them: no keys, writes open; one origin allowed."""
    root = tmp_path_factory.mktemp("open")
    settings = {"cors_origins": ["https://allowed.example"]}
    with (
        ThreadServer(catalogue_app(_settings(root / "c", **settings))) as cat,
        ThreadServer(featurestore_app(_settings(root / "f", **settings))) as fs,
    ):
        yield {"catalogue": cat, "featurestore": fs}


def test_writes_from_another_site_are_refused(open_writes: dict[str, ThreadServer]) -> None:
    """A page on any site could POST a text/plain body (sent cross-site without a preflight)
    to a catalogue whose writes need no key: the bulk route, which parses its own body, took
    it and overwrote or deleted assets."""
    cat = open_writes["catalogue"].url
    bulk = cat + "/api/v1/assets/bulk"
    evil = {"origin": "https://evil.example", "content-type": "text/plain"}

    def write(description: str, **headers: str) -> httpx.Response:
        body = b'[{"id": "orders", "name": "orders", "type": "dataset", "description": "%s"}]'
        return httpx.post(bulk, content=body % description.encode(), headers=headers)

    assert write("real").status_code == 200  # curl and client libraries send no Origin
    for headers in (
        {**evil, "sec-fetch-site": "cross-site"},
        {**evil, "sec-fetch-site": "same-site"},  # another port of the same host
        evil,  # a browser that predates Sec-Fetch-Site
        {"origin": "null", "content-type": "text/plain"},  # a sandboxed frame
    ):
        refused = write("PWNED", **headers)
        assert refused.status_code == 403, (headers, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert "CAIRN_CORS_ORIGINS" in refused.json()["detail"], refused.text
    asset = httpx.get(cat + "/api/v1/assets/orders").json()
    assert asset["description"] == "real"
    # The browser's own page, an allowed origin, and reads from anywhere pass.
    host = cat.removeprefix("http://")
    assert write("same", origin=cat, **{"sec-fetch-site": "same-origin"}).status_code == 200
    assert write("old browser, same host", origin="http://" + host).status_code == 200
    assert write("allowed", origin="https://allowed.example").status_code == 200
    read = httpx.get(cat + "/api/v1/assets", params={"q": "orders"}, headers=evil)
    assert read.status_code == 200 and read.json()["total"] == 1
    # The feature store too, the online lookup answered in front of the stack included.
    fs = open_writes["featurestore"].url
    for path in ("/api/v1/featuresets", "/get-online-features"):
        answer = httpx.post(fs + path, content=b"{}", headers=evil)
        assert answer.status_code == 403, (path, answer.text)

"""The web UI's server without a browser: hostile query strings give a normal page (never a
500), user values are escaped, a service that is down gives a banner, and the helpers that
highlight, paginate and lay out lineage behave.

A real catalogue runs in a thread with a few assets; the feature store is pointed at a closed
port, so every page here also proves the UI copes with a service that is down.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.datastructures import QueryParams

from cairn.settings import Settings
from tests.conftest import ThreadServer, refused_port
from ui.format import counted, highlight, snippet, terms
from ui.lineage import NODE_W, layout
from ui.render import INVISIBLE, reveal
from ui.routes.assets import manifest_yaml
from ui.state import MAX_BACK, SearchState

ASSETS = [
    {
        "id": "sales-1",
        "name": "sales_daily",
        "type": "table",
        "description": "Daily sales per shop. <b>Bold</b> claims & 'quotes'.",
        "tags": ["sales", "gold"],
        "labels": {"domain": "retail", "pii": False},
        "owners": ["ana@example.com"],
        "schema": [{"name": "store_id", "type": "int64"}, {"name": "amount", "type": "double"}],
        "depends_on": ["sales_raw", "nowhere"],
    },
    {"id": "raw-1", "name": "sales_raw", "type": "dataset", "tags": ["sales", "raw"]},
    {
        "id": "xss-1",
        "name": "<script>alert(1)</script>",
        "type": "report",
        "description": "<img src=x onerror=alert(2)> sales",
        "tags": ["<b>tag</b>"],
        "depends_on": ["sales_daily"],
    },
    {"id": "fs-1", "name": "featureset:churn", "type": "featureset", "depends_on": ["sales_daily"]},
    {"id": "gone-1", "name": "old_sales", "type": "table", "deleted": True, "tags": ["sales"]},
    {
        # Looks like "invoice_fdp.exe" reversed into "invoice_exe.pdf" when shown raw.
        "id": "bidi-1",
        "name": "invoice_\u202efdp.exe",
        "type": "report",
        "description": "Pay\u200bable to \u2067acme\u2069, see \u200fnotes\ufeff.",
        "tags": ["fin\u200dance"],
        "location": "file:///lake/\u202dinvoices/",
        "depends_on": ["sales_daily"],
    },
]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from catalogue_service.app import create_app as catalogue_app
    from ui.app import create_app as ui_app

    data = tmp_path_factory.mktemp("ui-server")
    with ThreadServer(catalogue_app(Settings(data_dir=data))) as catalogue:
        body = httpx.post(catalogue.url + "/api/v1/assets/bulk", json=ASSETS, timeout=30).json()
        assert body["failed"] == 0, body
        settings = Settings(
            data_dir=data,
            catalogue_url=catalogue.url,
            featurestore_url=f"http://127.0.0.1:{refused_port()}",  # nothing listens here
        )
        with ThreadServer(ui_app(settings)) as ui:
            yield ui.url, catalogue.url


@pytest.fixture(scope="module")
def ui(services: tuple[str, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=services[0], timeout=30) as client:
        yield client


def assert_page(response: httpx.Response, *statuses: int) -> str:
    allowed = statuses or (200,)
    assert response.status_code in allowed, (response.status_code, response.text[:2000])
    assert response.headers["content-type"].startswith("text/html")
    text = response.text
    assert "Traceback" not in text and "Internal Server Error" not in text
    assert text.lstrip().startswith("<!doctype html>")
    return text


# --- pages --------------------------------------------------------------------------------


def test_search_page_finds_highlights_and_links(ui: httpx.Client) -> None:
    text = assert_page(ui.get("/", params={"q": "sales"}))
    assert "<mark>sales</mark>_daily" in text
    assert 'href="/assets/sales-1"' in text
    assert 'data-facet="tag:gold"' in text
    assert "old_<mark>sales" not in text  # deleted assets only on request
    with_deleted = assert_page(ui.get("/", params={"q": "sales", "deleted": "1"}))
    assert "old_<mark>sales</mark>" in with_deleted and "badge deleted" in with_deleted


def test_a_type_the_catalogue_refuses_is_said_with_a_way_out(ui: httpx.Client) -> None:
    # The catalogue answers a type no asset can have with a 422 listing the known ones.
    text = assert_page(ui.get("/", params={"q": "sales", "type": "spaceship"}))
    assert "The catalogue could not run this search" in text
    assert "type &#39;spaceship&#39; is not one of: database, dataset" in text
    assert 'href="/?q=sales" aria-label="Remove type filter spaceship"' in text
    # A type facet's link still narrows the search.
    narrowed = assert_page(ui.get("/", params={"q": "sales", "type": "table"}))
    assert 'href="/assets/sales-1"' in narrowed and "could not run" not in narrowed


def test_a_long_search_keeps_the_page_title_short(ui: httpx.Client) -> None:
    # A tab or a history entry cannot show 1,024 characters; the search box keeps them all.
    q = "sales " + "x" * 900
    text = assert_page(ui.get("/", params={"q": q}))
    title = re.search(r"<title>(.*?)</title>", text, re.S).group(1)  # type: ignore[union-attr]
    assert title.startswith("sales xxx") and title.endswith("… — search · Cairn")
    assert len(title) < 110
    assert "x" * 900 in text
    short = assert_page(ui.get("/", params={"q": "sales"}))
    assert "<title>sales — search · Cairn</title>" in short


def test_user_values_are_escaped(ui: httpx.Client) -> None:
    text = assert_page(ui.get("/", params={"q": "alert"}))
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;" in text
    assert "<img src=x" not in text and "&lt;img src=x" in text
    assert "<b>tag</b>" not in text and "&lt;b&gt;tag&lt;/b&gt;" in text
    page = assert_page(ui.get("/assets/xss-1"))
    assert "<script>alert(1)</script>" not in page and "onerror=alert(2)>" not in page


@pytest.mark.parametrize(
    "params",
    [
        {"q": "x" * 60_000},
        {"q": "sales " * 5000},
        {"q": "日本語 データ 🚀 émoji ﷽ \u202etxet\u202c ÅÄÖ"},
        {"q": "\u0301\u0301\u0301 combining only"},
        {"q": "\x00\x01\x1f null and control"},
        {"q": "' OR 1=1 --"},
        {"q": '"; DROP TABLE assets; --'},
        {"q": 'NEAR(sales daily) AND name:* OR "unclosed'},
        {"q": '{"$where": "sleep(1000)"}'},
        {"q": "<script>alert(1)</script>"},
        {"q": "*", "tag": "*"},
        {"q": "%", "type": "%' OR '1'='1"},
        {"q": "../../etc/passwd"},
        {"tag": ["t"] * 500},
        {"tag": "x" * 5000},
        {"type": "y" * 5000},
        {"label": ["no-colon", ":", "k:" + "v" * 3000]},
        {"owner": "o" * 10_000},
        {"cursor": "not a cursor!"},
        {"cursor": "A" * 10_000},
        {"cursor": "WyJhIl0", "page": "-5"},
        {"cursor": "WyJ4Iiwy", "page": "9" * 5000, "back": "..."},
        {"deleted": "maybe", "page": "abc"},
        {"q": ""},
    ],
)
def test_hostile_search_strings_give_a_normal_page(ui: httpx.Client, params: dict) -> None:
    assert_page(ui.get("/", params=params))


@pytest.mark.parametrize(
    "path",
    [
        "/?q=%ff%fe%00",
        "/?q=%ED%A0%80",  # an encoded UTF-16 surrogate
        "/?q=%",
        "/?%=%&&&=&q",
        "/?q[]=1&q[$ne]=2",
        "/?" + "a=b&" * 2000,
        "/assets/does-not-exist",
        "/assets/%00",
        "/assets/%ff",
        "/assets/" + "x" * 5000,
        "/assets/sales-1?depth=abc&direction=sideways",
        "/assets/sales-1?depth=-1",
        "/assets/sales-1?depth=99999999999999999999999",
        "/assets/by-name/%3Cscript%3E",
        "/assets/by-name/" + "n" * 3000,
        "/assets/sales-1/manifest.yaml",
        "/featuresets?q=%ff&label=bad",
        "/featuresets/x?v=abc",
        "/featuresets/%2e%2e/diff?from=a&to=b",
        "/status",
        "/no/such/page",
        "/static/../ui/app.py",
    ],
)
def test_hostile_paths_never_give_a_500(ui: httpx.Client, path: str) -> None:
    response = ui.get(path)
    assert response.status_code < 500 or response.status_code == 503, response.text[:2000]
    if response.headers["content-type"].startswith("text/html"):
        assert "Traceback" not in response.text
        assert "\x00" not in response.text


def test_asset_page_shows_metadata_schema_lineage_and_manifest(ui: httpx.Client) -> None:
    text = assert_page(ui.get("/assets/sales-1", params={"depth": "3"}))
    assert re.search(r'<td class="mono col-name">store_id</td>', text)
    assert 'data-node="sales_raw"' in text and 'data-kind="missing"' in text
    assert 'data-kind="featureset"' in text and 'href="/featuresets/churn"' in text
    assert "name: sales_daily" in text and "depends_on: [sales_raw, nowhere]" in text
    assert "ana@example.com" in text and "retail" in text
    raw = ui.get("/assets/sales-1/manifest.yaml")
    assert raw.status_code == 200 and raw.text.startswith("name: sales_daily\n")


def test_deleted_asset_is_shown_as_deleted(ui: httpx.Client) -> None:
    text = assert_page(ui.get("/assets/gone-1"))
    assert "This asset is deleted" in text and 'class="badge deleted"' in text
    # Written and deleted over the API: it never had a manifest to lose.
    assert "manifest is gone" not in text and "deleted over the API" in text


def test_by_name_redirects_to_the_asset(ui: httpx.Client) -> None:
    response = ui.get("/assets/by-name/sales_raw", params={"depth": "4"})
    assert response.status_code == 303
    assert response.headers["location"] == "/assets/raw-1?depth=4"
    assert ui.get("/assets/by-name/raw-1").headers["location"] == "/assets/raw-1"  # an id too
    assert_page(ui.get("/assets/by-name/nobody"), 404)


def test_a_service_that_is_down_gives_a_banner_not_a_trace(ui: httpx.Client) -> None:
    text = assert_page(ui.get("/featuresets"), 503)
    assert "The feature store is not answering." in text and 'role="alert"' in text
    assert_page(ui.get("/featuresets/anything"), 503)
    status = assert_page(ui.get("/status"), 503)
    assert 'Catalogue <span class="state-word">up</span>' in status
    assert 'Feature store <span class="state-word">down</span>' in status


def test_catalogue_down_gives_a_banner(tmp_path: Path) -> None:
    from ui.app import create_app

    settings = Settings(
        data_dir=tmp_path,
        catalogue_url=f"http://127.0.0.1:{refused_port()}",
        featurestore_url=f"http://127.0.0.1:{refused_port()}",
    )
    with ThreadServer(create_app(settings)) as server:
        for path in ("/?q=sales", "/assets/x", "/assets/by-name/x"):
            response = httpx.get(server.url + path, timeout=30)
            text = assert_page(response, 503)
            assert "The catalogue is not answering." in text
        assert httpx.get(server.url + "/readyz").status_code == 200


def test_ids_and_names_of_dots_are_assets_not_folders(ui: httpx.Client) -> None:
    """Asset "." was asked for as /api/v1/assets/. , which the client's URL parser made the
    list route: an answer it could not read, and the catalogue shown as down to every
    visitor until its next good answer."""
    from cairn.segments import path_segment

    assert [path_segment(v) for v in (".", "..", "a.b", "a/b")] == ["%2E", "%2E%2E", "a.b", "a%2Fb"]
    for path in ("/assets/%2e", "/assets/%2E%2E", "/assets/by-name/%2E%2E"):
        text = assert_page(ui.get(path), 404)
        assert "The catalogue is not answering." not in text, path
    text = assert_page(ui.get("/", params={"q": "sales"}))
    assert "The catalogue is not answering." not in text


def test_pages_are_light_and_carry_security_headers(ui: httpx.Client) -> None:
    response = ui.get("/", params={"q": "sales"})
    assert len(response.content) < 100_000
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    css = ui.get("/static/cairn.css")
    js = ui.get("/static/cairn.js")
    assert css.status_code == js.status_code == 200
    assert len(css.content) + len(js.content) < 40_000
    assert "immutable" in css.headers["cache-control"]


def test_pages_answer_head_as_get(ui: httpx.Client) -> None:
    # Uptime monitors and link checkers ask with HEAD.
    for path in ("/?q=sales", "/assets/gone-1", "/status", "/static/cairn.css", "/assets/nobody"):
        got, head = ui.get(path), ui.head(path)
        assert head.status_code == got.status_code and head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path


def test_templates_and_static_files_ship_with_the_package() -> None:
    from setuptools import find_namespace_packages

    from ui.render import STATIC, TEMPLATES

    packages = find_namespace_packages(include=["ui*"], where=str(Path(__file__).parent.parent))
    assert {"ui.templates", "ui.static"} <= set(packages)
    assert (TEMPLATES / "base.html").exists() and (STATIC / "cairn.css").exists()


def test_invisible_and_bidi_characters_are_shown_not_obeyed(ui: httpx.Client) -> None:
    """An RLO, isolate, mark or zero-width character in a name, tag, description, location or
    search snippet is shown as a visible code, so one name cannot pass for another."""
    pages = {
        "search": assert_page(ui.get("/", params={"q": "invoice"})),
        "asset": assert_page(ui.get("/assets/bidi-1")),
        "downstream": assert_page(ui.get("/assets/sales-1", params={"direction": "down"})),
    }
    for where, text in pages.items():
        body = text.split("<body>", 1)[1]
        visible = re.sub(r"<[^>]*>", "", body)  # the page's text, as a reader sees it
        assert not INVISIBLE.search(visible), (where, INVISIBLE.findall(visible))
        assert '<span class="cc" title="right-to-left override">\u27e8U+202E\u27e9</span>' in body
    asset = pages["asset"]
    for code in ("U+200B", "U+2067", "U+2069", "U+200F", "U+FEFF", "U+200D", "U+202D"):
        assert f"\u27e8{code}\u27e9</span>" in asset, code
    # In the lineage picture (SVG) the code is an SVG text span.
    assert '<tspan class="cc" title="right-to-left override">' in pages["downstream"]
    # The tab title cannot hold markup: the code goes in bare.
    assert "<title>invoice_\u27e8U+202E\u27e9fdp.exe · Cairn</title>" in asset
    # Links and form values keep the real characters, so they still lead to the same place.
    assert 'href="/?tag=fin%E2%80%8Dance"' in asset
    search = assert_page(ui.get("/", params={"q": "fdp\u202e"}))
    assert 'value="fdp\u202e"' in search


def test_reveal_leaves_tags_alone() -> None:
    html = '<a title="a\u202eb" href="/x">a\u202eb</a><title>t\u200bt</title>'
    assert reveal(html) == (
        '<a title="a\u202eb" href="/x">a<span class="cc" title="right-to-left override">'
        "\u27e8U+202E\u27e9</span>b</a><title>t\u27e8U+200B\u27e9t</title>"
    )
    assert reveal("<p>plain</p>") == "<p>plain</p>"


# --- reads that need a key (CAIRN_READ_NEEDS_KEY) ------------------------------------------

GOOD_KEY = "visitor-key-1"
UI_OWN_KEY = "ui-own-key"  # valid at the services: the UI must still not read with it


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A catalogue that wants a key for reads; a UI that asks visitors for theirs, and a UI
    started with reads open against it (a configuration mistake)."""
    from catalogue_service.app import create_app as catalogue_app
    from ui.app import create_app as ui_app

    data = tmp_path_factory.mktemp("ui-keyed")
    keys = {"api_keys": [GOOD_KEY, UI_OWN_KEY], "read_needs_key": True}
    with ThreadServer(catalogue_app(Settings(data_dir=data, **keys))) as catalogue:
        auth = {"authorization": f"Bearer {GOOD_KEY}"}
        body = httpx.post(
            catalogue.url + "/api/v1/assets/bulk", json=ASSETS, headers=auth, timeout=30
        ).json()
        assert body["failed"] == 0, body
        common = {
            "data_dir": data,
            "catalogue_url": catalogue.url,
            "featurestore_url": f"http://127.0.0.1:{refused_port()}",
            "api_key": UI_OWN_KEY,
        }
        with (
            ThreadServer(ui_app(Settings(**common, **keys))) as ui,
            ThreadServer(ui_app(Settings(**common))) as open_ui,
        ):
            yield ui.url, open_ui.url


def test_reads_that_need_a_key_send_anonymous_visitors_to_sign_in(
    keyed: tuple[str, str],
) -> None:
    with httpx.Client(base_url=keyed[0], timeout=30) as visitor:
        for path, back in (
            ("/", "/"),
            ("/?q=sales&tag=gold", "/?q=sales&tag=gold"),
            ("/assets/sales-1", "/assets/sales-1"),
            ("/assets/sales-1/manifest.yaml", "/assets/sales-1/manifest.yaml"),
            ("/featuresets", "/featuresets"),
            ("/status", "/status"),
        ):
            response = visitor.get(path)
            assert response.status_code == 303, (path, response.text[:500])
            location = response.headers["location"]
            assert location.startswith("/signin"), location
            next_url = QueryParams(location.partition("?")[2]).get("next", "/")
            assert next_url == back
            assert "sales_daily" not in response.text
        form = assert_page(visitor.get("/signin", params={"next": "/assets/sales-1"}))
        assert 'type="password"' in form and 'value="/assets/sales-1"' in form
        assert "Sign out" not in form
        assert visitor.get("/healthz").status_code == 200  # plumbing stays open


def test_signing_in_keeps_the_key_in_a_strict_cookie_and_reads_with_it(
    keyed: tuple[str, str],
) -> None:
    with httpx.Client(base_url=keyed[0], timeout=30) as visitor:
        response = visitor.post("/signin", data={"key": GOOD_KEY, "next": "/assets/sales-1"})
        assert response.status_code == 303 and response.headers["location"] == "/assets/sales-1"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("cairn_key=") and GOOD_KEY not in cookie
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/"} <= flags
        assert "secure" not in flags  # plain http here; https gets Secure:
        behind_tls = httpx.post(
            keyed[0] + "/signin",
            data={"key": GOOD_KEY},
            headers={"x-forwarded-proto": "https"},  # from a proxy uvicorn trusts (loopback)
        )
        assert "secure" in {p.strip().lower() for p in behind_tls.headers["set-cookie"].split(";")}
        page = assert_page(visitor.get("/assets/sales-1"))
        assert "<h1>sales_daily</h1>" in page or ">sales_daily</h1>" in page
        assert 'action="/signout"' in page
        assert "<mark>sales</mark>_daily" in assert_page(visitor.get("/", params={"q": "sales"}))
        status = assert_page(visitor.get("/status"), 503)  # the feature store is down
        assert "Assets</dt><dd>" in status
        out = visitor.post("/signout")
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        assert (
            'cairn_key=""' in out.headers["set-cookie"]
            or "Max-Age=0" in (out.headers["set-cookie"])
        )
        assert visitor.get("/").status_code == 303


def test_a_wrong_key_gives_the_sign_in_page_with_a_message(keyed: tuple[str, str]) -> None:
    with httpx.Client(base_url=keyed[0], timeout=30) as visitor:
        wrong = visitor.post("/signin", data={"key": "not-a-key", "next": "/?q=sales"})
        text = assert_page(wrong, 401)
        assert "The catalogue did not accept that key" in text and 'role="alert"' in text
        assert 'value="/?q=sales"' in text and "sales_daily" not in text
        assert "not-a-key" not in text
        assert_page(visitor.post("/signin", data={"key": "  "}), 400)
        assert "Enter your API key" in visitor.post("/signin", data={"key": ""}).text
        # A key that stops working: the next page is the sign-in page, and the cookie goes.
        stale = base64.urlsafe_b64encode(b"revoked-key").decode()
        visitor.cookies.set("cairn_key", stale)
        page = visitor.get("/assets/sales-1")
        text = assert_page(page, 401)
        assert "did not accept your key" in text and 'value="/assets/sales-1"' in text
        assert "sales_daily" not in text
        assert (
            "Max-Age=0" in page.headers["set-cookie"]
            or 'cairn_key=""' in (page.headers["set-cookie"])
        )
        # Garbage in the cookie is no key at all.
        visitor.cookies.set("cairn_key", "%%%not base64")
        assert visitor.get("/").status_code == 303


def test_sign_in_never_redirects_off_site_or_takes_a_cross_site_form(
    keyed: tuple[str, str],
) -> None:
    with httpx.Client(base_url=keyed[0], timeout=30) as visitor:
        for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "x"):
            response = visitor.post("/signin", data={"key": GOOD_KEY, "next": target})
            assert response.headers["location"] == "/", target
        forged = visitor.post(
            "/signin", data={"key": GOOD_KEY}, headers={"sec-fetch-site": "cross-site"}
        )
        assert forged.status_code == 403 and "Max-Age=0" in forged.headers["set-cookie"]
        assert visitor.get("/").status_code == 303
        # A sibling host, or a browser without Sec-Fetch-Site posting from another origin
        # ("null" from a sandboxed frame), signed the visitor in with the attacker's key.
        for headers in (
            {"sec-fetch-site": "same-site", "origin": "https://evil.example.com"},
            {"origin": "https://evil.example.com"},
            {"origin": "null"},
        ):
            forged = visitor.post("/signin", data={"key": GOOD_KEY}, headers=headers)
            assert forged.status_code == 403, headers
            assert visitor.get("/").status_code == 303
        own = urlsplit(keyed[0]).netloc
        for headers in (
            {"sec-fetch-site": "same-origin", "origin": f"http://{own}"},
            {"origin": f"http://{own}"},
        ):
            assert (
                visitor.post("/signin", data={"key": GOOD_KEY}, headers=headers).status_code == 303
            )
            visitor.cookies.clear()


def test_a_ui_with_reads_open_against_services_that_want_a_key_says_so(
    keyed: tuple[str, str],
) -> None:
    with httpx.Client(base_url=keyed[1], timeout=30) as visitor:
        text = assert_page(visitor.get("/", params={"q": "sales"}), 503)
        assert "CAIRN_READ_NEEDS_KEY=true" in text and "sales_daily" not in text
        assert visitor.get("/signin").headers["location"] == "/"


# --- helpers -------------------------------------------------------------------------------


def test_counts_read_as_english() -> None:
    assert [counted(n, "row") for n in (0, 1, 2, 12345)] == [
        "0 rows",
        "1 row",
        "2 rows",
        "12,345 rows",
    ]


def test_highlight_escapes_before_marking() -> None:
    words = terms("sal <b>")
    assert str(highlight("sales <b>x</b> sal", words)) == (
        "<mark>sal</mark>es &lt;<mark>b</mark>&gt;x&lt;/<mark>b</mark>&gt; <mark>sal</mark>"
    )
    assert str(highlight("<script>", ())) == "&lt;script&gt;"
    assert "<mark>daily</mark>" in str(highlight("sales_daily", terms("daily")))
    long = "intro " * 80 + "the churn model " + "outro " * 80
    cut = str(snippet(long, terms("churn")))
    assert cut.startswith("… ") and cut.endswith(" …") and "<mark>churn</mark>" in cut


def test_highlight_folds_case_and_accents_as_the_search_does() -> None:
    # The index drops diacritics, so "cafe" finds "Café": the match is marked too, in the
    # text as written.
    assert str(highlight("Café données", terms("cafe DONNEES"))) == (
        "<mark>Café</mark> <mark>données</mark>"
    )
    assert str(highlight("Été <b>", terms("été"))) == "<mark>Été</mark> &lt;b&gt;"
    assert str(highlight("cafe", terms("café"))) == "<mark>cafe</mark>"
    assert str(highlight("ÉTÉ été", terms("Été"))) == "<mark>ÉTÉ</mark> <mark>été</mark>"
    assert str(highlight("数据表", terms("数据"))) == "<mark>数据</mark>表"
    decomposed = unicodedata.normalize("NFD", "crème")  # e + U+0300, as some keyboards type
    assert str(highlight("Crème brûlée", terms(decomposed))) == "<mark>Crème</mark> brûlée"
    long = "intro " * 80 + "le modèle de churn " + "outro " * 80
    cut = str(snippet(long, terms("modele")))
    assert cut.startswith("… ") and "<mark>modèle</mark>" in cut


def test_drifted_datasets_are_flagged_and_a_search_facet(
    ui: httpx.Client, services: tuple[str, str]
) -> None:
    flag = {"drifted": True, "columns": ["amount"], "profile_version": 2, "against": 1}
    set_flag = httpx.put(f"{services[1]}/api/v1/assets/raw-1/drift", json=flag)
    assert set_flag.status_code == 200, set_flag.text
    text = assert_page(ui.get("/", params={"q": "sales"}))
    assert 'data-facet="drift:drifted"' in text and "drifted data" in text
    assert 'class="badge drift" href="/assets/raw-1/metrics"' in text
    only = assert_page(ui.get("/", params={"drift": "drifted"}))
    assert 'href="/assets/raw-1"' in only and 'href="/assets/sales-1"' not in only
    assert "Remove drift filter drifted" in only
    odd = assert_page(ui.get("/", params={"drift": "<b>x</b>"}))
    assert "Ignored the drift filter" in odd and "<b>x</b>" not in odd
    page = assert_page(ui.get("/assets/raw-1"))
    assert "The data drifted." in page and "differs from v1 in amount" in page
    assert "drifted" not in assert_page(ui.get("/assets/sales-1")).split("<main", 1)[-1]


def test_search_state_round_trips_through_the_url() -> None:
    state, notices = SearchState.parse(
        QueryParams(
            "q=sales&tag=gold&tag=daily&type=table&label=pii:false&cursor=abc&page=3&back=x"
        )
    )
    assert notices == []
    again, _ = SearchState.parse(QueryParams(state.url()[2:]))
    assert again == state
    assert state.with_tag("gold") == "/?q=sales&tag=daily&type=table&label=pii%3Afalse"
    assert (
        state.prev_url()
        == "/?q=sales&tag=gold&tag=daily&type=table&label=pii%3Afalse&cursor=x&page=2"
    )
    nxt, _ = SearchState.parse(QueryParams(state.next_url("def")[2:]))
    assert (nxt.cursor, nxt.page, nxt.back) == ("def", 4, ["x", "abc"])
    deep = SearchState(cursor="c", page=500, back=[f"c{i}" for i in range(MAX_BACK)])
    assert len(SearchState.parse(QueryParams(deep.next_url("d")[2:]))[0].back) == MAX_BACK


def test_lineage_layout_puts_upstream_left_and_downstream_right() -> None:
    graph = {
        "root": "r",
        "nodes": [
            {"id": "r", "name": "root", "type": "table", "depth": 0},
            {"id": "u1", "name": "up1", "type": "dataset", "depth": -1},
            {"id": "u2", "name": "up2", "type": "dataset", "depth": -2},
            {"id": "d1", "name": "fs", "type": "featureset", "depth": 1},
            {"id": "missing:x", "name": "x", "missing": True, "depth": -1},
        ],
        "edges": [
            {"source": "u2", "target": "u1"},
            {"source": "u1", "target": "r"},
            {"source": "missing:x", "target": "r"},
            {"source": "r", "target": "d1"},
        ],
    }
    drawing = layout(graph, lambda n: f"/a/{n['id']}")
    x = {n.id: n.x for n in drawing.nodes}
    assert x["u2"] < x["u1"] < x["r"] < x["d1"] and x["u1"] == x["missing:x"]
    kinds = {n.id: n.kind for n in drawing.nodes}
    assert kinds == {
        "r": "root",
        "u1": "asset",
        "u2": "asset",
        "d1": "featureset",
        "missing:x": "missing",
    }
    assert {n.id: n.href for n in drawing.nodes}["missing:x"] is None
    assert drawing.width >= 4 * NODE_W and len(drawing.edges) == 4
    assert [n.name for n in drawing.upstream] == ["up1", "x", "up2"]


def test_layout_draws_each_origin_of_a_link_and_a_legend_of_those_present() -> None:
    graph = {
        "root": "r",
        "nodes": [
            {"id": "r", "name": "root", "type": "table", "depth": 0},
            {"id": "u", "name": "up", "type": "dataset", "depth": -1},
            {"id": "j", "name": "job", "type": "pipeline", "depth": -1},
        ],
        "edges": [
            {"source": "u", "target": "r"},
            {"source": "u", "target": "r", "origin": "openlineage", "run_id": "run-1"},
            {"source": "j", "target": "r", "origin": "openlineage", "run_id": "run-1"},
        ],
    }
    drawing = layout(graph, lambda n: f"/a/{n['id']}")
    pair = [e for e in drawing.edges if (e.source, e.target) == ("u", "r")]
    assert sorted(e.origin for e in pair) == ["manifest", "openlineage"]
    assert pair[0].path != pair[1].path  # side by side, neither hides the other
    assert [o for o, _ in drawing.origins] == ["manifest", "openlineage"]
    assert "run-1" in next(e for e in pair if e.origin == "openlineage").title
    only_manifest = layout({**graph, "edges": graph["edges"][:1]}, lambda n: None)
    assert [o for o, _ in only_manifest.origins] == ["manifest"]


def test_manifest_yaml_reads_like_a_manifest() -> None:
    text = manifest_yaml(
        {
            "name": "a",
            "type": "table",
            "tags": [],
            "schema": [{"name": "c", "type": "int", "nullable": True, "description": None}],
            "extra": {"team": "x"},
            "id": "ignored",
        }
    )
    assert text == "name: a\ntype: table\nschema:\n- {name: c, type: int}\nteam: x\n"


def test_a_dependency_named_like_a_path_links_to_itself(services: tuple[str, str]) -> None:
    # A browser resolves "/../" in a link's path before it asks: the name must be one segment.
    ui_url, catalogue_url = services
    odd = {"id": "odd-up-1", "name": "lake/raw/../orders", "type": "dataset"}
    user = {"id": "odd-down-1", "name": "orders_report", "type": "report"}
    body = httpx.post(
        catalogue_url + "/api/v1/assets/bulk",
        json=[odd, {**user, "depends_on": [odd["name"]]}],
        timeout=30,
    ).json()
    assert body["failed"] == 0, body
    with httpx.Client(base_url=ui_url, timeout=30) as ui:
        text = assert_page(ui.get("/assets/odd-down-1"))
        href = re.search(r'<a class="dep" href="([^"]+)"', text)
        assert href is not None and href.group(1) == "/assets/by-name/lake%2Fraw%2F..%2Forders"
        response = ui.get(href.group(1))
    assert response.status_code == 303 and response.headers["location"] == "/assets/odd-up-1"


def test_assets_past_the_pictures_limit_are_still_in_the_lineage_list() -> None:
    """The picture takes the nearest assets; the lists under it took the same cut, so the
    401st dependant of a hub could not be reached from its page at all."""
    from ui.lineage import layout

    graph = {
        "root": "hub",
        "nodes": [{"id": "hub", "name": "hub", "type": "table", "depth": 0}]
        + [{"id": f"d{i}", "name": f"dep{i:03d}", "type": "table", "depth": 1} for i in range(40)]
        + [{"id": "u", "name": "up", "type": "table", "depth": -1}],
        "edges": [{"source": "hub", "target": f"d{i}"} for i in range(40)]
        + [{"source": "u", "target": "hub"}],
    }
    drawing = layout(graph, lambda raw: f"/assets/{raw['id']}", max_nodes=10)
    assert len(drawing.nodes) == 10 and drawing.hidden == 32
    assert len(drawing.downstream) == 40 and [n.name for n in drawing.upstream] == ["up"]
    assert all(n.href for n in drawing.downstream)


def test_a_lineage_cut_at_the_node_limit_says_so(
    ui: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import catalogue_service.service as service

    whole = assert_page(ui.get("/assets/sales-1", params={"depth": "3"}))
    assert "data-lineage-truncated" not in whole
    monkeypatch.setattr(service, "MAX_LINEAGE_NODES", 2)  # the catalogue runs in this process
    cut = assert_page(ui.get("/assets/sales-1", params={"depth": "3"}))
    assert "data-lineage-truncated" in cut and "more than this picture shows" in cut


def test_a_password_in_a_service_url_is_never_shown(tmp_path: Path) -> None:
    """CAIRN_CATALOGUE_URL may carry basic-auth credentials for a proxy in front of the
    catalogue; the status page, the banner and the asset page's curl line showed them to
    every visitor."""
    from catalogue_service.app import create_app as catalogue_app
    from ui.app import create_app as ui_app

    with ThreadServer(catalogue_app(Settings(data_dir=tmp_path))) as catalogue:
        body = httpx.post(catalogue.url + "/api/v1/assets/bulk", json=ASSETS, timeout=30).json()
        assert body["failed"] == 0, body
        host = catalogue.url.removeprefix("http://")
        settings = Settings(
            data_dir=tmp_path,
            catalogue_url=f"http://proxyuser:pr0xy-s3cret@{host}",
            featurestore_url=f"http://proxyuser:pr0xy-s3cret@127.0.0.1:{refused_port()}",
        )
        with (
            ThreadServer(ui_app(settings)) as ui,
            httpx.Client(base_url=ui.url, timeout=30) as client,
        ):
            status = assert_page(client.get("/status"), 200, 503)  # the store is down
            assert f"http://proxyuser@{host}" in status
            pages = [status, assert_page(client.get("/assets/sales-1"))]
            pages.append(assert_page(client.get("/featuresets"), 200, 503))
            pages.append(assert_page(client.get("/", params={"q": "sales"})))
    for page in pages:
        assert "pr0xy-s3cret" not in page


def test_feature_set_curl_snippets_send_the_key_variable_when_reads_need_one() -> None:
    from ui.render import CURL_KEY
    from ui.routes.featuresets import snippets

    keyed = snippets("http://fs:8002", "sales", "sales", 2, True, CURL_KEY)
    curls = [code for title, code in keyed.items() if title.startswith("curl")]
    assert len(curls) == 3 and all("$CAIRN_API_KEY" in code for code in curls), curls
    open_ = snippets("http://fs:8002", "sales", "sales", 2, True)
    assert not any("authorization" in code for code in open_.values()), open_

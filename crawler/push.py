"""Pushes crawled assets to the catalogue's bulk endpoint over HTTP, and a source's lineage
edges to its edge endpoint; asks which catalogue it is talking to and which assets it holds at
given locations."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson

from cairn import __version__
from cairn.cli_errors import key_hint
from cairn.redact import redact_url
from cairn.retry import RetryableStatus, call_with_retries

if TYPE_CHECKING:
    # Imported where answers are read: a crawl that pushes nothing needs no models, and
    # building them is a large part of the CLI's start-up.
    from cairn.models import Asset, BulkResponse, CrawlerEdgeOrigin, EdgeReceipt


def _tls(base_url: str) -> ssl.SSLContext | bool:
    """Certificate checks as usual for https. A plain-http catalogue (the usual local one)
    gets a context with no CA certificates loaded, which skips reading the system's CA bundle
    (tens of ms on every crawl) and, should https ever be asked of it, verifies nothing as
    trusted: it fails closed."""
    if base_url.lower().startswith("https:"):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class CatalogueUnreachable(Exception):
    """The catalogue did not accept a batch after every retry."""


class CataloguePusher:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        attempts: int = 8,
        max_body: int = 16 * 1024 * 1024,
    ):
        headers = {"user-agent": f"cairn-crawler/{__version__}", "content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        # What reports and logs name: a password in CAIRN_CATALOGUE_URL stays out of them.
        self.shown_url = redact_url(self.base_url)
        self.attempts = attempts
        # The catalogue's body limit as this side's settings know it (CAIRN_MAX_BODY_BYTES):
        # a batch over it is split before it is sent; one the catalogue still refuses (its
        # own limit is lower) is split on its 413.
        self.max_body = max_body
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, verify=_tls(self.base_url)
        )

    def instance_id(self) -> str:
        """The catalogue's instance id: what the crawler remembers is kept per catalogue."""
        response = self._call(
            lambda: self._client.get("/api/v1/instance"),
            f"instance lookup at {self.shown_url}",
            passes=(404,),
        )
        if response.status_code == 404:
            # Not a catalogue at that base: the API's own prefix given with it (as the docs
            # write routes), or another service's address.
            prefix = ", without /api/v1" if self.base_url.endswith("/api/v1") else ""
            raise CatalogueUnreachable(
                f"{self.shown_url} has no catalogue API (GET /api/v1/instance answered HTTP 404):"
                f" give the catalogue's base URL (e.g. http://host:8001{prefix}) with --catalogue"
                " or CAIRN_CATALOGUE_URL"
            )
        # Read without the CatalogueInstance model (see the imports): the one field it needs.
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            body = None
        found = body.get("instance_id") if isinstance(body, dict) else None
        if isinstance(found, str) and found:
            return found
        raise CatalogueUnreachable(
            f"{self.shown_url} answered GET /api/v1/instance with something that is not a "
            "Cairn catalogue's instance id; is the URL right?"
        )

    def bulk(self, items: list[dict[str, Any]]) -> BulkResponse:
        """The catalogue's answer for each of ``items``, in order; a batch over the body
        limit goes in smaller requests, and an asset too big alone is refused as an item."""
        from cairn.models import BulkResponse

        body = orjson.dumps(items)
        if len(body) > self.max_body and len(items) > 1:
            return self._halves(items)
        # One key for every attempt: a retry after a timeout gets the first attempt's answer
        # (what it created, updated, deleted), not a second run's "unchanged" for each item.
        key = {"idempotency-key": uuid.uuid4().hex}
        response = self._call(
            lambda: self._client.post("/api/v1/assets/bulk", content=body, headers=key),
            f"push of {len(items)} assets to {self.shown_url}",
            passes=(413,),
        )
        if response.status_code == 413:
            if len(items) > 1:
                return self._halves(items)
            return _too_big(items[0], len(body), _detail(response))
        return BulkResponse.model_validate_json(response.content)

    def _halves(self, items: list[dict[str, Any]]) -> BulkResponse:
        from cairn.models import BulkResponse

        half = len(items) // 2
        first, second = self.bulk(items[:half]), self.bulk(items[half:])
        for result in second.results:
            result.index += half
        return BulkResponse(
            results=first.results + second.results,
            created=first.created + second.created,
            updated=first.updated + second.updated,
            unchanged=first.unchanged + second.unchanged,
            deleted=first.deleted + second.deleted,
            failed=first.failed + second.failed,
        )

    def by_location(self, urls: list[str]) -> dict[str, list[Asset]]:
        """The live assets the catalogue holds at each of ``urls`` (crawled ones first)."""
        from cairn.models import AssetsByLocation

        found: dict[str, list[Asset]] = {}
        for part in _url_chunks(urls):
            response = self._call(
                partial(self._client.get, "/api/v1/assets/by-location", params={"url": part}),
                f"location lookup of {len(part)} URLs at {self.shown_url}",
            )
            found.update(AssetsByLocation.model_validate_json(response.content).assets)
        return found

    def asset(self, asset_id: str) -> dict[str, Any] | None:
        """The catalogue's document of ``asset_id``, deleted or not; None when it has none."""
        response = self._call(
            partial(self._client.get, f"/api/v1/assets/{quote(asset_id, safe='')}"),
            f"lookup of asset {asset_id!r} at {self.shown_url}",
            passes=(404,),
        )
        if response.status_code == 404:
            return None
        found: dict[str, Any] = orjson.loads(response.content)
        return found

    def edges(self, origin: CrawlerEdgeOrigin, upstreams: dict[str, list[str]]) -> EdgeReceipt:
        """Replaces the ``origin`` edges into each asset of ``upstreams`` with those listed."""
        from cairn.models import EdgeReceipt

        body = orjson.dumps({"origin": origin, "upstreams": upstreams})
        response = self._call(
            lambda: self._client.post("/api/v1/lineage/edges", content=body),
            f"push of the {origin} edges of {len(upstreams)} assets to {self.shown_url}",
        )
        return EdgeReceipt.model_validate_json(response.content)

    def _call(
        self, request: Callable[[], httpx.Response], what: str, passes: tuple[int, ...] = ()
    ) -> httpx.Response:
        """The response to ``request`` (retried); CatalogueUnreachable unless it is a 200 or
        one of ``passes``, which the caller handles."""
        try:
            response = _unbound(call_with_retries(request, attempts=self.attempts, what=what))
        except RetryableStatus as exc:
            raise CatalogueUnreachable(
                f"the catalogue at {self.shown_url} kept answering "
                f"HTTP {exc.response.status_code}: {_detail(exc.response)}"
            ) from exc
        except httpx.UnsupportedProtocol as exc:
            raise CatalogueUnreachable(
                f"the catalogue URL {self.shown_url!r} does not start with http:// or https://; "
                "give it as http://host:port (--catalogue or CAIRN_CATALOGUE_URL)"
            ) from exc
        except httpx.TransportError as exc:
            raise CatalogueUnreachable(
                f"cannot reach the catalogue at {self.shown_url} ({exc.__class__.__name__}: {exc});"
                " is it running? (cairn serve catalogue)"
            ) from exc
        if response.status_code in (401, 403):
            hint = key_hint("authorization" in self._client.headers, "the catalogue")
            raise CatalogueUnreachable(
                f"the catalogue at {self.shown_url} answered HTTP {response.status_code}: {hint}"
            )
        if response.status_code != 200 and response.status_code not in passes:
            raise CatalogueUnreachable(
                f"the catalogue answered HTTP {response.status_code}: {_detail(response)}"
            )
        return response

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> CataloguePusher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# URLs go in the query string, and servers refuse long request lines (uvicorn's h11 at 16 KB
# with the headers): lookups are split to stay well below that.
MAX_QUERY_CHARS = 8000


def _url_chunks(urls: list[str]) -> Iterator[list[str]]:
    part: list[str] = []
    size = 0
    for url in urls:
        cost = len(quote(url, safe="")) + 5  # "&url="
        if part and size + cost > MAX_QUERY_CHARS:
            yield part
            part, size = [], 0
        part.append(url)
        size += cost
    if part:
        yield part


def _too_big(item: dict[str, Any], size: int, detail: str) -> BulkResponse:
    """The catalogue's refusal of one asset over its body limit, as a failed item: the
    crawl goes on and reports it at its manifest."""
    from cairn.models import BulkItemResult, BulkResponse

    reason = (
        f"the asset is {size} bytes of JSON, more than the catalogue takes in one request "
        f"({detail.rstrip('.')}); shorten its schema or description, or raise the "
        "catalogue's CAIRN_MAX_BODY_BYTES"
    )
    refused = BulkItemResult(
        index=0, id=item.get("id"), name=item.get("name"), status="error", error=reason
    )
    return BulkResponse(results=[refused], failed=1)


def _unbound(response: httpx.Response) -> httpx.Response:
    """``response`` (read whole) without its stream: httpx binds the stream to the response
    and the response to it, a cycle that only the collector frees, and the crawl pauses the
    collector through the walk and assembly. Each bulk push's response then held its request
    body (2 MB per 1,000 assets) and its answer until the crawl ended: 12 MB of a 10,000
    manifest crawl's peak RSS."""
    response.stream = httpx.ByteStream(b"")
    return response


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text[:200]))
    except ValueError:
        return response.text[:200]

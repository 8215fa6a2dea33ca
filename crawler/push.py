"""Pushes crawled assets to the catalogue's bulk endpoint over HTTP, and asks which catalogue
it is talking to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson

from cairn import __version__
from cairn.models import BulkResponse, CatalogueInstance
from cairn.retry import RetryableStatus, call_with_retries


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
    ):
        headers = {"user-agent": f"cairn-crawler/{__version__}", "content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self._client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def instance_id(self) -> str:
        """The catalogue's instance id: what the crawler remembers is kept per catalogue."""
        response = self._call(
            lambda: self._client.get("/api/v1/instance"),
            f"instance lookup at {self.base_url}",
        )
        try:
            return CatalogueInstance.model_validate_json(response.content).instance_id
        except ValueError as exc:
            raise CatalogueUnreachable(
                f"{self.base_url} answered GET /api/v1/instance with something that is not a "
                "Cairn catalogue's instance id; is the URL right?"
            ) from exc

    def bulk(self, items: list[dict[str, Any]]) -> BulkResponse:
        body = orjson.dumps(items)
        response = self._call(
            lambda: self._client.post("/api/v1/assets/bulk", content=body),
            f"push of {len(items)} assets to {self.base_url}",
        )
        return BulkResponse.model_validate_json(response.content)

    def _call(self, request: Callable[[], httpx.Response], what: str) -> httpx.Response:
        """The response to ``request`` (retried); CatalogueUnreachable unless it is a 200."""
        try:
            response = call_with_retries(request, attempts=self.attempts, what=what)
        except RetryableStatus as exc:
            raise CatalogueUnreachable(
                f"the catalogue at {self.base_url} kept answering "
                f"HTTP {exc.response.status_code}: {_detail(exc.response)}"
            ) from exc
        except httpx.TransportError as exc:
            raise CatalogueUnreachable(
                f"cannot reach the catalogue at {self.base_url} ({exc.__class__.__name__}: {exc});"
                " is it running? (cairn serve catalogue)"
            ) from exc
        if response.status_code in (401, 403):
            raise CatalogueUnreachable(
                f"the catalogue refused the crawler's key (HTTP {response.status_code}): "
                "set CAIRN_API_KEY to one of the catalogue's CAIRN_API_KEYS"
            )
        if response.status_code != 200:
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


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text[:200]))
    except ValueError:
        return response.text[:200]

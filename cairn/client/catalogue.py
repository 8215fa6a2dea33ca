"""Typed clients of the catalogue service (sync and async)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from pydantic import TypeAdapter

from cairn.client._http import (
    AsyncServiceClient,
    AsyncTransport,
    Call,
    SyncTransport,
    client_limits,
    headers,
)
from cairn.errors import InvalidRequest
from cairn.models import (
    Asset,
    AssetWrite,
    BulkResponse,
    ColumnLineage,
    JobRun,
    Lineage,
    LineageReceipt,
    SearchPage,
    TagCount,
    composed,
    label_text,
    name_id,
)
from cairn.segments import path_segment
from cairn.settings import get_settings

_TAGS = TypeAdapter(list[TagCount])
_RUNS = TypeAdapter(list[JobRun])


def _asset(response: httpx.Response) -> Asset:
    return Asset.model_validate_json(response.content)


def _put_id(given: Any, name: Any) -> str:
    """Where an asset without an id in the call goes: its own id, else the one the catalogue
    gives its name (``AssetWrite.ensure_id``: the name stripped, accents composed)."""
    if isinstance(given, str) and given:
        return given
    if isinstance(name, str) and name.strip():
        return name_id(composed(name.strip()))
    raise InvalidRequest(
        "Give the asset a name (or an id): it says where the asset is put.",
        errors=[{"field": "name", "message": "name is required"}],
    )


class CatalogueCalls:
    """The catalogue's API as ``Call``s; both clients send these."""

    @staticmethod
    def put_asset(asset: AssetWrite | dict[str, Any], asset_id: str | None) -> Call[Asset]:
        if isinstance(asset, AssetWrite):
            asset_id = asset_id or asset.ensure_id()
            body = asset.model_dump(mode="json", by_alias=True, exclude={"id"})
        else:
            # Sent as given, not checked against this process's settings: the catalogue
            # knows its own types (its CAIRN_EXTRA_TYPES) and limits, and refuses with its
            # error class and detail, as it does a bulk item.
            body = dict(asset)
            given = body.get("id")
            if isinstance(given, str) and given:
                del body["id"]  # it goes in the URL
            asset_id = asset_id or _put_id(given, body.get("name"))
        return Call(
            "PUT", f"/api/v1/assets/{path_segment(asset_id)}", _asset, json=body, ok=(200, 201)
        )

    @staticmethod
    def bulk(items: list[AssetWrite | dict[str, Any]]) -> Call[BulkResponse]:
        body = [
            i.model_dump(mode="json", by_alias=True) if isinstance(i, AssetWrite) else i
            for i in items
        ]
        return Call(
            "POST",
            "/api/v1/assets/bulk",
            lambda r: BulkResponse.model_validate_json(r.content),
            json=body,
            # Every attempt carries the key: one sent again gets the first one's answer.
            headers={"idempotency-key": uuid.uuid4().hex},
            idempotent=True,  # an upsert by id (or by name): sent again, it changes nothing
        )

    @staticmethod
    def get_asset(asset_id: str) -> Call[Asset]:
        return Call("GET", f"/api/v1/assets/{path_segment(asset_id)}", _asset)

    @staticmethod
    def get_asset_by_name(name: str) -> Call[Asset]:
        return Call("GET", f"/api/v1/assets/by-name/{path_segment(name)}", _asset)

    @staticmethod
    def delete_asset(asset_id: str) -> Call[Asset]:
        return Call("DELETE", f"/api/v1/assets/{path_segment(asset_id)}", _asset)

    @staticmethod
    def search(
        q: str | None,
        name: str | None,
        tags: list[str] | None,
        type: str | None,
        labels: dict[str, Any] | None,
        owner: str | None,
        include_deleted: bool,
        limit: int,
        cursor: str | None,
        drifted: bool | None = None,
    ) -> Call[SearchPage]:
        params: list[tuple[str, str]] = [("limit", str(limit))]
        for key, value in (("q", q), ("name", name), ("type", type), ("owner", owner)):
            if value:
                params.append((key, value))
        params += [("tag", t) for t in tags or ()]
        params += [("label", f"{k}:{label_text(v)}") for k, v in (labels or {}).items()]
        if include_deleted:
            params.append(("include_deleted", "true"))
        if cursor:
            params.append(("cursor", cursor))
        if drifted is not None:
            params.append(("drifted", "true" if drifted else "false"))
        return Call(
            "GET",
            "/api/v1/assets",
            lambda r: SearchPage.model_validate_json(r.content),
            params=params,
        )

    @staticmethod
    def lineage(asset_id: str, direction: str, depth: int) -> Call[Lineage]:
        return Call(
            "GET",
            f"/api/v1/assets/{path_segment(asset_id)}/lineage",
            lambda r: Lineage.model_validate_json(r.content),
            params=[("direction", direction), ("depth", str(depth))],
        )

    @staticmethod
    def post_lineage(event: dict[str, Any]) -> Call[LineageReceipt]:
        return Call(
            "POST",
            "/api/v1/lineage",
            lambda r: LineageReceipt.model_validate_json(r.content),
            json=event,
            ok=(200, 201),
            idempotent=True,  # an event sent again is answered "duplicate" and lands once
        )

    @staticmethod
    def runs(asset_id: str, limit: int) -> Call[list[JobRun]]:
        return Call(
            "GET",
            f"/api/v1/assets/{path_segment(asset_id)}/runs",
            lambda r: _RUNS.validate_json(r.content),
            params=[("limit", str(limit))],
        )

    @staticmethod
    def columns(asset_id: str) -> Call[ColumnLineage]:
        return Call(
            "GET",
            f"/api/v1/assets/{path_segment(asset_id)}/columns",
            lambda r: ColumnLineage.model_validate_json(r.content),
        )

    @staticmethod
    def tags(limit: int) -> Call[list[TagCount]]:
        return Call(
            "GET", "/api/v1/tags", lambda r: _TAGS.validate_json(r.content), [("limit", str(limit))]
        )

    @staticmethod
    def types() -> Call[dict[str, int]]:
        return Call("GET", "/api/v1/types", lambda r: r.json())


class CatalogueClient:
    """``with CatalogueClient() as cat: cat.search(q="churn").items``"""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        **httpx_options: Any,
    ):
        settings = get_settings()
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        timeout, retries = client_limits(settings, timeout, retries)
        self._t = SyncTransport(
            base_url or settings.catalogue_url,
            headers(key, "catalogue"),
            timeout,
            retries=retries,
            **httpx_options,
        )

    def put_asset(self, asset: AssetWrite | dict[str, Any], asset_id: str | None = None) -> Asset:
        return self._t.send(CatalogueCalls.put_asset(asset, asset_id))

    def bulk(self, items: list[AssetWrite | dict[str, Any]]) -> BulkResponse:
        return self._t.send(CatalogueCalls.bulk(items))

    def get_asset(self, asset_id: str) -> Asset:
        return self._t.send(CatalogueCalls.get_asset(asset_id))

    def get_asset_by_name(self, name: str) -> Asset:
        return self._t.send(CatalogueCalls.get_asset_by_name(name))

    def delete_asset(self, asset_id: str) -> Asset:
        return self._t.send(CatalogueCalls.delete_asset(asset_id))

    def search(
        self,
        q: str | None = None,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        type: str | None = None,
        labels: dict[str, Any] | None = None,
        owner: str | None = None,
        include_deleted: bool = False,
        limit: int = 20,
        cursor: str | None = None,
        drifted: bool | None = None,
    ) -> SearchPage:
        return self._t.send(
            CatalogueCalls.search(
                q, name, tags, type, labels, owner, include_deleted, limit, cursor, drifted
            )
        )

    def lineage(self, asset_id: str, direction: str = "both", depth: int = 3) -> Lineage:
        return self._t.send(CatalogueCalls.lineage(asset_id, direction, depth))

    def post_lineage(self, event: dict[str, Any]) -> LineageReceipt:
        """Sends one OpenLineage event (a RunEvent, JobEvent or DatasetEvent as JSON)."""
        return self._t.send(CatalogueCalls.post_lineage(event))

    def runs(self, asset_id: str, limit: int = 50) -> list[JobRun]:
        return self._t.send(CatalogueCalls.runs(asset_id, limit))

    def columns(self, asset_id: str) -> ColumnLineage:
        return self._t.send(CatalogueCalls.columns(asset_id))

    def tags(self, limit: int = 1000) -> list[TagCount]:
        return self._t.send(CatalogueCalls.tags(limit))

    def types(self) -> dict[str, int]:
        return self._t.send(CatalogueCalls.types())

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> CatalogueClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCatalogueClient(AsyncServiceClient):
    """``async with AsyncCatalogueClient() as cat: (await cat.search(q="churn")).items``"""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        retries: int | None = None,
        **httpx_options: Any,
    ):
        settings = get_settings()
        key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
        timeout, retries = client_limits(settings, timeout, retries)
        self._t = AsyncTransport(
            base_url or settings.catalogue_url,
            headers(key, "catalogue"),
            timeout,
            connect_timeout=connect_timeout,
            retries=retries,
            **httpx_options,
        )

    async def put_asset(
        self, asset: AssetWrite | dict[str, Any], asset_id: str | None = None
    ) -> Asset:
        return await self._t.send(CatalogueCalls.put_asset(asset, asset_id))

    async def bulk(self, items: list[AssetWrite | dict[str, Any]]) -> BulkResponse:
        return await self._t.send(CatalogueCalls.bulk(items))

    async def get_asset(self, asset_id: str) -> Asset:
        return await self._t.send(CatalogueCalls.get_asset(asset_id))

    async def get_asset_by_name(self, name: str) -> Asset:
        return await self._t.send(CatalogueCalls.get_asset_by_name(name))

    async def delete_asset(self, asset_id: str) -> Asset:
        return await self._t.send(CatalogueCalls.delete_asset(asset_id))

    async def search(
        self,
        q: str | None = None,
        *,
        name: str | None = None,
        tags: list[str] | None = None,
        type: str | None = None,
        labels: dict[str, Any] | None = None,
        owner: str | None = None,
        include_deleted: bool = False,
        limit: int = 20,
        cursor: str | None = None,
        drifted: bool | None = None,
    ) -> SearchPage:
        return await self._t.send(
            CatalogueCalls.search(
                q, name, tags, type, labels, owner, include_deleted, limit, cursor, drifted
            )
        )

    async def lineage(self, asset_id: str, direction: str = "both", depth: int = 3) -> Lineage:
        return await self._t.send(CatalogueCalls.lineage(asset_id, direction, depth))

    async def post_lineage(self, event: dict[str, Any]) -> LineageReceipt:
        return await self._t.send(CatalogueCalls.post_lineage(event))

    async def runs(self, asset_id: str, limit: int = 50) -> list[JobRun]:
        return await self._t.send(CatalogueCalls.runs(asset_id, limit))

    async def columns(self, asset_id: str) -> ColumnLineage:
        return await self._t.send(CatalogueCalls.columns(asset_id))

    async def tags(self, limit: int = 1000) -> list[TagCount]:
        return await self._t.send(CatalogueCalls.tags(limit))

    async def types(self) -> dict[str, int]:
        return await self._t.send(CatalogueCalls.types())

    async def aclose(self) -> None:
        await self._t.aclose()

    async def __aenter__(self) -> AsyncCatalogueClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

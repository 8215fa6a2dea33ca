"""Metric-store calls of the feature-store clients: profiles, drift, history, checks.

Kept apart from ``featurestore.py`` and mixed into both clients, which send them through
their own transport (``self._t``).
"""

from __future__ import annotations

from typing import Any

import orjson

from cairn.client._http import Call
from cairn.segments import path_segment


def _base(name: str) -> str:
    return f"/api/v1/featuresets/{path_segment(name)}"


def _json(response: Any) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(response.content)
    return value


class MetricCalls:
    @staticmethod
    def profile(name: str, version: int) -> Call[dict[str, Any]]:
        # 202: queued or being computed; the body says so ("status": "pending").
        return Call("GET", f"{_base(name)}/versions/{int(version)}/profile", _json, ok=(200, 202))

    @staticmethod
    def drift(name: str, version: int, against: int | None) -> Call[dict[str, Any]]:
        params = [("against", str(int(against)))] if against is not None else []
        path = f"{_base(name)}/versions/{int(version)}/drift"
        return Call("GET", path, _json, params, ok=(200, 202))

    @staticmethod
    def history(name: str, limit: int) -> Call[dict[str, Any]]:
        return Call("GET", f"{_base(name)}/metrics", _json, [("limit", str(limit))])

    @staticmethod
    def put_checks(name: str, checks: list[dict[str, Any]]) -> Call[dict[str, Any]]:
        return Call("PUT", f"{_base(name)}/checks", _json, json={"checks": checks})


class AssetMetricCalls:
    @staticmethod
    def profile(asset_id: str, version: int | None) -> Call[dict[str, Any]]:
        params = [("version", str(int(version)))] if version is not None else []
        return Call("GET", f"{_asset(asset_id)}/profile", _json, params)

    @staticmethod
    def drift(asset_id: str, version: int | None, against: int | None) -> Call[dict[str, Any]]:
        params = [("version", str(int(version)))] if version is not None else []
        params += [("against", str(int(against)))] if against is not None else []
        return Call("GET", f"{_asset(asset_id)}/drift", _json, params)

    @staticmethod
    def history(asset_id: str, limit: int) -> Call[dict[str, Any]]:
        return Call("GET", f"{_asset(asset_id)}/history", _json, [("limit", str(limit))])

    @staticmethod
    def metric_sets(name: str, limit: int) -> Call[dict[str, Any]]:
        path = f"/api/v1/metricstore/name/{path_segment(name)}"
        return Call("GET", path, _json, [("limit", str(limit))])


def _asset(asset_id: str) -> str:
    return f"/api/v1/metrics/assets/{path_segment(asset_id)}"


class MetricsMixin:
    _t: Any

    def profile(self, name: str, version: int) -> dict[str, Any]:
        """A version's column profile and check results (named values: a one-row table;
        ``status`` is "pending" until it is computed)."""
        result: dict[str, Any] = self._t.send(MetricCalls.profile(name, version))
        return result

    def drift(self, name: str, version: int, against: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._t.send(MetricCalls.drift(name, version, against))
        return result

    def metrics_history(self, name: str, limit: int = 50) -> dict[str, Any]:
        result: dict[str, Any] = self._t.send(MetricCalls.history(name, limit))
        return result

    def put_checks(self, name: str, checks: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = self._t.send(MetricCalls.put_checks(name, checks))
        return result


class AsyncMetricsMixin:
    _t: Any

    async def profile(self, name: str, version: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.send(MetricCalls.profile(name, version))
        return result

    async def drift(self, name: str, version: int, against: int | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.send(MetricCalls.drift(name, version, against))
        return result

    async def metrics_history(self, name: str, limit: int = 50) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.send(MetricCalls.history(name, limit))
        return result

    async def asset_profile(self, asset_id: str, version: int | None = None) -> dict[str, Any]:
        """A crawled asset's profile (the newest unless ``version``)."""
        result: dict[str, Any] = await self._t.send(AssetMetricCalls.profile(asset_id, version))
        return result

    async def asset_drift(
        self, asset_id: str, version: int | None = None, against: int | None = None
    ) -> dict[str, Any]:
        call = AssetMetricCalls.drift(asset_id, version, against)
        result: dict[str, Any] = await self._t.send(call)
        return result

    async def asset_metrics_history(self, asset_id: str, limit: int = 50) -> dict[str, Any]:
        result: dict[str, Any] = await self._t.send(AssetMetricCalls.history(asset_id, limit))
        return result

    async def metric_sets(self, name: str, limit: int = 10) -> dict[str, Any]:
        """Metric sets sent under ``name`` (Mastro's metric store), newest first."""
        result: dict[str, Any] = await self._t.send(AssetMetricCalls.metric_sets(name, limit))
        return result

"""Typed dependencies and query-string parsing shared by the feature store's routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import QueryParams

from cairn.errors import invalid_param as bad_param
from cairn.errors import unknown_param
from cairn.models import INT64_MAX, parse_moment
from cairn.web import KeyChecker, read_guard, write_guard
from featurestore_service.service import FeatureStore


async def get_featurestore(request: Request) -> FeatureStore:
    # async: a plain def dependency would cost a threadpool hop on every request
    return request.app.state.featurestore


FeatureStoreDep = Annotated[FeatureStore, Depends(get_featurestore)]
WriteGuard = Depends(write_guard)
ReadGuard = Depends(read_guard)


def check_read_key(request: Request) -> None:
    """``read_guard`` inline, for routes that skip FastAPI's dependency machinery."""
    keys: KeyChecker = request.app.state.keys
    if keys.read_needs_key:
        keys.check(request.headers.get("authorization"))


def int_param(
    params: QueryParams, key: str, default: int | None, low: int, high: int = INT64_MAX
) -> int | None:
    """``key`` as an integer from ``low`` to ``high``; by default the stores' 64-bit range,
    since a larger number (a version, an offset) reaches SQLite or MongoDB as an error."""
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_param(key, f"{raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise bad_param(key, f"must be between {low} and {high}")
    return value


def only_params(params: QueryParams, taken: tuple[str, ...]) -> None:
    for key in params:
        if key not in taken:
            raise unknown_param(key, taken)


def time_param(params: QueryParams, key: str) -> datetime | None:
    raw = params.get(key)
    if not raw:
        return None
    try:
        # A "+" in an unencoded query string arrives as a space.
        return parse_moment(raw.strip().replace(" ", "+"))
    except ValueError as exc:
        raise bad_param(key, f"{raw!r} {exc}") from None


def list_param(params: QueryParams, key: str) -> list[str]:
    """``columns=a,b`` and ``columns=a&columns=b`` alike."""
    return [item.strip() for raw in params.getlist(key) for item in raw.split(",") if item.strip()]

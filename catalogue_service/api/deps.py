"""Typed dependencies shared by the catalogue's routes."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Depends, Request

from cairn.errors import BadRequest
from cairn.web import read_guard, write_guard
from catalogue_service.service import Catalogue


async def get_catalogue(request: Request) -> Catalogue:
    # async: a plain def dependency would cost a threadpool hop on every request
    return request.app.state.catalogue


CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
WriteGuard = Depends(write_guard)
ReadGuard = Depends(read_guard)


async def json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}.") from exc


def parse_labels(values: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        key, sep, val = value.partition(":")
        if not sep or not key:
            raise BadRequest(
                f"label={value!r} must look like key:value, for example label=domain:retail."
            )
        pairs.append((key, val))
    return pairs

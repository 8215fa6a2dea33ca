"""Typed dependencies shared by the catalogue's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from cairn.web import json_body, parse_labels, read_guard, write_guard
from catalogue_service.service import Catalogue


async def get_catalogue(request: Request) -> Catalogue:
    # async: a plain def dependency would cost a threadpool hop on every request
    return request.app.state.catalogue


CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]
WriteGuard = Depends(write_guard)
ReadGuard = Depends(read_guard)

# Shared with the feature store (cairn.web); re-exported for the catalogue's routes.
__all__ = ["CatalogueDep", "ReadGuard", "WriteGuard", "get_catalogue", "json_body", "parse_labels"]

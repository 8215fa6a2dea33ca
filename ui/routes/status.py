"""The status page: both services' health, checked live."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ui.backend import ApiError, Backend, Service, ServiceDown
from ui.format import number
from ui.render import render
from ui.visitor import ReaderDep

router = APIRouter(include_in_schema=False)


async def _facts(
    service: Service, count: Callable[[], Awaitable[dict[str, Any]]], what: str
) -> list[tuple[str, str]]:
    if not service.ok:
        return []
    try:
        body = await count()
    except (ServiceDown, ApiError):
        return []
    total = body.get("total")
    return [(what, number(total))] if isinstance(total, int) else []


@router.get("/status", response_class=HTMLResponse)
async def status(request: Request, api: ReaderDep) -> HTMLResponse:
    backend: Backend = request.app.state.backend
    await backend.probe_all()
    facts = await asyncio.gather(
        _facts(backend.catalogue, lambda: api.search(limit=1), "Assets"),
        _facts(backend.featurestore, lambda: api.featuresets(limit=1), "Feature sets"),
    )
    services = [{"health": s, "facts": f} for s, f in zip(backend.services, facts, strict=True)]
    down = any(not s.ok for s in backend.services)
    return render(request, "status.html", status_code=503 if down else 200, services=services)

"""The status page: both services' health, checked live."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ui.backend import Backend, BackendError, ServiceClient
from ui.format import number
from ui.render import render

router = APIRouter(include_in_schema=False)


async def _facts(service: ServiceClient, path: str, what: str) -> list[tuple[str, str]]:
    if not service.health.ok:
        return []
    try:
        body: Any = await service.get_json(path, {"limit": "1", "facets": "false"})
    except BackendError:
        return []
    total = body.get("total") if isinstance(body, dict) else None
    return [(what, number(total))] if isinstance(total, int) else []


@router.get("/status", response_class=HTMLResponse)
async def status(request: Request) -> HTMLResponse:
    backend: Backend = request.app.state.backend
    await backend.probe_all()
    facts = await asyncio.gather(
        _facts(backend.catalogue, "/api/v1/assets", "Assets"),
        _facts(backend.featurestore, "/api/v1/featuresets", "Feature sets"),
    )
    services = [
        {"health": s.health, "facts": f} for s, f in zip(backend.services, facts, strict=True)
    ]
    down = any(not s.health.ok for s in backend.services)
    return render(request, "status.html", status_code=503 if down else 200, services=services)

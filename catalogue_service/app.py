"""The catalogue service's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from cairn.mastro import include_mastro
from cairn.models import write_types
from cairn.settings import Settings, get_settings
from cairn.web import CairnApp, build_app
from catalogue_service.api.fast_search import PATH as SEARCH_PATH
from catalogue_service.api.fast_search import SearchFastPath
from catalogue_service.api.routes import assets, instance, lineage, mastro
from catalogue_service.backends import create_store
from catalogue_service.replays import RecentAnswers
from catalogue_service.service import Catalogue


class WriteTypes:
    """Binds the asset types of the app's Settings for each request (``cairn.models.write_types``),
    so the write models check a type against those, not against the process's environment."""

    def __init__(self, app: ASGIApp, types: frozenset[str]) -> None:
        self.app = app
        self.types = types

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with write_types(self.types):
            await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> CairnApp:
    settings = settings or get_settings()
    store = create_store(settings)
    catalogue = Catalogue(store, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        try:
            yield
        finally:
            await store.close()

    app = build_app(
        title="Cairn catalogue",
        service="catalogue",
        settings=settings,
        ready=store.ping,
        lifespan=lifespan,
    )
    app.state.catalogue = catalogue
    app.state.replays = RecentAnswers()
    app.add_middleware(WriteTypes, types=settings.asset_types)
    # Mastro's routes first: "/assets/" (list) must not be taken for "/assets/{id}".
    include_mastro(app, mastro.router, settings, "asset")
    app.include_router(assets.router)
    app.include_router(lineage.router)
    app.include_router(instance.router)
    # Answered in front of the middleware stack; what it passes on goes through the stack.
    app.front[SEARCH_PATH] = SearchFastPath(app, catalogue)
    return app

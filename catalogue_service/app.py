"""The catalogue service's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cairn.mastro import include_mastro
from cairn.settings import Settings, get_settings
from cairn.web import CairnApp, build_app
from catalogue_service.api.fast_search import PATH as SEARCH_PATH
from catalogue_service.api.fast_search import SearchFastPath
from catalogue_service.api.routes import assets, instance, lineage, mastro
from catalogue_service.backends import create_store
from catalogue_service.service import Catalogue


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
    # Mastro's routes first: "/assets/" (list) must not be taken for "/assets/{id}".
    include_mastro(app, mastro.router, settings, "asset")
    app.include_router(assets.router)
    app.include_router(lineage.router)
    app.include_router(instance.router)
    # Answered in front of the middleware stack; what it passes on goes through the stack.
    app.front[SEARCH_PATH] = SearchFastPath(app, catalogue)
    return app

"""The catalogue service's FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware

from cairn.mastro import include_mastro
from cairn.settings import Settings, get_settings
from cairn.web import build_app
from catalogue_service.api.fast_search import SearchFastPath
from catalogue_service.api.routes import assets, instance, lineage, mastro
from catalogue_service.backends import create_store
from catalogue_service.service import Catalogue


def create_app(settings: Settings | None = None) -> FastAPI:
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
    # Innermost of the shared middlewares: metrics, the body limit and CORS still apply.
    app.user_middleware.append(
        Middleware(
            SearchFastPath,
            catalogue=catalogue,
            keys=app.state.keys,
            route=assets.search_route(),
        )
    )
    return app

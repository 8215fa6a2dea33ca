"""The feature store service's FastAPI application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from prometheus_client import Gauge

from cairn.mastro import include_mastro
from cairn.settings import Settings, get_settings
from cairn.tasks import stop
from cairn.web import build_app
from featurestore_service.api.routes import featuresets, historical, mastro, online
from featurestore_service.api.routes import metrics as metric_routes
from featurestore_service.backends import create_store
from featurestore_service.blobstore import TableBlobs
from featurestore_service.blobstore.tables import sweep_forever
from featurestore_service.historical import HistoricalFeatures
from featurestore_service.metrics.skew import SkewSampler
from featurestore_service.metrics.store import create_metric_store
from featurestore_service.metrics.worker import ProfileWorker
from featurestore_service.online import create_online_store
from featurestore_service.online.materialize import Materializer
from featurestore_service.online.serving import OnlineService
from featurestore_service.outbox import CatalogueRegistrar
from featurestore_service.service import FeatureStore
from featurestore_service.table_limits import TableLimits
from featurestore_service.tables import DecodeSlots, use_returning_pool


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    use_returning_pool()
    store = create_store(settings)
    blobs = TableBlobs.from_settings(
        settings,
        TableLimits.from_settings(settings),
        DecodeSlots(settings.table_decode_concurrency),
    )
    service = FeatureStore(store, blobs, settings)
    registrar = CatalogueRegistrar(service, settings)
    service.on_write = registrar.notify
    online_store = create_online_store(settings)
    materializer = Materializer(service, online_store)
    service.on_change = materializer.notify
    metric_store = create_metric_store(settings)
    profiler = ProfileWorker(service, metric_store, settings)
    service.before_table = profiler.check_before_write
    service.before_values = profiler.check_values
    service.after_commit = profiler.keep_checks
    service.asset_tags = profiler.catalogue_tags
    profiler.on_flags = registrar.register_again
    if settings.metrics_profiling:
        service.on_version = profiler.notify

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.open()
        await anyio.to_thread.run_sync(blobs.open)
        await online_store.open()
        await metric_store.open()
        delivery = asyncio.create_task(registrar.run(), name="catalogue-registration")
        materializing = asyncio.create_task(materializer.run(), name="materialization")
        sweeping = asyncio.create_task(
            sweep_forever(
                blobs,
                store.named_blobs,
                settings.blobs_sweep_grace,
                settings.blobs_sweep_interval,
            ),
            name="blob-sweeper",
        )
        tasks = [delivery, sweeping]
        if settings.metrics_profiling:
            tasks.append(asyncio.create_task(profiler.run(), name="profiling"))
        try:
            yield
        finally:
            for task in [materializing, *tasks]:
                await stop(task)
            await metric_store.close()
            await online_store.close()
            await store.close()
            await anyio.to_thread.run_sync(blobs.close)

    app = build_app(
        title="Cairn feature store",
        service="featurestore",
        settings=settings,
        ready=store.ping,
        lifespan=lifespan,
        # Parquet uploads (POST /featuresets/{name}/versions) get the upload cap and entity
        # frames theirs; every other body, the feature sets' JSON routes included, keeps the
        # 16 MiB cap. All are enforced while the body streams in.
        body_limits={
            r"/api/v1/featuresets/[^/]+/versions": settings.max_upload_bytes,
            r"/api/v1/historical-features": settings.max_entity_frame_bytes,
        },
    )
    app.state.featurestore = service
    app.state.registrar = registrar
    app.state.materializer = materializer
    app.state.online = OnlineService(
        online_store, settings.online_max_entities, version_of=service.get
    )
    app.state.historical = HistoricalFeatures(
        service, settings.historical_cache_bytes, settings.table_max_row_group_bytes
    )
    app.state.metric_store = metric_store
    app.state.profile_worker = profiler
    # Online serving hands a fraction of its responses to app.state.skew.observe(name, rows).
    app.state.skew = SkewSampler(settings.metrics_skew_sample_rate, settings.metrics_skew_rows)
    Gauge(
        "cairn_featurestore_outbox_pending",
        "Feature sets waiting to be registered in the catalogue",
        registry=app.state.metrics_registry,
    ).set_function(lambda: registrar.pending)
    include_mastro(app, mastro.router, settings, "featureset", "metricset")
    include_mastro(app, metric_routes.metricstore_router, settings)
    if settings.mastro_root_routes:
        app.include_router(mastro.client_router)
    app.include_router(metric_routes.router)
    app.include_router(featuresets.router)
    app.include_router(online.router)
    app.include_router(historical.router)
    app.router.routes[0:0] = featuresets.FAST_ROUTES
    for path in online.ONLINE_PATHS:
        app.front[path] = online.OnlineFront(app, path)
    _build_routes_now(app)
    return app


def _build_routes_now(app: FastAPI) -> None:
    """Builds FastAPI's per-route state here rather than on the first request.

    Recent FastAPI versions build included routes lazily, when the first request is matched;
    two apps doing that at the same moment in one process (tests run several) can race in
    pydantic's schema building. Building while the app is created avoids that, and takes the
    cost off the first request. Versions without lazy routes have nothing to build.
    """
    pending = list(app.router.routes)
    while pending:
        build = getattr(pending.pop(), "effective_candidates", None)
        if callable(build):
            pending.extend(c for c in build() if hasattr(c, "effective_candidates"))

"""The FastAPI application factory: one app per settings, with its own index holder.

:func:`create_app` takes settings from its caller (tests, the demo); :func:`create_app_from_env`
is the uvicorn entry point (``uvicorn --factory api.factory:create_app_from_env``), which builds
the app from ``RECSYS_*`` environment variables: that is how ``recsys serve --workers N`` hands
settings to each worker process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from api import metrics
from api.config import ApiOptions
from api.docs import install_docs
from api.errors import install_handlers
from api.index_holder import IndexHolder
from api.lane import FastLane
from api.recommend import SearchLimits
from api.routes import admin, health, media, similar, ui, videos
from api.upload import RequestLimitMiddleware, UploadQueue
from recsys.db import Database, open_database
from recsys.settings import Settings, load_settings
from serving import rerank

log = logging.getLogger(__name__)

DESCRIPTION = """Content-based video recommendations.

`GET /similar/{video_id}` returns the nearest videos in the served index (a FAISS index of one
model version's embeddings), with their catalog metadata. Errors carry a JSON body
(`error`, `detail`, and for videos their `status` and `reason`).
"""


#: FastAPI's own OpenTelemetry instrumentation, off: this service exports Prometheus metrics
#: (:mod:`api.metrics`) and configures no OpenTelemetry provider, yet with it on FastAPI asks
#: the global providers whether they are configured on every request (environment look-ups
#: included), ~5 % of a plain ``GET /similar`` in process.
NATIVE_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def _limit_search_threads(threads: int) -> None:
    """faiss' OpenMP threads and numpy's BLAS threads per worker: a request is small, and
    several threads per product on a busy machine spin against each other (a 200 x 200
    similarity matrix of a re-ranking took 14 ms on 2 threads under load, 0.25 ms on one)."""
    try:
        import faiss

        faiss.omp_set_num_threads(max(1, threads))
    except Exception as error:  # noqa: BLE001 - faiss is optional for the app object itself
        log.debug("cannot set faiss threads: %s", error)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(max(1, threads), user_api="blas")
    except ImportError as error:  # installed with scikit-learn; without it numpy decides
        log.debug("cannot set BLAS threads: %s", error)


def create_app(
    settings: Settings,
    *,
    options: ApiOptions | None = None,
    database: Database | None = None,
) -> FastAPI:
    """Build the app; the index is loaded (and watched) while the app's lifespan runs."""
    options = options or ApiOptions()
    settings.ensure_dirs()
    if database is None:
        database = open_database(settings)
    holder = IndexHolder(settings, database, options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _limit_search_threads(options.search_threads)
        rerank.prepare()  # the compiled MMR loop, before the first diversity request
        holder.reload()
        holder.start()
        try:
            yield
        finally:
            holder.stop()

    app = FastAPI(
        title="recsys: video recommendations",
        version="1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=NATIVE_TELEMETRY,
        docs_url=None,  # install_docs serves them with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.options = options
    app.state.database = database
    app.state.holder = holder
    app.state.upload_gate = threading.BoundedSemaphore(max(1, options.upload_concurrency))
    app.state.uploads = UploadQueue(options.upload_concurrency, options.upload_queue)
    app.state.search_limits = SearchLimits(options)

    app.router.routes.extend(similar.FIRST_ROUTES)  # before the docs and every router
    install_handlers(app)
    install_docs(app)
    app.add_middleware(
        RequestLimitMiddleware,
        max_body_bytes=options.max_body_bytes,
        upload_max_bytes=settings.upload_max_bytes,
        uploads=app.state.uploads,
        receive_timeout_s=options.upload_receive_timeout_s,
    )
    app.add_middleware(metrics.MetricsMiddleware)
    if options.fast_lane:  # added last: outside the others
        app.add_middleware(FastLane, route=similar.FIRST_ROUTES[0], answer=similar.similar_inline)
    app.include_router(similar.router)
    app.include_router(videos.router)
    app.include_router(health.router)
    app.include_router(media.router)
    if settings.admin_token:
        app.include_router(admin.router)
    app.include_router(ui.router)
    return app


def create_app_from_env() -> FastAPI:
    """App factory for uvicorn (settings from the environment)."""
    return create_app(load_settings())

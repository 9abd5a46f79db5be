"""Running the app under uvicorn (what ``recsys serve`` calls)."""

from __future__ import annotations

import os
import tempfile

from api.config import ApiOptions
from api.metrics import MULTIPROC_ENV
from recsys.db import open_database
from recsys.settings import Settings

WORKER_HEALTHCHECK_S = 120
# Workers are started from an import string; it names api.factory.create_app_from_env.
UVICORN_FACTORY = "api.factory:create_app_from_env"


def run(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "info",
    access_log: bool = False,
) -> None:
    """Serve until interrupted; each worker loads the index itself and watches the pointer.

    Workers are separate processes started from an import string, so the settings travel as
    ``RECSYS_*`` environment variables. Migrations run here once, before workers race for them.
    uvloop + httptools: the default asyncio loop with several workers adds ~40 ms per request
    (uvicorn issue #3149).
    """
    import uvicorn

    os.environ["RECSYS_HOME"] = str(settings.resolved_home)
    # Before any worker imports faiss: OpenMP threads are fixed at start-up, and many small
    # concurrent searches are fastest single-threaded (idle OpenMP threads spin on 2 cores).
    os.environ.setdefault("OMP_NUM_THREADS", str(ApiOptions().search_threads))
    if settings.database_url:
        os.environ["RECSYS_DATABASE_URL"] = settings.database_url
    if workers > 1 and not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="recsys-metrics-")
    settings.ensure_dirs()
    open_database(settings).dispose()
    uvicorn.run(
        UVICORN_FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        log_level=log_level,
        access_log=access_log,
        # uvicorn kills a worker whose health-check thread does not answer within this time; a
        # worker loading a large index holds the GIL inside faiss for seconds (more on a busy
        # machine), and the 5 s default turned start-up into an endless kill/restart loop.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )

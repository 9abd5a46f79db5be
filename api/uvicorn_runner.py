"""Running the app under uvicorn (what ``recsys serve`` calls)."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from uvicorn.supervisors import Multiprocess

from api.config import ApiOptions
from api.metrics import MULTIPROC_ENV, clear_multiprocess_dir, reap_dead_workers
from recsys.db import open_database
from recsys.settings import Settings

WORKER_HEALTHCHECK_S = 120
#: Set to "false" for the workers once :func:`migrate_once` has migrated (``Settings.db_migrate``).
MIGRATE_ENV = "RECSYS_DB_MIGRATE"
# Workers are started from an import string; it names api.factory.create_app_from_env.
UVICORN_FACTORY = "api.factory:create_app_from_env"
# uvicorn's httptools protocol writing each response in one send (api.transport)
HTTP_PROTOCOL = "api.transport:CoalescingHttpToolsProtocol"


def migrate_once(settings: Settings) -> None:
    """Migrate the database here, before any worker starts, and tell the workers not to.

    Each worker builds its app from ``RECSYS_*`` variables; with ``RECSYS_DB_MIGRATE=false`` it
    only checks the schema revision instead of N workers racing to run the same migrations.
    """
    open_database(settings).dispose()  # migrates unless the operator turned migrations off
    os.environ[MIGRATE_ENV] = "false"


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
    ``RECSYS_*`` environment variables. Migrations run here once (:func:`migrate_once`); the
    workers only check the schema.
    uvloop + httptools: the default asyncio loop with several workers adds ~40 ms per request
    (uvicorn issue #3149).
    """
    import uvicorn

    os.environ["RECSYS_HOME"] = str(settings.resolved_home)
    # Before any worker imports faiss: OpenMP threads are fixed at start-up, and many small
    # concurrent searches are fastest single-threaded (idle OpenMP threads spin on 2 cores).
    api_options = ApiOptions()
    os.environ.setdefault("OMP_NUM_THREADS", str(api_options.search_threads))
    if settings.database_url:
        os.environ["RECSYS_DATABASE_URL"] = settings.database_url
    if workers > 1:
        if os.environ.get(MULTIPROC_ENV):  # the operator's directory: last run's samples go
            clear_multiprocess_dir(os.environ[MULTIPROC_ENV])
        else:
            os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="recsys-metrics-")
    settings.ensure_dirs()
    migrate_once(settings)
    options: dict[str, Any] = dict(
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=HTTP_PROTOCOL if api_options.coalesce_writes else "httptools",
        log_level=log_level,
        access_log=access_log,
        # uvicorn kills a worker whose health-check thread does not answer within this time; a
        # worker loading a large index holds the GIL inside faiss for seconds (more on a busy
        # machine), and the 5 s default turned start-up into an endless kill/restart loop.
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )
    if workers > 1:
        supervise(uvicorn.Config(UVICORN_FACTORY, **options))
    else:
        uvicorn.run(UVICORN_FACTORY, **options)


def supervise(config: Any) -> None:
    """What ``uvicorn.run`` does for several workers, with :class:`ReapingMultiprocess` as the
    supervisor."""
    sock = config.bind_socket()
    try:
        ReapingMultiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        if config.uds and os.path.exists(config.uds):
            os.remove(config.uds)


class ReapingMultiprocess(Multiprocess):
    """uvicorn's supervisor; after each worker check, restart, scale-down and the final join,
    workers that are gone are marked dead for the Prometheus multiprocess collector
    (:func:`api.metrics.reap_dead_workers`)."""

    def reap(self) -> list[int]:
        return reap_dead_workers(p.pid for p in list(self.processes) if p.process.is_alive())

    def keep_subprocess_alive(self) -> None:
        super().keep_subprocess_alive()
        self.reap()

    def restart_all(self) -> None:
        super().restart_all()
        self.reap()

    def handle_ttou(self) -> None:
        super().handle_ttou()
        self.reap()

    def join_all(self) -> None:
        super().join_all()
        self.reap()

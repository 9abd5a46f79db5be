"""Liveness, readiness and Prometheus metrics.

Readiness says whether this worker should receive traffic. ``/similar/{video_id}`` is answered
from the loaded index and its in-memory catalog, so a worker with an index stays in the load
balancer when the database is down: it answers 200 ``degraded`` with the reason (catalog pages,
``/videos``, media and uploads fail until the database is back). Only a worker with nothing to
serve (no index loaded) answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.deps import DatabaseDep, HolderDep
from api.errors import is_admin, public_text
from api.schemas import Health, Readiness
from recsys.db import Database

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

DATABASE_PROBE_TIMEOUT_S = 2.0
"""How long readiness waits for ``SELECT 1``; a database slower than this counts as down."""


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


class DatabaseProbe:
    """``SELECT 1`` on threads of its own, one probe in flight per database: a hanging
    database holds one probe thread, never the shared pool that requests need."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._running: dict[int, tuple[Database, Future[tuple[str, str] | None]]] = {}

    def _submit(self, database: Database) -> Future[tuple[str, str] | None]:
        with self._lock:
            entry = self._running.get(id(database))
            if entry is not None and entry[0] is database and not entry[1].done():
                return entry[1]
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="db-probe")
            future = self._executor.submit(_database_problem, database)
            self._running[id(database)] = (database, future)
            return future

    async def problem(self, database: Database, timeout_s: float) -> tuple[str, str] | None:
        """None when the database answers in time, else (public reason, full reason)."""
        future = self._submit(database)
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), timeout_s)
        except TimeoutError:
            reason = f"database did not answer within {timeout_s:g}s"
            return reason, reason


PROBE = DatabaseProbe()


def _database_problem(database: Database) -> tuple[str, str] | None:
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure means "database unreachable"
        first_line = (str(error).splitlines() or [""])[0]
        return (
            f"database unreachable ({type(error).__name__})",
            f"database unreachable: {type(error).__name__}: {first_line}",
        )
    return None


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Nothing can be served, with the reason."}},
    summary="Whether to send traffic here: ready, degraded (200, with the reason) or unavailable",
)
async def readyz(request: Request, holder: HolderDep, database: DatabaseDep) -> Response:
    """``ready``: an index is loaded and the database answers. ``degraded`` (still 200): an
    index is loaded, so ``/similar`` is served from memory, but the database is unreachable or
    a newer published index failed to load. ``unavailable`` (503): no index is loaded."""
    state = holder.state
    last_error = holder.last_error
    db_problem = await PROBE.problem(database, DATABASE_PROBE_TIMEOUT_S)
    problems: list[str] = []
    if state is None:
        problems.append(holder.unavailable_reason())
    elif last_error:
        problems.append(f"still serving index {state.index_version}: {last_error}")
    if db_problem is not None:
        public, full = db_problem
        log.warning("readiness: %s", full)
        problems.append(full if is_admin(request.scope) else public)
        if state is not None:
            problems.append(
                "recommendations are answered from the loaded index; catalog pages, /videos, "
                "media and uploads fail until the database is back"
            )
    status: Literal["ready", "degraded", "unavailable"]
    if state is None:
        status = "unavailable"
    elif problems:
        status = "degraded"
    else:
        status = "ready"
    detail = "; ".join(problems) or None
    body = Readiness(
        status=status,
        database="unreachable" if db_problem is not None else "ok",
        index_version=state.index_version if state else None,
        model_version=state.model_version if state else None,
        vectors=state.ntotal if state else None,
        catalog=len(state.catalog) if state else None,
        detail=detail if is_admin(request.scope) else public_text(detail),
    )
    unavailable = state is None
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=503 if unavailable else 200,
        headers={"Retry-After": "1"} if unavailable else None,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus exposition."}},
)
async def prometheus_metrics() -> Response:
    payload, content_type = await run_in_threadpool(metrics.render)
    return Response(payload, media_type=content_type)

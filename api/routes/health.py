"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.deps import DatabaseDep, HolderDep
from api.schemas import Health, Readiness
from recsys.db import Database

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


def _database_problem(database: Database) -> str | None:
    try:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"
        return f"database unreachable: {type(error).__name__}: {str(error).splitlines()[0]}"
    return None


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready, with the reason."}},
    summary="An index is loaded and the database is reachable",
)
async def readyz(holder: HolderDep, database: DatabaseDep) -> Response:
    state = holder.state
    problems = []
    if state is None:
        problems.append(holder.unavailable_reason())
    db_problem = await run_in_threadpool(_database_problem, database)
    if db_problem:
        problems.append(db_problem)
    body = Readiness(
        status="ready" if not problems else "unavailable",
        index_version=state.index_version if state else None,
        model_version=state.model_version if state else None,
        vectors=state.ntotal if state else None,
        catalog=len(state.catalog) if state else None,
        detail="; ".join(problems) or None,
    )
    return JSONResponse(
        body.model_dump(mode="json"),
        status_code=503 if problems else 200,
        headers={"Retry-After": "1"} if problems else None,
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

"""``/admin``: operator actions behind a bearer token (mounted only when one is configured)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from starlette.concurrency import run_in_threadpool

from api.deps import HolderDep, SettingsDep
from api.errors import ServiceUnavailable, Unauthorized, token_matches
from api.routes import error_responses
from api.schemas import ReloadResult


async def require_admin(
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
) -> None:
    """Constant-time check of ``Authorization: Bearer <RECSYS_ADMIN_TOKEN>``."""
    if not token_matches(settings.admin_token, authorization):
        raise Unauthorized("a valid admin bearer token is required")


router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])


@router.post(
    "/reload",
    response_model=ReloadResult,
    responses=error_responses(401, 422, 503),
    summary="Load the published index now (this worker; others follow within the poll interval)",
)
async def reload(
    holder: HolderDep,
    force: Annotated[bool, Query(description="Reload even if the version is unchanged.")] = False,
) -> ReloadResult:
    outcome = await run_in_threadpool(lambda: holder.reload(force=force))
    state = outcome.state
    if state is None:
        raise ServiceUnavailable(outcome.detail or holder.unavailable_reason())
    return ReloadResult(
        changed=outcome.changed,
        index_version=state.index_version,
        model_version=state.model_version,
        vectors=state.ntotal,
        detail=outcome.detail,
    )

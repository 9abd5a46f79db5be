"""The web page: search the catalog, watch a video, browse its recommendations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool

from api import recommend
from api.deps import DatabaseDep, HolderDep
from api.errors import (
    ApiError,
    InvalidQuery,
    ServiceUnavailable,
    VideoNotFound,
    http_error,
    is_admin,
    public_text,
    request_id_of,
)
from api.schemas import MAX_K
from api.search import Filters, media_url, thumbnail_url
from recsys.db import Database
from recsys.db.models import Video
from recsys.ids import unroutable_reason

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
SEARCH_LIMIT = 48


def _card(video: Video) -> dict[str, object]:
    return {
        "video_id": video.video_id,
        "title": video.title or video.video_id,
        "category": video.category,
        "duration": video.duration_s,
        "status": video.status,
        "thumbnail_url": thumbnail_url(video.video_id) if video.thumbnail_path else None,
    }


def _search(database: Database, q: str) -> list[dict[str, object]]:
    """Exact id first, then titles containing the words (case-insensitive)."""
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    with database.session() as session:
        exact = session.scalars(select(Video).where(Video.video_id == q)).first()
        rows = session.scalars(
            select(Video)
            .where(Video.status != "deleted")
            .where(
                or_(
                    Video.title.ilike(pattern, escape="\\"),
                    Video.video_id.ilike(pattern, escape="\\"),
                )
            )
            .order_by(Video.title, Video.video_id)
            .limit(SEARCH_LIMIT)
        ).all()
    videos = ([exact] if exact is not None else []) + [v for v in rows if v is not exact]
    return [_card(v) for v in videos[:SEARCH_LIMIT]]


def _browse(database: Database) -> list[dict[str, object]]:
    with database.session() as session:
        rows = session.scalars(
            select(Video).where(Video.status != "deleted").order_by(Video.id).limit(SEARCH_LIMIT)
        ).all()
    return [_card(v) for v in rows]


def _public_detail(request: Request, error: ApiError) -> str:
    """What the page shows of an error: no server paths, URIs or database errors (unless the
    request carries the admin token)."""
    return error.detail if is_admin(request.scope) else public_text(error.detail) or ""


def _error_page(request: Request, error: ApiError) -> HTMLResponse:
    row = http_error(error)
    status_code = row.status_code if row is not None else 500
    request_id = request_id_of(request.scope)
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "status_code": status_code,
            "detail": _public_detail(request, error),
            "request_id": request_id,
            "title": f"{status_code}",
        },
        status_code=status_code,
        headers={"X-Request-ID": request_id},
    )


@router.get("/", response_class=HTMLResponse)
async def home(
    request: Request,
    database: DatabaseDep,
    holder: HolderDep,
    q: Annotated[str | None, Query(max_length=255)] = None,
) -> HTMLResponse:
    query = (q or "").strip().replace("\x00", "")
    try:
        if query:
            videos = await run_in_threadpool(_search, database, query)
        else:
            videos = await run_in_threadpool(_browse, database)
    except ApiError as error:
        return _error_page(request, error)
    state = holder.state
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "title": "Video recommendations",
            "q": query,
            "videos": videos,
            "index_version": state.index_version if state else None,
            "model_version": state.model_version if state else None,
            "vectors": state.ntotal if state else 0,
        },
    )


def _video_page_data(database: Database, video_id: str) -> dict[str, object]:
    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == video_id)).first()
        if video is None:
            raise VideoNotFound(f"video {video_id!r} is not in the catalog", video_id=video_id)
        return {
            "video": _card(video),
            "media_url": media_url(video.video_id),
            "tags": list(video.tags or []),
        }


@router.get("/ui/videos/{video_id:video}", response_class=HTMLResponse)
async def video_page(
    request: Request,
    video_id: str,
    database: DatabaseDep,
    holder: HolderDep,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 12,
) -> HTMLResponse:
    """The page of one video; ``video_id`` is the URL-encoded tail of the path (``/`` kept)."""
    try:
        reason = unroutable_reason(video_id)
        if reason is not None:
            raise InvalidQuery(f"video id {video_id!r} {reason}", video_id=video_id)
        data = await run_in_threadpool(_video_page_data, database, video_id)
    except ApiError as error:
        return _error_page(request, error)
    state = holder.state
    recommendations = None
    problem: ApiError | None = None
    if state is None:
        problem = ServiceUnavailable(holder.unavailable_reason())
    else:
        try:
            recommendations = await recommend.answer(
                database,
                state,
                recommend.by_video,
                video_id,
                k,
                Filters(),
                with_explain=bool(state.modalities),
            )
        except ApiError as error:
            problem = error
    return templates.TemplateResponse(
        request,
        "video.html",
        {
            "title": data["video"]["title"],  # type: ignore[index]
            **data,
            "recommendations": recommendations,
            "problem": _public_detail(request, problem) if problem is not None else None,
        },
    )

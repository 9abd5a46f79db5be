"""The web page: search the catalog, watch a video, browse its recommendations."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool

from api import recommend
from api.deps import DatabaseDep, HolderDep
from api.errors import (
    InvalidQuery,
    ServiceUnavailable,
    ServingError,
    VideoNotFound,
    http_error,
    is_admin,
    public_text,
    request_id_of,
)
from api.recommend import SearchLimits
from api.schemas import FilteredQuery
from recsys.db import Database
from recsys.db.models import Video
from recsys.ids import unroutable_reason
from recsys.tags import stored_tags
from serving.plan import MAX_K, ByVideo
from serving.present import media_url, thumbnail_url

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
SEARCH_LIMIT = 48


def _card(video: Video) -> dict[str, object]:
    return {
        "video_id": video.video_id,
        "title": video.title or video.video_id,
        "category": video.category,
        "channel": video.channel,
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


def _public_detail(request: Request, error: ServingError) -> str:
    """What the page shows of an error: no server paths, URIs or database errors (unless the
    request carries the admin token)."""
    return error.detail if is_admin(request.scope) else public_text(error.detail) or ""


def _error_page(request: Request, error: ServingError) -> HTMLResponse:
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
    except ServingError as error:
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
            "predicted": stored_tags(session, video).as_dict(),
        }


def _form_query(
    k: int, category: str | None, channel: str | None, diversity: float, cap: str | None
) -> FilteredQuery:
    """The page's form as ``/similar`` parameters; an empty field is a parameter not set."""
    try:
        return FilteredQuery.model_validate(
            {
                "k": k,
                "category": category or None,
                "channel": channel or None,
                "diversity": diversity,
                "max_per_channel": cap or None,
            }
        )
    except ValidationError as error:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors())
        raise InvalidQuery(f"invalid form: {problems}") from None


@router.get("/ui/videos/{video_id:video}", response_class=HTMLResponse)
async def video_page(
    request: Request,
    video_id: str,
    database: DatabaseDep,
    holder: HolderDep,
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 12,
    category: Annotated[str | None, Query(max_length=255)] = None,
    channel: Annotated[str | None, Query(max_length=255)] = None,
    diversity: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
    max_per_channel: Annotated[str | None, Query(max_length=8)] = None,
) -> HTMLResponse:
    """The page of one video; ``video_id`` is the URL-encoded tail of the path (``/`` kept).
    Its form narrows and re-ranks the recommendations with the parameters of ``/similar``
    (empty fields: not set)."""
    try:
        reason = unroutable_reason(video_id)
        if reason is not None:
            raise InvalidQuery(f"video id {video_id!r} {reason}", video_id=video_id)
        data = await run_in_threadpool(_video_page_data, database, video_id)
    except ServingError as error:
        return _error_page(request, error)
    state = holder.state
    recommendations = None
    problem: ServingError | None = None
    if state is None:
        problem = ServiceUnavailable(holder.unavailable_reason())
    else:
        try:
            params = _form_query(k, category, channel, diversity, max_per_channel)
            limits: SearchLimits = request.app.state.search_limits
            plan = replace(  # the page shows each result's matching moment
                recommend.plan_of(
                    ByVideo(video_id), params, limits, explain=bool(state.modalities)
                ),
                moments=True,
            )
            recommendations = await recommend.answer(database, state, plan, limits)
        except ServingError as error:
            problem = error
    return templates.TemplateResponse(
        request,
        "video.html",
        {
            "title": data["video"]["title"],  # type: ignore[index]
            **data,
            "recommendations": recommendations,
            "form": {
                "k": k,
                "category": category or "",
                "channel": channel or "",
                "diversity": diversity,
                "max_per_channel": max_per_channel or "",
            },
            "problem": _public_detail(request, problem) if problem is not None else None,
        },
    )

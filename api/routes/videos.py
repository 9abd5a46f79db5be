"""``/videos/{video_id}``: catalog metadata of one video and whether it is served (the id is the
URL-encoded tail of the path, ``/`` kept)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from sqlalchemy import select

from api.deps import HolderDep, SessionDep
from api.errors import VideoNotFound, is_admin, public_text
from api.routes import error_responses
from api.schemas import PredictedTagOut, VideoDetail, VideoIdPath, VideoTagsOut
from recsys.db.models import Video
from recsys.ids import VideoKey
from recsys.tags import stored_tags
from serving.present import media_url, thumbnail_url

router = APIRouter(tags=["videos"])


def as_utc(moment: datetime | None) -> datetime | None:
    """Timestamps are stored in UTC; SQLite hands them back without the offset."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _video(session: SessionDep, video_id: str) -> Video:
    video = session.scalars(select(Video).where(Video.video_id == video_id)).first()
    if video is None:
        raise VideoNotFound(f"video {video_id!r} is not in the catalog", video_id=video_id)
    return video


# Registered before /videos/{id}: an id is the rest of the path, so this one must match first.
@router.get(
    "/videos/{video_id:video}/tags",
    response_model=VideoTagsOut,
    responses=error_responses(404, 422, 503),
    summary="Human and predicted tags of one video, with the spans where each applies",
)
def get_video_tags(video_id: VideoIdPath, session: SessionDep) -> VideoTagsOut:
    return VideoTagsOut.model_validate(stored_tags(session, _video(session, video_id)).as_dict())


@router.get(
    "/videos/{video_id:video}",
    response_model=VideoDetail,
    responses=error_responses(404, 422, 503),
    summary="Catalog metadata of one video",
)
def get_video(
    request: Request, video_id: VideoIdPath, session: SessionDep, holder: HolderDep
) -> VideoDetail:
    video = _video(session, video_id)
    state = holder.state
    served = (
        state is not None
        and video.status not in ("deleted", "failed")
        and state.index.contains(VideoKey(video.id))
    )
    return VideoDetail(
        video_id=video.video_id,
        title=video.title,
        category=video.category,
        tags=list(video.tags or []),
        duration=video.duration_s,
        fps=video.fps,
        width=video.width,
        height=video.height,
        has_audio=video.has_audio,
        status=video.status,
        # Failure reasons may name server files; only an admin reads them as recorded.
        status_reason=(
            video.status_reason if is_admin(request.scope) else public_text(video.status_reason)
        ),
        thumbnail_url=thumbnail_url(video.video_id) if video.thumbnail_path else None,
        media_url=media_url(video.video_id),
        served=served,
        model_version=state.model_version if state is not None else None,
        index_version=state.index_version if state is not None else None,
        created_at=as_utc(video.created_at),
        updated_at=as_utc(video.updated_at),
        predicted_tags=[
            PredictedTagOut.model_validate(p) for p in stored_tags(session, video).predicted
        ],
    )

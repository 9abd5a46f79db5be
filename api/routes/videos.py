"""``/videos/{video_id}``: catalog metadata of one video and whether it is served (the id is the
URL-encoded tail of the path, ``/`` kept), and ``/videos/{video_id}/tags``.

An id may end in ``/tags`` (directory ingest names ``sub/tags.mp4`` ``sub/tags``), so the two
routes are told apart by the last ``/`` as the client wrote it: a literal ``/tags`` at the end
asks for tags, an encoded one (``/videos/sub%2Ftags``) is part of the id. Every id is reachable:
the video ``sub/tags`` at ``/videos/sub%2Ftags``, its tags at ``/videos/sub/tags/tags``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute
from sqlalchemy import select
from starlette.routing import Match
from starlette.types import Scope

from api.deps import HolderDep, SessionDep
from api.errors import VideoNotFound, is_admin, public_text
from api.routes import error_responses
from api.schemas import PredictedTagOut, VideoDetail, VideoIdPath, VideoTagsOut
from recsys.db.models import Video
from recsys.ids import VideoKey, video_id_path
from recsys.tags import stored_tags
from serving.present import media_url, thumbnail_url

router = APIRouter(tags=["videos"])

TAGS_SUFFIX = "tags"


def literal_suffix(scope: Scope, suffix: str) -> bool:
    """Whether the request path, as the client sent it (``raw_path``, still percent-encoded),
    ends in a literal ``/`` followed by ``suffix``; ``/x%2Ftags`` does not. Without a raw path
    (an ASGI server may leave it out) the decoded path is all there is, and it is taken."""
    raw = scope.get("raw_path")
    if not raw:
        return True
    last = bytes(raw).rsplit(b"/", 1)[-1]
    return unquote(last.decode("latin-1"), errors="replace") == suffix


class LiteralTagsRoute(APIRoute):
    """``/videos/{video_id}/tags``, matched only when its ``/tags`` is literal in the request
    (see the module docstring); otherwise the path falls through to ``/videos/{video_id}``."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE and not literal_suffix(scope, TAGS_SUFFIX):
            return Match.NONE, {}
        return match, child_scope


def as_utc(moment: datetime | None) -> datetime | None:
    """Timestamps are stored in UTC; SQLite hands them back without the offset."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _find(session: SessionDep, video_id: str) -> Video | None:
    return session.scalars(select(Video).where(Video.video_id == video_id)).first()


def _video(session: SessionDep, video_id: str) -> Video:
    video = _find(session, video_id)
    if video is None:
        raise VideoNotFound(f"video {video_id!r} is not in the catalog", video_id=video_id)
    return video


def get_video_tags(video_id: VideoIdPath, session: SessionDep) -> VideoTagsOut:
    video = _find(session, video_id)
    if video is None:
        whole = f"{video_id}/{TAGS_SUFFIX}"
        hint = (
            f"; the video {whole!r} is: ask for videos/{video_id_path(video_id)}%2F{TAGS_SUFFIX}"
            f" (its last slash written %2F), as a literal slash before {TAGS_SUFFIX!r} at the "
            f"end of the path asks for the tags of {video_id!r}"
            if _find(session, whole) is not None
            else ""
        )
        raise VideoNotFound(f"video {video_id!r} is not in the catalog{hint}", video_id=video_id)
    return VideoTagsOut.model_validate(stored_tags(session, video).as_dict())


# Registered before /videos/{id}: an id is the rest of the path, so this one must match first.
router.add_api_route(
    f"/videos/{{video_id:video}}/{TAGS_SUFFIX}",
    get_video_tags,
    methods=["GET"],
    response_model=VideoTagsOut,
    responses=error_responses(404, 422, 503),
    summary="Human and predicted tags of one video, with the spans where each applies",
    description="The path must end in a literal `/tags`; `/videos/sub%2Ftags` is the video "
    "`sub/tags` itself (GET /videos/{video_id}), whose tags are at `/videos/sub/tags/tags`.",
    route_class_override=LiteralTagsRoute,
)


@router.get(
    "/videos/{video_id:video}",
    response_model=VideoDetail,
    responses=error_responses(404, 422, 503),
    summary="Catalog metadata of one video",
    description="An id whose last segment is `tags` writes its last `/` as `%2F` "
    "(`/videos/sub%2Ftags`): a literal `/tags` at the end asks for the tags of `sub`.",
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

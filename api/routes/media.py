"""Video files and thumbnails for the web page (files named by the catalog, Range supported).

Only files of servable videos are sent, and only from where they may come from: a video's file
from its real path under the media roots, never the engine's own state
(:func:`recsys.media_roots.servable_path`); a thumbnail only from the thumbnails folder. Anything
else answers 404 without saying where the server looked.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path as FsPath

from fastapi import APIRouter
from fastapi.responses import FileResponse
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from api.errors import MissingFile, VideoNotFound
from api.routes import error_responses
from api.schemas import VideoIdPath
from recsys.db.models import Video, VideoStatus
from recsys.media_roots import SERVABLE_STATUSES, is_under, real_path, servable_path
from recsys.settings import Settings
from recsys.thumbnails import thumbnail_path

router = APIRouter(tags=["media"])

FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"video/mp4": {}}, "description": "The file (Range requests answered 206)."},
    **error_responses(404, 422, 503),
}


def _video(session: SessionDep, video_id: str) -> Video:
    """The catalog video whose files may be served: 404 when unknown or deleted, and when
    failed (its file is not a usable video; it is never sent)."""
    video = session.scalars(select(Video).where(Video.video_id == video_id)).first()
    if video is None or video.status == VideoStatus.DELETED.value:
        raise VideoNotFound(f"video {video_id!r} is not in the catalog", video_id=video_id)
    if video.status not in SERVABLE_STATUSES:
        raise MissingFile(
            f"video {video_id!r} has no servable file (its status is {video.status}); "
            "fix the file and re-run ingest",
            video_id=video_id,
        )
    return video


def _thumbnail_file(settings: Settings, stored: str) -> FsPath | None:
    """The real path of a stored thumbnail when it is a file inside the thumbnails folder."""
    real = real_path(thumbnail_path(settings, stored))
    folder = FsPath(os.path.realpath(settings.thumbnails_dir))
    if real is None or real == folder or not is_under(real, [folder]) or not real.is_file():
        return None
    return real


@router.get(
    "/media/{video_id:video}",
    response_class=FileResponse,
    responses=FILE_RESPONSES,
    summary="Stream the video file (HTTP Range supported)",
)
def media(video_id: VideoIdPath, session: SessionDep, settings: SettingsDep) -> FileResponse:
    video = _video(session, video_id)
    path = servable_path(video.uri, settings, session)
    if path is None:
        raise MissingFile(
            f"the file of video {video_id!r} is not available on this server",
            video_id=video_id,
        )
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type)


@router.get(
    "/thumbnails/{video_id:video}.jpg",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "JPEG thumbnail."},
        **error_responses(404, 422, 503),
    },
    summary="Thumbnail of a video (made at ingest)",
)
def thumbnail(video_id: VideoIdPath, session: SessionDep, settings: SettingsDep) -> FileResponse:
    video = _video(session, video_id)
    if not video.thumbnail_path:
        raise MissingFile(f"video {video_id!r} has no thumbnail yet", video_id=video_id)
    path = _thumbnail_file(settings, video.thumbnail_path)
    if path is None:
        raise MissingFile(
            f"the thumbnail of video {video_id!r} is missing; re-run ingest to remake it",
            video_id=video_id,
        )
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

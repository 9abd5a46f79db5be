"""Video files and thumbnails for the web page (files named by the catalog, Range supported)."""

from __future__ import annotations

import mimetypes
from pathlib import Path as FsPath
from urllib.parse import unquote, urlparse

from fastapi import APIRouter
from fastapi.responses import FileResponse
from sqlalchemy import select

from api.deps import SessionDep, SettingsDep
from api.errors import MissingFile, VideoNotFound
from api.routes import error_responses
from api.schemas import VideoIdPath
from recsys.db.models import Video
from recsys.thumbnails import thumbnail_path

router = APIRouter(tags=["media"])

FILE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"video/mp4": {}}, "description": "The file (Range requests answered 206)."},
    **error_responses(404, 422, 503),
}


def local_path(uri: str) -> FsPath | None:
    """A local filesystem path for a catalog URI (plain path or file://), else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return FsPath(unquote(parsed.path))
    if parsed.scheme in ("", "local") or (len(parsed.scheme) == 1 and uri[1:2] == ":"):
        return FsPath(uri)
    return None


def _video(session: SessionDep, video_id: str) -> Video:
    video = session.scalars(select(Video).where(Video.video_id == video_id)).first()
    if video is None or video.status == "deleted":
        raise VideoNotFound(f"video {video_id!r} is not in the catalog", video_id=video_id)
    return video


@router.get(
    "/media/{video_id}",
    response_class=FileResponse,
    responses=FILE_RESPONSES,
    summary="Stream the video file (HTTP Range supported)",
)
def media(video_id: VideoIdPath, session: SessionDep) -> FileResponse:
    video = _video(session, video_id)
    path = local_path(video.uri)
    if path is None or not path.is_file():
        raise MissingFile(
            f"the file of video {video_id!r} is not available on this server ({video.uri})",
            video_id=video_id,
        )
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type)


@router.get(
    "/thumbnails/{video_id}.jpg",
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
    path = thumbnail_path(settings, video.thumbnail_path)
    if not path.is_file():
        raise MissingFile(
            f"thumbnail of video {video_id!r} is missing at {path}; re-run ingest to remake it",
            video_id=video_id,
        )
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

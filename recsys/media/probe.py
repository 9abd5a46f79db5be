"""``probe``: what a file holds (streams, duration, size, rotation) without a full decode."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.container
import av.video.stream

from recsys.media.container import decode_tolerant, discard_others, ffmpeg_reason, open_media
from recsys.media.errors import CorruptMedia, MediaError, NoVideoStream, UnsupportedMedia
from recsys.media.limits import Deadline, DecodeLimits


@dataclass
class ProbeResult:
    """Container facts. ``rotation`` is the counter-clockwise angle (0/90/180/270) to apply to
    decoded frames for display; ``width``/``height`` are the coded (stored) frame size."""

    path: str
    size_bytes: int
    duration_s: float | None
    fps: float | None
    width: int | None
    height: int | None
    rotation: int
    video_codec: str | None
    audio_codec: str | None
    has_video: bool
    has_audio: bool


def normalise_rotation(degrees: float | None) -> int:
    """Snap an angle to 0/90/180/270 (counter-clockwise)."""
    if degrees is None or not math.isfinite(degrees):
        return 0
    return int(round(degrees / 90.0)) * 90 % 360


def stream_rotation(
    stream: av.video.stream.VideoStream, first_frame: av.VideoFrame | None = None
) -> int:
    """Rotation from the display matrix (frame side data), else the legacy ``rotate`` tag.

    FFmpeg >= 7 attaches the container's display matrix to every decoded frame, which PyAV
    exposes as ``frame.rotation`` (counter-clockwise). Old files and muxers write a ``rotate``
    stream tag instead, which counts clockwise.
    """
    if first_frame is not None:
        try:
            angle = first_frame.rotation
        except (AttributeError, ValueError):
            angle = 0
        if angle:
            return normalise_rotation(angle)
    tag = stream.metadata.get("rotate")
    if tag:
        try:
            return normalise_rotation(-float(tag))
        except ValueError:
            return 0
    return 0


def video_duration(container: av.container.InputContainer, stream: Any) -> float | None:
    """Best duration estimate in seconds: stream duration, container duration, frames/fps."""
    if stream is not None and stream.duration is not None and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
        if seconds > 0:
            return seconds
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    if stream is not None and stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    return None


def _check_index_within_file(path: str | Path, stream: Any, size_bytes: int) -> None:
    """A file whose sample index points past its end was cut short (e.g. an interrupted copy)."""
    try:
        entries = stream.index_entries
        count = len(entries)
    except (AttributeError, TypeError):
        return
    if count == 0:
        return
    last = entries[count - 1]
    end = int(last.pos) + int(last.size)
    if last.pos >= 0 and end > size_bytes:
        raise CorruptMedia(
            path,
            f"file is truncated: its index references byte {end} but the file has "
            f"{size_bytes} bytes",
        )


def probe_open(
    path: str | Path,
    container: av.container.InputContainer,
    size_bytes: int,
    deadline: Deadline | None = None,
) -> ProbeResult:
    """Probe an already opened container (decodes at most the first video frame)."""
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    if video is not None and video.codec_context is None:
        raise UnsupportedMedia(path, "the video codec is not supported (no decoder for it)")
    if audio is not None and audio.codec_context is None:
        audio = None  # an audio track nothing can decode counts as no audio
    rotation = 0
    fps: float | None = None
    if video is not None:
        _check_index_within_file(path, video, size_bytes)
        rate = video.average_rate or video.guessed_rate or video.base_rate
        fps = float(rate) if rate else None
        first = None
        try:
            discard_others(container, video)
            for frame in decode_tolerant(container, video, deadline.check if deadline else None):
                first = frame
                break
        except av.error.FFmpegError as error:
            raise CorruptMedia(
                path, f"the first video frame cannot be decoded ({ffmpeg_reason(error)})"
            ) from None
        if first is None:
            raise CorruptMedia(path, "the video stream holds no decodable frame")
        if deadline is not None:
            deadline.check()
        rotation = stream_rotation(video, first)
    if video is None and audio is None:
        raise NoVideoStream(path, "the file holds neither a video nor an audio stream")
    return ProbeResult(
        path=str(path),
        size_bytes=size_bytes,
        duration_s=video_duration(container, video if video is not None else audio),
        fps=fps,
        width=video.codec_context.width if video is not None else None,
        height=video.codec_context.height if video is not None else None,
        rotation=rotation,
        video_codec=video.codec_context.name if video is not None else None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        has_video=video is not None,
        has_audio=audio is not None,
    )


def probe(path: str | Path, limits: DecodeLimits | None = None) -> ProbeResult:
    """Stream facts of one file; raises a ``MediaError`` subclass naming the file and reason.
    In this process, under ``limits`` (see ``recsys.media.container.open_media``)."""
    try:
        with open_media(path, limits) as container:
            size = Path(path).stat().st_size
            return probe_open(path, container, size)
    except MediaError:
        raise
    except av.error.FFmpegError as error:
        raise CorruptMedia(path, f"probe failed ({ffmpeg_reason(error)})") from None
    except Exception as error:  # noqa: BLE001 - crafted files: typed, with the file named
        raise CorruptMedia(path, f"probe failed ({type(error).__name__}: {error})") from None

"""Public decode entry points: each runs under one per-video time limit.

With ``timeout_s`` set, the work runs in a child process (see ``recsys.media.limits``) that is
killed when it overstays; ``isolate=False`` keeps it in-process with the cooperative deadline
only (cheaper for trusted files, but a decoder stuck in C cannot be interrupted).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

import av
import numpy as np

from recsys.media.audio import decode_audio_open
from recsys.media.container import ffmpeg_reason, open_media
from recsys.media.errors import CorruptMedia, MediaError, NoVideoStream
from recsys.media.frames import SampledFrames, grab_open, sample_open
from recsys.media.limits import Deadline, DecodeLimits, out_of_memory_reason, run_isolated
from recsys.media.probe import ProbeResult, probe_open

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

#: Default audio budget of ``decode_video``: longer tracks are read as evenly spaced windows.
DEFAULT_AUDIO_MAX_SECONDS = 30.0


@dataclass
class DecodedVideo:
    """Everything stage A needs from one file."""

    frames: np.ndarray  # uint8 (N, size, size, 3) RGB
    timestamps: np.ndarray  # float64 (N,) seconds
    audio: np.ndarray | None  # float32 mono, None without an audio track
    sample_rate: int
    probe: ProbeResult


def _guard(path: str | Path, error: av.error.FFmpegError) -> MediaError:
    return CorruptMedia(path, f"decoding failed ({ffmpeg_reason(error)})")


def _typed(fn: Callable[P, R]) -> Callable[P, R]:
    """Any failure that is not already a MediaError becomes ``CorruptMedia`` naming the file:
    crafted files reach corners of FFmpeg/PyAV that raise all sorts of exceptions."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        path = str(args[0])
        try:
            return fn(*args, **kwargs)
        except MediaError:
            raise
        except MemoryError:  # Python's, or FFmpeg's ENOMEM (av.error.MemoryError)
            raise CorruptMedia(path, out_of_memory_reason()) from None
        except av.error.FFmpegError as error:
            raise _guard(path, error) from None
        except UnicodeError as error:
            raise CorruptMedia(path, f"unreadable metadata ({error})") from None
        except OSError as error:
            raise CorruptMedia(path, f"read error ({error.strerror or error})") from None
        except Exception as error:  # noqa: BLE001 - typed, with the file named
            raise CorruptMedia(path, f"unreadable file ({type(error).__name__}: {error})") from None

    return wrapper


def _probe_and_sample(
    path: str,
    num_frames: int,
    size: int,
    deadline: Deadline,
    exact: bool = False,
    limits: DecodeLimits | None = None,
) -> tuple[ProbeResult, SampledFrames]:
    with open_media(path, limits) as container:
        info = probe_open(path, container, Path(path).stat().st_size, deadline)
    if not info.has_video:
        raise NoVideoStream(path, "the file has no video stream (audio only)")
    with open_media(path, limits) as container:
        sampled = sample_open(path, container, info, num_frames, size, deadline, exact=exact)
    return info, sampled


@_typed
def _sample_frames_now(
    path: str,
    num_frames: int,
    size: int,
    timeout_s: float | None,
    exact: bool = False,
    limits: DecodeLimits | None = None,
) -> SampledFrames:
    deadline = Deadline(path, timeout_s)
    return _probe_and_sample(path, num_frames, size, deadline, exact, limits)[1]


@_typed
def _decode_audio_now(
    path: str,
    sample_rate: int,
    timeout_s: float | None,
    max_seconds: float | None,
    limits: DecodeLimits | None = None,
) -> np.ndarray | None:
    with open_media(path, limits) as container:
        return decode_audio_open(
            path, container, sample_rate, Deadline(path, timeout_s), max_seconds
        )


@_typed
def _decode_video_now(
    path: str,
    num_frames: int,
    size: int,
    sample_rate: int,
    timeout_s: float | None,
    audio_max_seconds: float | None,
    exact: bool = False,
    limits: DecodeLimits | None = None,
) -> DecodedVideo:
    deadline = Deadline(path, timeout_s)  # FFmpeg errors become CorruptMedia in @_typed
    info, sampled = _probe_and_sample(path, num_frames, size, deadline, exact, limits)
    audio = None
    if info.has_audio:
        try:
            with open_media(path, limits) as container:
                audio = decode_audio_open(path, container, sample_rate, deadline, audio_max_seconds)
        except CorruptMedia as error:
            # The pictures are fine: keep the video, without its undecodable sound.
            log.warning("%s; using the video without audio", error)
    return DecodedVideo(
        frames=sampled.frames,
        timestamps=sampled.timestamps,
        audio=audio,
        sample_rate=sample_rate,
        probe=info,
    )


def _check_sizes(num_frames: int, size: int) -> None:
    if num_frames < 1 or size < 1:
        raise ValueError(f"num_frames and size must be positive, got {num_frames} and {size}")


def _isolate(isolate: bool | None, timeout_s: float | None) -> bool:
    return timeout_s is not None if isolate is None else isolate


def sample_frames(
    path: str | Path,
    num_frames: int = 16,
    size: int = 112,
    *,
    timeout_s: float | None = None,
    isolate: bool | None = None,
    exact: bool = False,
    limits: DecodeLimits | None = None,
) -> SampledFrames:
    """``num_frames`` RGB frames (uint8, ``size x size``) at uniform times across the video.

    ``exact=True`` disables the keyframe fast path of long videos (see ``recsys.media.frames``);
    ``limits`` as in :func:`decode_video`.
    """
    _check_sizes(num_frames, size)
    args = (str(path), num_frames, size, timeout_s, exact)
    if _isolate(isolate, timeout_s):
        return run_isolated(_sample_frames_now, args, path=path, timeout_s=timeout_s, limits=limits)
    return _sample_frames_now(*args, limits=limits)


def decode_audio(
    path: str | Path,
    sample_rate: int = 16000,
    *,
    timeout_s: float | None = None,
    max_seconds: float | None = None,
    isolate: bool | None = None,
    limits: DecodeLimits | None = None,
) -> np.ndarray | None:
    """Mono float32 audio at ``sample_rate``; None when the file has no audio track.

    ``max_seconds`` caps the decoded audio; longer tracks are read as evenly spaced windows
    (see ``recsys.media.audio``).
    """
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError("max_seconds must be positive (or None for the whole track)")
    if sample_rate <= 0:
        raise ValueError("sample_rate must be positive")
    args = (str(path), sample_rate, timeout_s, max_seconds)
    if _isolate(isolate, timeout_s):
        return run_isolated(_decode_audio_now, args, path=path, timeout_s=timeout_s, limits=limits)
    return _decode_audio_now(*args, limits=limits)


def decode_video(
    path: str | Path,
    num_frames: int = 16,
    size: int = 112,
    sample_rate: int = 16000,
    *,
    timeout_s: float | None = None,
    audio_max_seconds: float | None = DEFAULT_AUDIO_MAX_SECONDS,
    isolate: bool | None = None,
    exact: bool = False,
    limits: DecodeLimits | None = None,
) -> DecodedVideo:
    """Probe + sampled frames + audio of one video under one overall time limit.

    ``audio_max_seconds`` caps the decoded audio (long tracks are read as evenly spaced
    windows); ``exact`` as in ``sample_frames``; ``isolate`` (default: when ``timeout_s`` is
    set) runs the decode in a worker process that is killed at the limit. ``limits`` (memory,
    frame size, threads; default: this process's, see ``recsys.media.limits``) apply in the
    worker, and in this process too except for the memory limit.
    """
    _check_sizes(num_frames, size)
    if audio_max_seconds is not None and audio_max_seconds <= 0:
        raise ValueError("audio_max_seconds must be positive (or None for the whole track)")
    args = (str(path), num_frames, size, sample_rate, timeout_s, audio_max_seconds, exact)
    if _isolate(isolate, timeout_s):
        return run_isolated(_decode_video_now, args, path=path, timeout_s=timeout_s, limits=limits)
    return _decode_video_now(*args, limits=limits)


@_typed
def _inspect_now(
    path: str,
    at: float,
    max_side: int,
    timeout_s: float | None,
    limits: DecodeLimits | None = None,
) -> tuple[ProbeResult, np.ndarray | None]:
    deadline = Deadline(path, timeout_s)
    with open_media(path, limits) as container:
        info = probe_open(path, container, Path(path).stat().st_size, deadline)
    if not info.has_video:
        return info, None
    with open_media(path, limits) as container:
        return info, grab_open(path, container, info, at, max_side, deadline)


def inspect_video(
    path: str | Path,
    *,
    thumbnail_at: float = 0.5,
    thumbnail_max_side: int = 320,
    timeout_s: float | None = None,
    isolate: bool | None = None,
    limits: DecodeLimits | None = None,
) -> tuple[ProbeResult, np.ndarray | None]:
    """``probe`` plus one display-oriented RGB frame (aspect kept) at fraction
    ``thumbnail_at`` of the video, for ingest; the frame is None without a video stream.
    ``limits`` as in :func:`decode_video`."""
    args = (str(path), thumbnail_at, thumbnail_max_side, timeout_s)
    if _isolate(isolate, timeout_s):
        return run_isolated(_inspect_now, args, path=path, timeout_s=timeout_s, limits=limits)
    return _inspect_now(*args, limits=limits)

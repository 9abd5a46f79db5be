"""Opening a file with PyAV, translating FFmpeg failures into specific ``MediaError``s.

:func:`open_media` is the one way media files are opened for reading (ingest's probe, stage A,
uploads). It opens a local regular file only (never a URL or a device: FFmpeg gets an absolute
``file:`` path and only the ``file`` protocol), lets only the container formats of
:data:`ALLOWED_DEMUXERS` read it (no playlists, concat lists, image sequences or other formats
that open further files or streams), refuses a video that declares frames above the pixel limit
before a frame is decoded, and sets the decoder's thread count and pixel limit.
"""

from __future__ import annotations

import os
import stat as stat_module
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import av.container
import av.stream
import av.video.stream

from recsys.media.errors import CorruptMedia, MediaError, MediaNotFound, UnsupportedMedia
from recsys.media.limits import DecodeLimits, process_limits

#: FFmpeg demuxers that may read a file (``format_whitelist``): the containers of the video
#: extensions ingest and uploads accept. An FFmpeg demuxer named ``"mov,mp4,m4a,3gp,3g2,mj2"``
#: is allowed when one of its names is listed.
ALLOWED_DEMUXERS = (
    "mov",  # MP4, MOV, M4V, 3GP
    "matroska",  # MKV, WebM
    "avi",
    "mpeg",  # MPEG program stream (.mpg, .mpeg)
    "mpegts",  # .ts, .mts, .m2ts
    "flv",
    "asf",  # WMV
    "ogg",  # OGV
)
ALLOWED_FORMATS_TEXT = "MP4/MOV/3GP, Matroska/WebM, AVI, MPEG-PS, MPEG-TS, FLV, ASF/WMV or Ogg"
_CONTAINER_OPTIONS = {
    "format_whitelist": ",".join(ALLOWED_DEMUXERS),
    "protocol_whitelist": "file",
}

# ISO base media (MP4/MOV/3GP/M4A) files start with a box whose type is one of these.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def ffmpeg_reason(error: BaseException) -> str:
    """FFmpeg's message without the file name PyAV appends (the error names the file already)."""
    return getattr(error, "strerror", None) or str(error)


def discard_others(container: av.container.InputContainer, keep: av.stream.Stream) -> None:
    """Make the demuxer skip the packets of every stream but ``keep`` (saves reading and
    parsing interleaved video data while decoding audio, and vice versa)."""
    for stream in container.streams:
        if stream.index != keep.index:
            stream.discard = av.stream.Discard.all


#: Damaged packets skipped per stream before the stream counts as undecodable.
MAX_BAD_PACKETS = 32


def decode_tolerant(
    container: av.container.InputContainer,
    stream: av.stream.Stream,
    on_packet: Callable[[], None] | None = None,
) -> Iterator[Any]:
    """Decoded frames of ``stream``, skipping packets the decoder rejects (a damaged packet in
    the middle of a file costs one frame, not the video); after ``MAX_BAD_PACKETS`` rejected
    packets the last decoder error is raised. ``on_packet`` runs per packet (deadline checks).
    """
    bad = 0
    for packet in container.demux(stream):
        if on_packet is not None:
            on_packet()
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            bad += 1
            if bad > MAX_BAD_PACKETS:
                raise
            continue
        yield from frames


def file_kind(mode: int) -> str:
    """What a non-regular file is, for messages ("a FIFO (named pipe)", ...)."""
    kinds = (
        (stat_module.S_ISDIR, "a directory"),
        (stat_module.S_ISFIFO, "a FIFO (named pipe)"),
        (stat_module.S_ISCHR, "a character device"),
        (stat_module.S_ISBLK, "a block device"),
        (stat_module.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_regular(path: str | Path) -> os.stat_result:
    """``os.stat`` of ``path`` (following symlinks, opening nothing) when it is a regular file,
    else a ``MediaError`` saying what it is: a FIFO or a device would block or never end."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise MediaNotFound(path, "file not found") from None
    except PermissionError:
        raise MediaNotFound(path, "permission denied") from None
    except OSError as error:
        raise MediaNotFound(path, f"cannot be read ({error.strerror or error})") from None
    if stat_module.S_ISDIR(info.st_mode):
        raise MediaNotFound(path, "is a directory, not a media file")
    if not stat_module.S_ISREG(info.st_mode):
        raise UnsupportedMedia(
            path, f"is {file_kind(info.st_mode)}, not a regular file; only files can be read"
        )
    return info


def check_readable(path: str | Path) -> int:
    """Size in bytes of a readable regular file, or a ``MediaError`` saying why not."""
    info = check_regular(path)
    if not os.access(path, os.R_OK):
        raise MediaNotFound(path, "permission denied")
    if info.st_size == 0:
        raise CorruptMedia(path, "empty file (0 bytes)")
    return info.st_size


def _open_failure(path: str | Path, error: Exception) -> MediaError:
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError:
        head = b""
    if len(head) >= 8 and head[4:8] in _ISO_BOXES:
        return CorruptMedia(
            path,
            "MP4/MOV file is truncated or damaged: its index (moov box) cannot be read "
            f"({ffmpeg_reason(error)})",
        )
    return UnsupportedMedia(path, f"not a recognised audio/video file ({ffmpeg_reason(error)})")


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} Mpx"


def apply_decode_limits(
    path: str | Path, container: av.container.InputContainer, limits: DecodeLimits
) -> None:
    """Refuse a video stream that declares frames above ``limits.max_pixels``; set each
    decoder's thread count and FFmpeg's own pixel limit (which also stops a stream that grows
    its frames later on)."""
    for stream in container.streams:
        context = stream.codec_context
        if context is None:
            continue
        if isinstance(stream, av.video.stream.VideoStream):
            width, height = (
                int(stream.codec_context.width or 0),
                int(stream.codec_context.height or 0),
            )
            if width * height > limits.max_pixels:
                raise UnsupportedMedia(
                    path,
                    f"the video declares {width}x{height} frames ({_megapixels(width * height)}),"
                    f" above the limit of {_megapixels(limits.max_pixels)} "
                    "(RECSYS_DECODE_MAX_PIXELS); refused before decoding",
                )
            context.options = {**context.options, "max_pixels": str(limits.max_pixels)}
        context.thread_count = limits.threads


@contextmanager
def open_media(
    path: str | Path, limits: DecodeLimits | None = None
) -> Iterator[av.container.InputContainer]:
    """``av.open`` of a local regular file for reading under ``limits`` (default: this
    process's, see :func:`recsys.media.limits.process_limits`), with failures mapped to typed
    errors; always closed. See the module docstring for what is refused."""
    check_readable(path)
    limits = limits or process_limits()
    url = "file:" + os.path.abspath(path)
    try:
        container = av.open(
            url, mode="r", metadata_errors="replace", container_options=_CONTAINER_OPTIONS
        )
    except av.error.FileNotFoundError:
        raise MediaNotFound(path, "file not found") from None
    except av.error.PermissionError:
        raise MediaNotFound(path, "permission denied") from None
    except (av.error.InvalidDataError, av.error.EOFError) as error:
        raise _open_failure(path, error) from None
    except av.error.ArgumentError:
        # What FFmpeg answers when the probed format is not on the whitelist.
        raise UnsupportedMedia(
            path,
            f"the container format is not allowed (allowed: {ALLOWED_FORMATS_TEXT}); "
            "playlists, concat lists, image sequences and streams are refused",
        ) from None
    except av.error.FFmpegError as error:
        raise UnsupportedMedia(
            path, f"FFmpeg cannot open the file ({ffmpeg_reason(error)})"
        ) from None
    try:
        apply_decode_limits(path, container, limits)
        yield container
    finally:
        container.close()

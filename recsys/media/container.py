"""Opening a file with PyAV, translating FFmpeg failures into specific ``MediaError``s."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import av.container
import av.stream

from recsys.media.errors import CorruptMedia, MediaError, MediaNotFound, UnsupportedMedia

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


def check_readable(path: str | Path) -> int:
    """Size in bytes of a readable regular file, or a ``MediaError`` saying why not."""
    p = Path(path)
    try:
        stat = p.stat()
    except FileNotFoundError:
        raise MediaNotFound(path, "file not found") from None
    except PermissionError:
        raise MediaNotFound(path, "permission denied") from None
    if p.is_dir():
        raise MediaNotFound(path, "is a directory, not a media file")
    if not p.is_file():
        raise UnsupportedMedia(path, "not a regular file")
    if not os.access(p, os.R_OK):
        raise MediaNotFound(path, "permission denied")
    if stat.st_size == 0:
        raise CorruptMedia(path, "empty file (0 bytes)")
    return stat.st_size


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


@contextmanager
def open_media(path: str | Path) -> Iterator[av.container.InputContainer]:
    """``av.open`` for reading, with failures mapped to typed errors; always closed."""
    check_readable(path)
    try:
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.FileNotFoundError:
        raise MediaNotFound(path, "file not found") from None
    except av.error.PermissionError:
        raise MediaNotFound(path, "permission denied") from None
    except (av.error.InvalidDataError, av.error.EOFError) as error:
        raise _open_failure(path, error) from None
    except av.error.FFmpegError as error:
        raise UnsupportedMedia(
            path, f"FFmpeg cannot open the file ({ffmpeg_reason(error)})"
        ) from None
    try:
        yield container
    finally:
        container.close()

"""Typed media errors: every failure names the file and a specific, human-readable reason.

Callers (ingest, the refresh, the upload route) record ``reason`` as the video's failure
reason, so reasons are written for a person fixing the catalog, not for a debugger. They are
:class:`~recsys.errors.UserError`: the fix is in the file (replace, re-encode or remove it).
"""

from __future__ import annotations

from pathlib import Path

from recsys.errors import UserError


class MediaError(UserError):
    """Base class: ``path`` is the file, ``reason`` says what is wrong with it."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(str(path), reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class MediaNotFound(MediaError):
    """The path does not exist or is not a readable regular file."""


class UnsupportedMedia(MediaError):
    """The file is not a container/codec this build of FFmpeg can read."""


class CorruptMedia(MediaError):
    """The file is recognised but damaged: empty, truncated or undecodable."""


class NoVideoStream(MediaError):
    """The file has no (decodable) video stream, e.g. an audio-only file."""


class DecodeTimeout(MediaError):
    """Decoding ran past the per-video time limit and was stopped."""

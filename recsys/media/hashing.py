"""Content hash of a media file: the cache key of stage-A features."""

from __future__ import annotations

from pathlib import Path

from recsys.checksums import sha256_file
from recsys.media.errors import MediaNotFound


def content_hash(path: str | Path) -> str:
    """sha256 hex digest of the file's bytes (streamed, constant memory)."""
    try:
        return sha256_file(path)
    except FileNotFoundError as error:
        raise MediaNotFound(path, "file not found") from error
    except IsADirectoryError as error:
        raise MediaNotFound(path, "is a directory, not a media file") from error
    except PermissionError as error:
        raise MediaNotFound(path, "permission denied while reading the file") from error

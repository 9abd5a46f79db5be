"""Content hash of a media file: the cache key of stage-A features."""

from __future__ import annotations

import hashlib
from pathlib import Path

from recsys.media.errors import MediaNotFound

_CHUNK = 1 << 20


def content_hash(path: str | Path) -> str:
    """sha256 hex digest of the file's bytes (streamed, constant memory)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError as error:
        raise MediaNotFound(path, "file not found") from error
    except IsADirectoryError as error:
        raise MediaNotFound(path, "is a directory, not a media file") from error
    except PermissionError as error:
        raise MediaNotFound(path, "permission denied while reading the file") from error
    return digest.hexdigest()

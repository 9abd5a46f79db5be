"""Content hash of a media file: the cache key of stage-A features."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from recsys.media.container import check_regular, file_kind
from recsys.media.errors import MediaNotFound, UnsupportedMedia

_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def content_hash(path: str | Path) -> str:
    """sha256 hex digest of the file's bytes (streamed, constant memory).

    Only a regular file is read: anything else (a FIFO, a device such as ``/dev/zero``, a
    socket) is refused before a byte is read, with an ``UnsupportedMedia`` saying what it is.
    The check is made on the path without opening it, then again on the open descriptor, which
    is opened non-blocking so that a file swapped for a FIFO in between cannot hang the caller.
    """
    check_regular(path)
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as error:
        raise MediaNotFound(path, "file not found") from error
    except IsADirectoryError as error:
        raise MediaNotFound(path, "is a directory, not a media file") from error
    except PermissionError as error:
        raise MediaNotFound(path, "permission denied while reading the file") from error
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnsupportedMedia(path, f"is {file_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        digest = hashlib.sha256()
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

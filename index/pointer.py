"""Which version is served: the ``CURRENT`` pointer, kept by :mod:`recsys.index_pointer`.

The file format and its one reader live in the core (``recsys status`` reads it too, and the
core never imports this package); this module gives the index package's names to them and maps
version names to directories.
"""

from __future__ import annotations

from pathlib import Path

from index.errors import InvalidIndexVersion
from recsys.index_pointer import (
    POINTER_FILE,
    check_version_name,
    pointer_path,
    read_pointer,
    write_pointer,
)
from recsys.settings import Settings

__all__ = ["POINTER_FILE", "current_version", "pointer_path", "set_current", "version_dir"]


def current_version(settings: Settings) -> str | None:
    """Name of the active index version, or None when nothing was published yet."""
    return read_pointer(settings)


def set_current(settings: Settings, version: str) -> None:
    """Point ``CURRENT`` at ``version`` atomically (write a temp file, then rename)."""
    write_pointer(settings, version)


def version_dir(settings: Settings, version: str) -> Path:
    """``indexes/<version>``; :class:`InvalidIndexVersion` (a ValueError) for a bad name."""
    try:
        check_version_name(version)
    except ValueError as error:
        raise InvalidIndexVersion(str(error)) from None
    return settings.indexes_dir / version

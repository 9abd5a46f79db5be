"""The ``CURRENT`` pointer: the one source of truth for which index version is served.

``<indexes_dir>/CURRENT`` holds the name of the active version directory (one line). It lives in
the core, not in the ``index`` package, so that everything that asks "which index is active"
(the API's holder, ``recsys status``, the demo, the index package itself) reads it with the same
function, :func:`read_pointer`. The ``index_builds.is_active`` database column is bookkeeping
derived from it, never read to decide what is served.

A writer writes ``CURRENT.tmp``, fsyncs it and renames it over ``CURRENT`` (then fsyncs the
directory), so a reader sees either the old or the new name, never a mix.
"""

from __future__ import annotations

import os
from pathlib import Path

from recsys.settings import Settings

POINTER_FILE = "CURRENT"


def pointer_path(settings: Settings) -> Path:
    return settings.indexes_dir / POINTER_FILE


def check_version_name(version: str) -> str:
    """``version`` if it can name a directory under ``indexes/``; ValueError otherwise."""
    if not version or "/" in version or "\\" in version or version.startswith("."):
        raise ValueError(f"invalid index version name {version!r}")
    return version


def read_pointer(settings: Settings) -> str | None:
    """Name of the active index version, or None when nothing was published yet."""
    try:
        name = pointer_path(settings).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def write_pointer(settings: Settings, version: str) -> None:
    """Point ``CURRENT`` at ``version`` atomically (write a temp file, fsync, rename)."""
    check_version_name(version)
    directory = settings.indexes_dir
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{POINTER_FILE}.tmp"
    fsync_write(tmp, (version + "\n").encode())
    os.replace(tmp, directory / POINTER_FILE)
    fsync_path(directory)


def fsync_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync, so a crash never leaves a half-written file."""
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path (a directory: makes the renames inside it durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The ``CURRENT`` pointer file naming the served index version, replaced atomically.

Readers (the API) poll :func:`current_version`; a writer writes ``CURRENT.tmp``, fsyncs it and
renames it over ``CURRENT``, so a reader sees either the old or the new name, never a mix.
"""

from __future__ import annotations

import os
from pathlib import Path

from index.manifest import fsync_path, fsync_write
from recsys.settings import Settings

POINTER_FILE = "CURRENT"


def pointer_path(settings: Settings) -> Path:
    return settings.indexes_dir / POINTER_FILE


def current_version(settings: Settings) -> str | None:
    """Name of the active index version, or None when nothing was published yet."""
    try:
        name = pointer_path(settings).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def set_current(settings: Settings, version: str) -> None:
    """Point ``CURRENT`` at ``version`` atomically (write a temp file, then rename)."""
    directory = settings.indexes_dir
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f"{POINTER_FILE}.tmp"
    fsync_write(tmp, (version + "\n").encode())
    os.replace(tmp, directory / POINTER_FILE)
    fsync_path(directory)


def version_dir(settings: Settings, version: str) -> Path:
    if not version or "/" in version or version.startswith("."):
        raise ValueError(f"invalid index version name {version!r}")
    return settings.indexes_dir / version

"""Crash-safe file writes: fsync a file before it is renamed into place, then its directory.

A rename is atomic but not durable by itself: after a power cut the new name may point at a
file whose data never reached the disk (zero length or garbage), or the rename itself may be
lost. The rule everything that publishes a file follows, in this order:

1. write the data under a temporary name in the *same* directory and :func:`fsync_file` it,
2. (a directory assembled under a temporary name: :func:`fsync_dir` it, so its entries are on
   disk),
3. ``os.replace`` it over the final name,
4. :func:`fsync_dir` the parent, so the rename itself survives,

and only then commit a database row that points at it. :func:`atomic_write` does all four for a
bytes payload; :func:`ensure_dir` creates directories durably. The loaders keep refusing damaged
files (checksums, format checks): this module makes such files rare, it does not replace that.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "ensure_dir", "fsync_dir", "fsync_file", "write_synced"]


def fsync_file(path: Path | str) -> None:
    """Flush a file's data and metadata to disk (by path)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path | str) -> None:
    """Flush a directory's entries to disk: makes creations and renames inside it durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` (truncating it) and fsync it before returning."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def ensure_dir(path: Path | str) -> Path:
    """``mkdir -p`` whose new directories survive a crash (each new one's parent is fsynced)."""
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_dir(created.parent)
    return path


def atomic_write(path: Path | str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old file or the new, whole.

    The temporary file has a unique name in the same directory (concurrent writers never share
    one), is fsynced before the rename, and the directory is fsynced after it.
    """
    path = Path(path)
    directory = ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(directory)

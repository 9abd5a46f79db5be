"""The on-disk layout of a published index: version directory, manifest and checksum.

``indexes/<version>/`` holds ``index.faiss`` (plus an optional ``excluded.npy`` of ids that
must never be returned) and ``manifest.json``, which records what the index is and the sha256
of every file, so a loader can refuse a file that was truncated or replaced.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from index.errors import IndexLoadError

INDEX_FILE = "index.faiss"
EXCLUDED_FILE = "excluded.npy"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1
METRIC = "inner_product"


def new_version_name(now: datetime | None = None) -> str:
    """Sortable (by creation, to the microsecond), unique: ``20261125T030000.123456Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(3)}"


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


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    tmp = directory / f".{MANIFEST_FILE}.tmp"
    fsync_write(tmp, json.dumps(manifest, indent=2, sort_keys=True).encode())
    os.replace(tmp, directory / MANIFEST_FILE)


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of one version directory, with its required keys checked."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise IndexLoadError(
            f"index directory {directory} has no {MANIFEST_FILE}; it is not a published index "
            "(rebuild with `recsys index build`)"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise IndexLoadError(f"manifest {path} is unreadable: {error}") from error
    required = ("version", "model_version", "factory", "count", "dim", "metric", "sha256")
    missing = [key for key in required if key not in manifest]
    if missing:
        raise IndexLoadError(f"manifest {path} lacks {', '.join(missing)}; rebuild the index")
    if manifest["metric"] != METRIC:
        raise IndexLoadError(
            f"manifest {path} has metric {manifest['metric']!r}; only {METRIC!r} is served"
        )
    return manifest

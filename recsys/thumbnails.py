"""Thumbnails made at ingest: one JPEG of the middle frame per content hash.

Files live under ``settings.thumbnails_dir`` as ``<hash[:2]>/<hash>.jpg``; the catalog stores
that relative path in ``videos.thumbnail_path`` (the API resolves it against the directory).
Naming by content hash makes re-ingest free and a changed file get a new picture.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from recsys.settings import Settings

THUMBNAIL_MAX_SIDE = 320


def thumbnail_relpath(content_hash: str) -> str:
    return f"{content_hash[:2]}/{content_hash}.jpg"


def thumbnail_exists(settings: Settings, content_hash: str) -> bool:
    return (settings.thumbnails_dir / thumbnail_relpath(content_hash)).is_file()


def save_thumbnail(settings: Settings, content_hash: str, rgb: np.ndarray) -> str:
    """Write ``rgb`` (H, W, 3 uint8) as the thumbnail of ``content_hash``; returns the relative
    path to store. Written to a temporary name and renamed, so readers never see half a file."""
    relative = thumbnail_relpath(content_hash)
    target = settings.thumbnails_dir / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(f".{os.getpid()}.tmp")
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        temporary, format="JPEG", quality=85
    )
    os.replace(temporary, target)
    return relative


def thumbnail_path(settings: Settings, stored: str) -> Path:
    """Absolute path of a stored thumbnail path: absolute, or relative to the thumbnails dir
    (what ingest writes) or to the home."""
    path = Path(stored)
    if path.is_absolute():
        return path
    for base in (settings.thumbnails_dir, settings.resolved_home):
        candidate = base / path
        if candidate.is_file():
            return candidate
    return settings.thumbnails_dir / path

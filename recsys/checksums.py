"""File checksums: the one streamed sha256 used for content hashes, shard, index and weights
files (constant memory whatever the file size)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of the file's bytes; OSError (not found, a directory...) propagates."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

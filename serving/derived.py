"""Files serving derives from its sources, checked before they are mapped.

The shared catalog columns (from the ``videos`` table) and the mapped per-modality vectors
(from the embedding store) are written once and mapped by every worker. Each file's sha256 is
recorded when it is written and checked once per file, like a published index's files
(:mod:`index.verified`: hashed by the first reader, then trusted while the file's inode, size,
mtime and ctime are unchanged). A file that is truncated, rewritten or corrupted is a
:class:`DamagedFile` naming it: the caller discards the folder and rebuilds it from the source,
so a damaged copy never stops a load.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from index.mapped import map_array
from index.verified import verified_sha256
from recsys.checksums import sha256_file


class DamagedFile(ValueError):
    """A derived file that cannot be used as it is; the message names it and says why."""

    def __init__(self, path: Path, why: str) -> None:
        self.path = path
        super().__init__(f"{path} {why}")


def save_array(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as ``.npy`` and fsync it; returns the file's sha256."""
    with path.open("wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())
    return sha256_file(path)


def map_verified(path: Path, sha256: str) -> np.ndarray:
    """The ``.npy`` file mapped read-only, once its sha256 is known to be ``sha256``."""
    try:
        actual = verified_sha256(path, sha256)
    except OSError as error:
        raise DamagedFile(path, f"cannot be read ({error.strerror or error})") from None
    if actual != sha256:
        raise DamagedFile(path, f"fails its checksum (sha256 {actual}, recorded {sha256})")
    try:
        return map_array(path)
    except (OSError, ValueError) as error:
        raise DamagedFile(path, f"cannot be mapped ({error})") from None


def discard(directory: Path) -> None:
    """Remove a damaged derived folder: renamed away first (a rebuild may take its name at
    once), then deleted; workers still mapping its files keep their pages."""
    aside = directory.with_name(f".{directory.name}.{uuid.uuid4().hex}.damaged")
    try:
        os.rename(directory, aside)
    except FileNotFoundError:  # another worker discarded it first
        return
    shutil.rmtree(aside, ignore_errors=True)


__all__ = ["DamagedFile", "discard", "map_verified", "save_array"]

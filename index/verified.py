"""Checksums of published index files, verified once per file instead of at every start.

A published version's files never change (a rebuild publishes a new directory), so hashing all
of them in every API worker at every start reads the whole index once per worker (gigabytes at
millions of videos, N times over one disk when N workers start together). Instead the first
reader that hashes a file and finds the manifest's checksum leaves a *stamp*
beside it (``<file>.verified``: the checksum plus the file's identity and times from ``stat``);
a later reader whose ``stat`` still matches the stamp trusts it. Readers that start together
take an exclusive ``flock`` per file, so one hashes while the others wait for its stamp.

What a stamp does not catch: bytes that rot in place without the file's size, inode, mtime or
ctime changing. Any replacement, rewrite, ``touch`` or copy invalidates it. ``always``
(``RECSYS_INDEX_VERIFY=always``) hashes at every load, and ``recsys index info`` always hashes.
Where the version directory is read-only (replicas on shared storage), each reader hashes
without leaving a stamp.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from recsys.checksums import sha256_file
from recsys.choices import IndexVerify
from recsys.durable import atomic_write
from recsys.file_lock import exclusive

log = logging.getLogger(__name__)

STAMP_SUFFIX = ".verified"
LOCK_SUFFIX = ".verify.lock"


def stamp_path(path: Path) -> Path:
    return path.with_name(path.name + STAMP_SUFFIX)


def _identity(path: Path) -> dict[str, int]:
    """What changes whenever the file's bytes may have: device, inode, size, mtime, ctime."""
    info = path.stat()
    return {
        "dev": info.st_dev,
        "ino": info.st_ino,
        "size": info.st_size,
        "mtime_ns": info.st_mtime_ns,
        "ctime_ns": info.st_ctime_ns,
    }


def _stamped(path: Path, expected: str) -> bool:
    """Whether a stamp says ``path``, exactly as it is now, was hashed to ``expected``."""
    try:
        stamp = json.loads(stamp_path(path).read_text())
        return bool(stamp.get("sha256") == expected and stamp.get("file") == _identity(path))
    except (OSError, ValueError, AttributeError):
        return False


def verified_sha256(path: Path, expected: str, mode: IndexVerify | str = IndexVerify.ONCE) -> str:
    """The sha256 of ``path`` to compare with ``expected``: read from a valid stamp (``once``)
    or computed; a computed match is stamped for the next reader. ``OSError`` propagates."""
    if IndexVerify(mode) == IndexVerify.ALWAYS:
        return sha256_file(path)
    if _stamped(path, expected):
        return expected
    with exclusive(path.with_name(path.name + LOCK_SUFFIX)) as locked:
        if locked and _stamped(path, expected):  # another reader hashed it while we waited
            return expected
        before = _identity(path)
        actual = sha256_file(path)
        if locked and actual == expected and _identity(path) == before:
            stamp = {"sha256": actual, "file": before}
            try:
                atomic_write(stamp_path(path), json.dumps(stamp).encode())
            except OSError as error:
                log.debug("cannot stamp %s as verified: %s", path, error)
        return actual

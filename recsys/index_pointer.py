"""The ``CURRENT`` pointer: the one source of truth for which index version is served.

``<indexes_dir>/CURRENT`` holds the name of the active version directory (one line). It lives in
the core, not in the ``index`` package, so that everything that asks "which index is active"
(the API's holder, ``recsys status``, the demo, the index package itself) reads it with the same
function, :func:`read_pointer`. The ``index_builds.is_active`` database column is bookkeeping
derived from it, never read to decide what is served.

A writer writes a uniquely named temporary file beside it, fsyncs it and renames it over
``CURRENT`` (then fsyncs the directory), so a reader sees either the old or the new name, never a
mix. Writers are serialised by :func:`publish_lock`, an exclusive ``flock`` on
``<indexes_dir>/.publish.lock`` that the index package holds around writing a version, moving the
pointer and deleting old versions: two ``recsys index build`` / ``activate`` at once take turns,
so the pointer never names a version another process is deleting. Readers take no lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from recsys.durable import atomic_write, ensure_dir
from recsys.errors import ConflictError
from recsys.file_lock import LockTimeout, exclusive
from recsys.settings import Settings

__all__ = [
    "LOCK_FILE",
    "POINTER_FILE",
    "PublishLockTimeout",
    "check_version_name",
    "lock_path",
    "pointer_path",
    "publish_lock",
    "read_pointer",
    "write_pointer",
]

POINTER_FILE = "CURRENT"
LOCK_FILE = ".publish.lock"
#: How long a publish waits for another one before giving up (a large index loads in seconds).
LOCK_TIMEOUT_S = 600.0


class PublishLockTimeout(ConflictError):
    """Another process held the publish lock for longer than the wait allows."""


def pointer_path(settings: Settings) -> Path:
    return settings.indexes_dir / POINTER_FILE


def lock_path(settings: Settings) -> Path:
    return settings.indexes_dir / LOCK_FILE


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
    """Point ``CURRENT`` at ``version`` atomically (unique temp file, fsync, rename, fsync dir)."""
    check_version_name(version)
    with publish_lock(settings):
        atomic_write(pointer_path(settings), (version + "\n").encode())


@dataclass
class _Holding:
    """This process's hold on one lock file: threads queue on ``mutex``, ``depth`` re-enters."""

    mutex: threading.RLock
    depth: int = 0


_holdings: dict[str, _Holding] = {}
_holdings_guard = threading.Lock()


def _forget_holdings() -> None:  # a forked child holds nothing, whatever its parent held
    _holdings.clear()


os.register_at_fork(after_in_child=_forget_holdings)


@contextmanager
def publish_lock(settings: Settings, *, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the exclusive publish lock of ``settings.indexes_dir`` (re-entrant per process).

    Other processes block until it is released (or :class:`PublishLockTimeout` after
    ``timeout_s``); threads of this process queue on an in-process mutex, and a thread that
    already holds it may take it again. The kernel drops a ``flock`` when its holder dies, so a
    killed publish never leaves the lock taken.
    """
    directory = ensure_dir(settings.indexes_dir)
    path = directory / LOCK_FILE
    with _holdings_guard:
        holding = _holdings.setdefault(str(path), _Holding(threading.RLock()))
    with holding.mutex, ExitStack() as held:
        if holding.depth == 0:
            try:
                held.enter_context(exclusive(path, timeout_s=timeout_s, optional=False))
            except LockTimeout as error:
                raise PublishLockTimeout(
                    f"another index build or activation has held {path} for over "
                    f"{timeout_s:.0f} s{error.holder}; wait for it to finish and "
                    "retry (a process that died releases the lock by itself)"
                ) from None
        holding.depth += 1
        try:
            yield
        finally:
            holding.depth -= 1

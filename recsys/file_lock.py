"""An exclusive ``flock`` on a lock file, for processes that must take turns on shared work.

One helper for every lock of a home (the index publish lock, a refresh per model version, a
feature-cache compaction per key, the index hash stamp, the API's catalog load), in the three
ways they wait: as long as it takes, not at all (the caller skips or refuses the work), or up
to a deadline (then :class:`LockTimeout`).

The kernel releases the lock when its holder dies, even on SIGKILL, so a crashed process never
blocks the others. The holder writes its pid into the lock file, so a process that waits (or
gives up) can say who holds it. ``flock`` locks belong to an open file: two opens in one process
exclude each other like two processes do (callers that re-enter hold their own count).
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recsys.errors import ConflictError

__all__ = ["LockTimeout", "exclusive", "holder_note"]

log = logging.getLogger(__name__)
#: How often a wait with a deadline retries.
POLL_S = 0.05


class LockTimeout(ConflictError):
    """Another process held a lock for longer than the wait allows; the message names the lock
    file and its holder."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path = path
        self.timeout_s = timeout_s
        self.holder = holder_note(path)
        super().__init__(
            f"the lock {path} has been held for over {timeout_s:g} s{self.holder}; wait for "
            "its holder to finish and retry (a process that died releases it by itself)"
        )


def holder_note(path: Path) -> str:
    """`` (held by pid N)`` from the lock file, or "" when it names nobody."""
    try:
        text = path.read_text().strip()
    except OSError:
        return ""
    return f" (held by {text})" if text else ""


@contextmanager
def exclusive(
    path: Path,
    *,
    blocking: bool = True,
    timeout_s: float | None = None,
    optional: bool = True,
) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Yields True while held. ``blocking`` (the default) waits for another holder to let go:
    for as long as it takes, or up to ``timeout_s`` seconds and then raises
    :class:`LockTimeout`. ``blocking=False`` tries once and yields False, holding nothing, when
    another process holds it. A lock file that cannot be created (a read-only directory, where
    there is nothing to share either) yields False, holding nothing, unless ``optional=False``
    (then OSError: the caller's work needs the lock).
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        if not optional:
            raise
        log.debug("cannot create the lock file %s (%s): going on without it", path, error)
        yield False
        return
    try:
        if not _acquire(fd, path, blocking, timeout_s):
            yield False
            return
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        except OSError as error:  # the note is a courtesy; the lock holds without it
            log.debug("cannot note the holder of %s: %s", path, error)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, blocking: bool, timeout_s: float | None) -> bool:
    """Take the lock on ``fd``: True when taken, False when busy and not ``blocking``."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        if not blocking:
            return False
    # A wait with a deadline may end in an error, so the user sees it begin; others are routine.
    level = logging.DEBUG if timeout_s is None else logging.INFO
    log.log(level, "waiting for the lock %s%s", path, holder_note(path))
    if timeout_s is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise LockTimeout(path, timeout_s) from None
            time.sleep(POLL_S)

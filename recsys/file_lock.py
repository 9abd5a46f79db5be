"""An exclusive ``flock`` on a lock file, for processes that must take turns on shared work
(the first hashes or reads, the others reuse its result).

The kernel releases the lock when its holder dies, so a crashed process never blocks the
others. Where the lock file cannot be created (a read-only directory), there is nothing to
share either: the caller proceeds without the lock and is told so.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def exclusive(path: Path) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing); yields False, holding nothing,
    when it cannot be created."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        log.debug("cannot create the lock file %s (%s): going on without it", path, error)
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield True
    finally:
        os.close(fd)

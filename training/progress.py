"""Progress reporting for long training jobs: a rich bar on a terminal, log lines otherwise."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("training")


def track(items: Iterable[T], total: int, description: str, enabled: bool = True) -> Iterator[T]:
    """Yield ``items`` while showing progress (bar on a TTY, a few log lines elsewhere)."""
    if not enabled or total == 0:
        yield from items
        return
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task(description, total=total)
            for item in items:
                yield item
                progress.advance(task)
        return
    step = max(1, total // 10)
    for done, item in enumerate(items, start=1):
        yield item
        if done % step == 0 or done == total:
            log.info("%s: %d/%d", description, done, total)

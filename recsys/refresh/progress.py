"""Progress of a refresh: a rich bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)


class RefreshProgress:
    """Counts finished videos (embedded or failed) against the number selected."""

    def __init__(self, total: int, label: str, *, enabled: bool | None = None) -> None:
        self.total = total
        self.label = label
        self.done = 0
        self.failed = 0
        self.cache_hits = 0
        self._start = time.perf_counter()
        self._last_log = self._start
        interactive = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self._task_id: Any = None
        if interactive and total > 0:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.1f} videos/s"),
                TextColumn("failed {task.fields[failed]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> RefreshProgress:
        if self._bar is not None:
            self._bar.start()
            self._task_id = self._bar.add_task(self.label, total=self.total, rate=0.0, failed=0)
        elif self.total:
            logger.info("%s: %d videos to embed", self.label, self.total)
        return self

    def advance(self, embedded: int = 0, failed: int = 0, cache_hits: int = 0) -> None:
        self.done += embedded + failed
        self.failed += failed
        self.cache_hits += cache_hits
        now = time.perf_counter()
        rate = self.done / max(now - self._start, 1e-9)
        if self._bar is not None and self._task_id is not None:
            self._bar.update(
                self._task_id, completed=self.done, rate=rate, failed=self.failed, refresh=False
            )
        elif now - self._last_log >= 5.0:
            self._last_log = now
            logger.info(
                "%s: %d/%d videos (%.1f/s), %d failed",
                self.label,
                self.done,
                self.total,
                rate,
                self.failed,
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self.total:
            elapsed = time.perf_counter() - self._start
            logger.info(
                "%s: %d/%d videos in %.1f s, %d failed",
                self.label,
                self.done,
                self.total,
                elapsed,
                self.failed,
            )

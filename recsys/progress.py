"""Progress of long jobs: a rich bar on a terminal, log lines otherwise.

* :class:`Progress` counts finished items (videos, feature files, epochs) against a total, or
  against no total when it is not known up front. On a terminal it draws a bar (count, rate,
  failures, elapsed and remaining time); elsewhere it logs a line every ``log_every`` items
  and/or every ``log_every_s`` seconds, and with ``verb`` also a first and a last line.
* :func:`track` wraps an iterable in a :class:`Progress` (feature extraction, training epochs).
* :func:`steps` shows the current step of a job made of named steps (a spinner, or log lines).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
log = logging.getLogger(__name__)


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


class Progress:
    """Finished items (``done``, of which ``failed`` failed) against ``total``.

    ``bar``: ``None`` draws a bar when ``console`` (default: standard error) is a terminal and
    logs otherwise; ``True``/``False`` force one or the other. Log lines read
    ``label: done/total unit`` (``label: done unit processed`` without a total), followed by
    ``(rate/s), N failed`` when ``failures`` is set.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "",
        bar: bool | None = None,
        console: Console | None = None,
        transient: bool = True,
        logger: logging.Logger | None = None,
        log_every: int | None = None,
        log_every_s: float | None = None,
        failures: bool = False,
        verb: str | None = None,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.failed = 0
        self.cache_hits = 0
        self._logger = logger or log
        self._log_every = log_every
        self._log_every_s = log_every_s
        self._failures = failures
        self._verb = verb
        self._start = time.perf_counter()
        self._last_log = self._start
        self._bar: Any = None
        self._task_id: Any = None
        if console is None:
            console = _stderr_console()
        if (console.is_terminal if bar is None else bar) and total != 0:
            self._bar = self._make_bar(console, transient)

    def _make_bar(self, console: Console, transient: bool) -> Any:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        columns: list[ProgressColumn] = [
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
        ]
        if self.unit:
            columns.append(TextColumn(f"{{task.fields[rate]:.1f}} {self.unit}/s"))
        if self._failures:
            columns.append(TextColumn("failed {task.fields[failed]}"))
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
        return RichProgress(*columns, console=console, transient=transient)

    @property
    def _units(self) -> str:
        return f" {self.unit}" if self.unit else ""

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
            self._task_id = self._bar.add_task(self.label, total=self.total, rate=0.0, failed=0)
        elif self._verb is not None and self.total:
            self._logger.info("%s: %d%s to %s", self.label, self.total, self._units, self._verb)
        return self

    def advance(self, done: int = 1, *, failed: int = 0, cache_hits: int = 0) -> None:
        """``done`` more items finished, ``failed`` of them failed (``cache_hits`` is counted)."""
        before = self.done
        self.done += done
        self.failed += failed
        self.cache_hits += cache_hits
        now = time.perf_counter()
        rate = self.done / max(now - self._start, 1e-9)
        if self._bar is not None and self._task_id is not None:
            self._bar.update(
                self._task_id, completed=self.done, rate=rate, failed=self.failed, refresh=False
            )
        elif self._due(before, now):
            self._last_log = now
            self._log_line(rate)

    def update(self, done: int) -> None:
        """Set the number of finished items (for callbacks that report a running count)."""
        self.advance(done - self.done)

    def _due(self, before: int, now: float) -> bool:
        if self._log_every is not None:
            every = max(1, self._log_every)
            if self.done // every > before // every:
                return True
            if self.total is not None and before < self.total <= self.done:
                return True
        return self._log_every_s is not None and now - self._last_log >= self._log_every_s

    def _log_line(self, rate: float) -> None:
        if self.total is None:
            message, args = "%s: %d%s processed", [self.label, self.done, self._units]
        else:
            message, args = "%s: %d/%d%s", [self.label, self.done, self.total, self._units]
        if self._failures:
            message += " (%.1f/s), %d failed"
            args += [rate, self.failed]
        self._logger.info(message, *args)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._verb is not None and self.total:
            message = "%s: %d/%d%s in %.1f s"
            args: list[Any] = [self.label, self.done, self.total, self._units]
            args.append(time.perf_counter() - self._start)
            if self._failures:
                message += ", %d failed"
                args.append(self.failed)
            self._logger.info(message, *args)


def track(
    items: Iterable[T],
    total: int,
    label: str,
    *,
    enabled: bool = True,
    logger: logging.Logger | None = None,
) -> Iterator[T]:
    """Yield ``items`` while showing progress (a bar on a terminal, ~10 log lines elsewhere).

    ``enabled=False`` (or ``total == 0``) shows nothing at all.
    """
    if not enabled or total == 0:
        yield from items
        return
    with Progress(label, total, logger=logger, log_every=max(1, total // 10)) as progress:
        for item in items:
            yield item
            progress.advance()


@contextmanager
def steps(
    label: str, *, console: Console | None = None, logger: logging.Logger | None = None
) -> Iterator[Callable[[str], None]]:
    """A ``show(message)`` for the current step: a spinner on a terminal, log lines otherwise."""
    if console is None:
        console = _stderr_console()
    if not console.is_terminal:
        yield (logger or log).info
        return
    with console.status(label) as status:
        shown = console

        def show(message: str) -> None:
            status.update(message)
            shown.log(message)

        yield show

"""Several forked processes running the same function at once (workers that start together)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def run_together(target: Callable[..., None], args: tuple[Any, ...], count: int = 3) -> list[int]:
    """Fork ``count`` processes running ``target(*args)``; their exit codes once all ended."""
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=target, args=args) for _ in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    return [process.exitcode if process.exitcode is not None else -1 for process in processes]

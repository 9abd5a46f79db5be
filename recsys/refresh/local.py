"""Local engine: stage A in a pool of worker processes, stage B and writes in this process.

Cache hits never reach the pool. At most ``2 × workers`` videos are in flight so results stream
into batches while the workers keep decoding. A worker that dies (a segfault in a decoder, the
OOM killer) breaks the pool: the videos it may have been working on are re-run one at a time
in a fresh pool, and the one that kills its worker again fails alone.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from recsys.refresh.context import RunContext
from recsys.refresh.tasks import (
    FeatureResult,
    FeatureSpec,
    VideoTask,
    compute_features,
    init_worker,
)

logger = logging.getLogger(__name__)

# Modules a forkserver imports once, so each worker starts without re-importing them.
_PRELOAD = ["recsys.refresh.tasks", "recsys.media", "recsys.features"]


def _mp_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where available (fast worker start), else ``spawn``; never plain fork."""
    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


class _Pool:
    """A process pool that is replaced when a worker crash breaks it."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def submit(
        self,
        fn: Callable[[VideoTask, FeatureSpec], FeatureResult],
        task: VideoTask,
        spec: FeatureSpec,
    ) -> Future[FeatureResult]:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=_mp_context(), initializer=init_worker
            )
        return self._executor.submit(fn, task, spec)

    def discard(self) -> None:
        """Drop a broken pool (its processes are gone or being reaped)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _feature_stream(
    ctx: RunContext, tasks: list[VideoTask], pool: _Pool
) -> Iterator[FeatureResult]:
    """Stage-A results in completion order: cache hits at once, the rest from the pool."""
    fn = ctx.options.feature_fn or compute_features
    pending = deque(tasks)
    suspects: deque[VideoTask] = deque()
    inflight: dict[Future[FeatureResult], VideoTask] = {}
    limit = 2 * pool.workers
    while pending or inflight or suspects:
        while pending and len(inflight) < limit:
            task = pending.popleft()
            hit = ctx.cached(task)
            if hit is not None:
                yield hit
                continue
            inflight[pool.submit(fn, task, ctx.spec)] = task
        isolated = False
        if not pending and not inflight and suspects:
            # A suspect of an earlier crash runs alone, so a second crash names the culprit.
            task = suspects.popleft()
            inflight[pool.submit(fn, task, ctx.spec)] = task
            isolated = True
        if not inflight:
            continue
        done, _ = wait(inflight, return_when=FIRST_COMPLETED)
        broken = False
        for future in done:
            task = inflight.pop(future)
            try:
                yield future.result()
            except BrokenProcessPool:
                broken = True
                if isolated:
                    yield FeatureResult(
                        task,
                        error="worker process crashed while decoding this video "
                        "(killed by a signal or out of memory)",
                    )
                else:
                    suspects.append(task)
        if broken:
            # Every video still in flight was in the broken pool: rerun each alone.
            logger.warning(
                "a stage-A worker crashed; re-running %d in-flight videos one at a time",
                len(inflight) + len(suspects),
            )
            suspects.extend(inflight.values())
            inflight.clear()
            pool.discard()


def run_local(ctx: RunContext, tasks: list[VideoTask]) -> None:
    """Compute, embed and commit ``tasks`` with ``ctx.summary.workers`` processes."""
    pool = _Pool(ctx.summary.workers)
    batch: list[FeatureResult] = []
    try:
        for result in _feature_stream(ctx, tasks, pool):
            if not result.cache_hit:
                ctx.computed(result)
            if result.error is not None or result.features is None:
                ctx.fail(result.task, result.error or "no features")
                continue
            batch.append(result)
            if len(batch) >= ctx.summary.batch_size:
                ctx.embed_and_write(batch)
                batch = []
        ctx.embed_and_write(batch)
    finally:
        pool.close()

"""Stage A on every core: a kept pool of killable worker processes, results in completion order.

Cache hits never reach the pool. At most ``2 × workers`` videos are in flight so results stream
to the caller while the workers keep decoding. A worker that dies (a segfault in a decoder, the
OOM killer) breaks the pool: the videos it may have been working on are re-run one at a time
in a fresh pool, and the one that kills its worker again fails alone. The refresh's local
engine and training's extraction of a new catalog both run here.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from recsys.errors import UserError
from recsys.ids import VideoKey
from recsys.stage_a.tasks import (
    FeatureResult,
    FeatureSpec,
    VideoTask,
    compute_features,
    init_worker,
)

logger = logging.getLogger(__name__)

# Modules a forkserver imports once (and warms up), so each worker starts ready to work.
_PRELOAD = ["recsys.stage_a.tasks", "recsys.stage_a.warmup"]


class WorkerStartError(UserError, RuntimeError):
    """No stage-A worker process can start at all (not one bad video); says how to fix it."""


def default_workers() -> int:
    """One stage-A worker per core: decoding is CPU-bound and single-threaded per video."""
    return max(1, os.cpu_count() or 1)


def _mp_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where available (fast worker start), else ``spawn``; never plain fork."""
    if sys.platform.startswith("linux"):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        return context
    return multiprocessing.get_context("spawn")


class _Pool:
    """A process pool that is replaced when a worker crash breaks it.

    Pools are kept per worker count for the life of the process (see :func:`_pool_for`): a
    second run in the same process (tests, a scheduler) finds its workers started and warm.
    """

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
        try:
            return self._executor.submit(fn, task, spec)
        except BrokenProcessPool as error:
            # A worker died since the caller last waited: hand back a failed future, so this
            # task is treated like the others that were in the broken pool (rerun alone).
            failed: Future[FeatureResult] = Future()
            failed.set_exception(error)
            return failed

    def discard(self) -> None:
        """Drop a broken pool (its processes are gone or being reaped)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


_pools: dict[int, _Pool] = {}
#: Videos whose cache entries are looked up with one query.
LOOKUP_CHUNK = 256


def _pool_for(workers: int) -> _Pool:
    pool = _pools.get(workers)
    if pool is None:
        pool = _pools[workers] = _Pool(workers)
    return pool


@atexit.register
def shutdown_pools() -> None:
    """Stop every kept worker pool (also run at interpreter exit)."""
    for pool in list(_pools.values()):
        pool.close()
    _pools.clear()


def _canary() -> int:
    return os.getpid()


def _check_pool_starts(pool: _Pool) -> None:
    """Tell "this video kills its worker" apart from "no worker can start at all"."""
    try:
        if pool._executor is None:
            pool._executor = ProcessPoolExecutor(
                max_workers=1, mp_context=_mp_context(), initializer=init_worker
            )
        pool._executor.submit(_canary).result(timeout=600)
    except Exception as error:
        pool.discard()
        raise WorkerStartError(
            f"stage-A worker processes cannot start ({type(error).__name__}: {error}); "
            "when calling run_refresh from a script, guard it with `if __name__ == '__main__':`"
        ) from error
    pool.discard()


#: Cache hits among a chunk of tasks, by internal key (misses absent).
Lookup = Callable[[list[VideoTask]], dict[VideoKey, FeatureResult]]


def _deep(spec: FeatureSpec) -> bool:
    from recsys.stage_a.tasks import extractor_for

    return bool(getattr(extractor_for(spec), "deep", False))


def stream_features(
    tasks: list[VideoTask],
    spec: FeatureSpec,
    *,
    workers: int,
    fn: Callable[[VideoTask, FeatureSpec], FeatureResult] | None = None,
    lookup: Lookup | None = None,
) -> Iterator[FeatureResult]:
    """Stage A for ``tasks`` on the kept pool of ``workers`` processes, in completion order.

    ``lookup`` returns the cache hits of a chunk of tasks by video key (yielded at once, never
    decoded). A video that crashes its worker fails alone; nothing here raises for one bad
    video. Training uses this to extract the features of a new catalog on every core.
    """
    if fn is None and spec.composite and _deep(spec):
        from recsys.stage_a.batching import stream_encoded

        yield from stream_encoded(stream_features, tasks, spec, workers=workers, lookup=lookup)
        return
    pool = _pool_for(workers)
    fn = fn or compute_features
    pending = deque(tasks)
    suspects: deque[VideoTask] = deque()
    inflight: dict[Future[FeatureResult], VideoTask] = {}
    limit = 2 * pool.workers
    answered = False  # has any worker returned a result in this run?
    looked_up: dict[VideoKey, FeatureResult | None] = {}
    while pending or inflight or suspects:
        while pending and len(inflight) < limit:
            if pending[0].video_key not in looked_up:
                chunk = [pending[i] for i in range(min(LOOKUP_CHUNK, len(pending)))]
                hits = lookup(chunk) if lookup is not None else {}
                looked_up.update({t.video_key: hits.get(t.video_key) for t in chunk})
            task = pending.popleft()
            hit = looked_up.pop(task.video_key)
            if hit is not None:
                yield hit
                continue
            inflight[pool.submit(fn, task, spec)] = task
        isolated = False
        if not pending and not inflight and suspects:
            # A suspect of an earlier crash runs alone, so a second crash names the culprit.
            task = suspects.popleft()
            inflight[pool.submit(fn, task, spec)] = task
            isolated = True
        if not inflight:
            continue
        done, _ = wait(inflight, return_when=FIRST_COMPLETED)
        broken = False
        for future in done:
            task = inflight.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool:
                broken = True
                if isolated:
                    if not answered:
                        _check_pool_starts(pool)
                    yield FeatureResult(
                        task,
                        error="worker process crashed while decoding this video "
                        "(killed by a signal or out of memory)",
                    )
                else:
                    suspects.append(task)
            else:
                answered = True
                yield result
        if broken:
            # Every video still in flight was in the broken pool: rerun each alone.
            logger.warning(
                "a stage-A worker crashed; re-running %d in-flight videos one at a time",
                len(inflight) + len(suspects),
            )
            suspects.extend(inflight.values())
            inflight.clear()
            pool.discard()

"""State shared by the engines during one run: cache, model, writer, counters, progress.

The engines decide *where* stage A and stage B run; this object does everything that must
happen in the driver process: feature-cache reads and writes, failure records, and the batch
commits, so that database writes stay in one place whatever the engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.choices import InputKind
from recsys.db import Database
from recsys.features import CacheBatch, FeatureCache, FeatureExtractor
from recsys.ids import VideoKey
from recsys.progress import Progress
from recsys.refresh.embed import EmbeddedBatch, embed_results
from recsys.refresh.options import Failure, RefreshOptions, RefreshSummary
from recsys.refresh.writer import BatchWriter
from recsys.settings import Settings
from recsys.stage_a import FeatureResult, FeatureSpec, VideoTask

logger = logging.getLogger(__name__)

#: Tasks whose cache entries one look-up reads when the run's order is known (:meth:`plan`).
LOOKAHEAD = 4096


@dataclass
class RunContext:
    settings: Settings
    database: Database
    options: RefreshOptions
    spec: FeatureSpec
    embedder: Any  # recsys.models.Embedder
    extractor: FeatureExtractor  # the cache key
    cache: FeatureCache
    writer: BatchWriter
    summary: RefreshSummary
    progress: Progress

    def __post_init__(self) -> None:
        # Rows of the feature files written during a batch are committed with that batch.
        self.cache_batch = CacheBatch(self.cache, self.extractor)
        # A vector model reads only the pooled vectors: cached sequences stay on disk.
        config = getattr(self.embedder, "config", None)
        self._sequences = getattr(config, "input_kind", None) != InputKind.VECTOR
        self._writer_thread: ThreadPoolExecutor | None = None
        self._planned: list[VideoTask] = []
        self._order: dict[VideoKey, int] = {}
        self._ahead: dict[VideoKey, FeatureResult | None] = {}
        self._writing: tuple[Future[float], EmbeddedBatch, int] | None = None
        # Tasks the lookups found missing whose stage-A result has not come back: while there
        # are none, no worker is decoding and stage B may use every core.
        self._misses = 0
        #: torch threads for stage B while no stage-A task is outstanding (0: leave as is).
        self.idle_threads = 0

    # -- stage A bookkeeping -------------------------------------------------------------
    def lookup(self, tasks: Sequence[VideoTask]) -> dict[VideoKey, FeatureResult]:
        """Cache hits among ``tasks`` by video key, read in bulk.

        A re-embed after a model change is nothing but cache reads; a row whose file is gone or
        unreadable is a miss and is recomputed (and re-cached) by a worker.
        """
        start = time.perf_counter()
        try:
            hits = self._lookup(tasks)
        finally:
            self.summary.stage_seconds["cache_read"] += time.perf_counter() - start
        self._misses += len(tasks) - len(hits)
        return hits

    def _lookup(self, tasks: Sequence[VideoTask]) -> dict[VideoKey, FeatureResult]:
        if self._order and any(t.video_key not in self._ahead for t in tasks):
            # The stream asks chunk by chunk: read a larger window of the run's tasks at once
            # (fewer queries; each pack is met in longer runs).
            at = min(self._order.get(t.video_key, len(self._planned)) for t in tasks)
            window = [
                t for t in self._planned[at : at + LOOKAHEAD] if t.video_key not in self._ahead
            ]
            self._ahead.update(self._read(window))
        if self._order and all(t.video_key in self._ahead for t in tasks):
            ahead = [self._ahead.pop(t.video_key) for t in tasks]
            return {r.task.video_key: r for r in ahead if r is not None}
        return {k: r for k, r in self._read(tasks).items() if r is not None}

    def plan(self, tasks: Sequence[VideoTask]) -> None:
        """The run's tasks in the order the stream will ask for them (enables look-ahead)."""
        self._planned = list(tasks)
        self._order = {t.video_key: i for i, t in enumerate(self._planned)}
        self._ahead = {}

    def _read(self, tasks: Sequence[VideoTask]) -> dict[VideoKey, FeatureResult | None]:
        """Every task's hit, None for a miss."""
        found = self.cache.get_many(
            [t.content_hash for t in tasks], self.extractor, sequences=self._sequences
        )
        return {
            t.video_key: (
                FeatureResult(t, features=found[t.content_hash], cache_hit=True)
                if t.content_hash in found
                else None
            )
            for t in tasks
        }

    def computed(self, result: FeatureResult) -> None:
        """Account for a stage-A result from a worker and cache its features (the file now,
        the row with the next batch: :meth:`flush_cache`)."""
        self._misses -= 1
        self.drain()
        self.summary.stage_seconds["features"] += result.seconds
        if result.features is None:
            return
        self.summary.decoded += 1
        start = time.perf_counter()
        self.cache_batch.add(result.task.content_hash, result.features)
        self.summary.stage_seconds["cache_write"] += time.perf_counter() - start

    def flush_cache(self) -> None:
        """Commit the feature-cache rows of the files written since the last flush."""
        start = time.perf_counter()
        self.cache_batch.flush()
        self.summary.stage_seconds["cache_write"] += time.perf_counter() - start

    def fail(self, task: VideoTask, reason: str) -> None:
        self.drain()
        self.writer.fail(task, reason)
        self.summary.failed += 1
        self.summary.failures.append(Failure(task.video_id, reason))
        self.progress.advance(1, failed=1)

    # -- stage B + write -----------------------------------------------------------------
    def embed_and_write(self, results: list[FeatureResult], *, background: bool = False) -> None:
        """Run the model on one batch in this process and commit it (``background``: in the
        writer thread, while the next batch is read and embedded; see :meth:`write`)."""
        if not results:
            return
        try:
            with self._model_threads():
                batch = embed_results(self.embedder, results)
        except Exception as error:  # noqa: BLE001 - find the video(s) the model rejects
            if len(results) == 1:
                self.fail(results[0].task, f"the model could not embed it: {error}")
                return
            logger.warning("a batch failed in the model (%s); embedding one by one", error)
            for result in results:
                self.embed_and_write([result])
            return
        bad = ~np.isfinite(batch.vectors).all(axis=1)
        if bad.any():
            for result, is_bad in zip(results, bad, strict=True):
                if is_bad:
                    self.fail(result.task, "the model produced a non-finite embedding")
            keep = ~bad
            results = [r for r, k in zip(results, keep, strict=True) if k]
            batch = EmbeddedBatch(
                tasks=[r.task for r in results],
                vectors=batch.vectors[keep],
                modalities={k: v[keep] for k, v in batch.modalities.items()},
                seconds=batch.seconds,
            )
        hits = sum(1 for r in results if r.cache_hit)
        self.write(batch, cache_hits=hits, background=background)

    @contextmanager
    def _model_threads(self) -> Iterator[None]:
        """Stage B on :attr:`idle_threads` while no stage-A task is outstanding: a re-embed
        from the cache leaves the workers idle, so stage B may use their cores too."""
        if not self.idle_threads or self._misses > 0:
            yield
            return
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.idle_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def write(self, batch: EmbeddedBatch, *, cache_hits: int, background: bool = False) -> None:
        """Commit one embedded batch (vectors computed here or by a remote actor).

        ``background``: the commit runs in one writer thread while this thread goes on
        reading and embedding (file writes, checksums, SQLite and torch all release the GIL).
        Units still commit one at a time and in order; at most one is in flight, and every
        other database write of the run (:meth:`fail`, :meth:`computed`) waits for it first,
        so the run keeps its commit order and its crash safety.
        """
        self.drain()
        if background:
            if self._writer_thread is None:
                self._writer_thread = ThreadPoolExecutor(1, thread_name_prefix="refresh-write")
            self._writing = (self._writer_thread.submit(self._commit, batch), batch, cache_hits)
            return
        self._account(batch, cache_hits, self._commit(batch))

    def _commit(self, batch: EmbeddedBatch) -> float:
        self.flush_cache()
        return self.writer.write(batch) if batch.tasks else 0.0

    def drain(self) -> None:
        """Wait for the unit committed in the background, if any (its error is raised here)."""
        if self._writing is None:
            return
        future, batch, cache_hits = self._writing
        self._writing = None
        self._account(batch, cache_hits, future.result())

    def close(self) -> None:
        """Wait for the background commit and stop the writer thread."""
        try:
            self.drain()
        finally:
            if self._writer_thread is not None:
                self._writer_thread.shutdown(wait=True)
                self._writer_thread = None

    def _account(self, batch: EmbeddedBatch, cache_hits: int, seconds: float) -> None:
        if not batch.tasks:
            return
        self.summary.stage_seconds["model"] += batch.seconds
        self.summary.stage_seconds["write"] += seconds
        self.summary.batches += 1
        self.summary.embedded += len(batch.tasks)
        self.summary.cache_hits += cache_hits
        self.progress.advance(len(batch.tasks), cache_hits=cache_hits)

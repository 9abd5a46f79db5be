"""``run_refresh``: bring every video's embedding for one model version up to date.

The run is a sequence of small committed units (see :mod:`recsys.refresh.writer`), so it can be
killed at any moment: the next run collects the orphaned shard files, selects what is still
missing or outdated, finds the features computed so far in the cache, and finishes the job. Two
runs therefore end with exactly one embedding per (video, model version). The job writes only
embeddings and video statuses: indexes are built and published by ``recsys index``, so nothing
served changes until then.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from recsys.catalog import get_model, rows_to_embed
from recsys.db import Database
from recsys.features import FeatureCache, get_extractor
from recsys.file_lock import exclusive
from recsys.ids import VideoKey
from recsys.progress import Progress
from recsys.refresh.context import RunContext
from recsys.refresh.errors import RefreshError
from recsys.refresh.local import run_local
from recsys.refresh.options import RefreshOptions, RefreshSummary
from recsys.refresh.ray_engine import run_ray
from recsys.refresh.writer import BatchWriter
from recsys.settings import Settings
from recsys.stage_a import FeatureSpec, VideoTask
from recsys.store import EmbeddingStore, compact_store
from recsys.tags import retag_after_refresh

logger = logging.getLogger(__name__)


def _resolve_model_version(database: Database, requested: str | None) -> str:
    with database.session() as session:
        model = get_model(session, requested)
        if model is None:
            if requested is None:
                raise RefreshError(
                    "no active model: train one (`recsys train`; the first model of a home is "
                    "activated) or activate one (`recsys models activate VERSION`), or pass "
                    "--model VERSION"
                )
            raise RefreshError(
                f"model version {requested!r} is not registered; see `recsys models list`"
            )
        return model.version


def select_tasks(
    database: Database, model_version: str, options: RefreshOptions
) -> list[VideoTask]:
    """The videos whose embedding for the model is missing or outdated, in key order."""
    with database.session() as session:
        model = get_model(session, model_version)
        assert model is not None
        rows = rows_to_embed(
            session, model, retry_failed=options.retry_failed, video_ids=options.video_ids
        )
    tasks = []
    for video_key, video_id, uri, content_hash in rows:
        if not content_hash:
            raise RefreshError(
                f"video {video_id} has no content hash; re-run `recsys ingest` on it"
            )
        tasks.append(VideoTask(VideoKey(video_key), video_id, uri, content_hash))
    return tasks


@contextmanager
def _driver_threads(busy_workers: int) -> Iterator[int]:
    """Stage B in this process shares the cores with the stage-A workers: give torch only the
    cores they leave free (at least one). Oversubscribed intra-op threads are not just idle,
    they spin, and slow stage B many times over. Yields the thread count before (for stage B
    while the workers are idle)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, (os.cpu_count() or 1) - busy_workers)))
    try:
        yield before
    finally:
        torch.set_num_threads(before)


#: Allocations between two young-generation passes of the cyclic garbage collector during a run.
GC_THRESHOLD = 100_000


@contextmanager
def _rare_collections() -> Iterator[None]:
    """Fewer cyclic garbage collections while the run streams its videos.

    A run makes a few small objects per video (a cache hit, its features, a result) and frees
    them by reference counting; with Python's default threshold (700 allocations) the collector
    runs every few hundred videos and walks the objects alive, the run's million tasks among
    them, which costs a cache hit more than reading it. The objects alive at the start (the
    selected tasks) are also set aside (``gc.freeze``); both settings are restored at the end.
    """
    import gc

    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(before[0], GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def run_refresh(
    settings: Settings, database: Database, options: RefreshOptions | None = None
) -> RefreshSummary:
    """Embed every selected video with one model version; see the module docstring."""
    options = options or RefreshOptions()
    if options.batch_size < 1:
        raise RefreshError(f"batch size must be at least 1, got {options.batch_size}")
    started = time.perf_counter()
    model_version = _resolve_model_version(database, options.model_version)
    with _one_run_per_model(settings, model_version):
        summary = _run_locked(settings, database, options, model_version, started)
        # Inside the lock: no writer adds rows while the batch shards are merged.
        summary.compaction = compact_store(
            EmbeddingStore(settings),
            database,
            model_version,
            target_rows=settings.store_compact_rows,
            min_small_shards=settings.store_compact_min_shards,
        ).as_dict()
    if summary.decoded:  # the run cached features in packs of one batch each: merge them
        summary.feature_compaction = _compact_features(settings, database, model_version)
    # With a tags model, what this run embedded is tagged too (recsys.tags; never fatal).
    summary.tags = retag_after_refresh(settings, database, model_version)
    return summary


def _compact_features(
    settings: Settings, database: Database, model_version: str
) -> list[dict[str, Any]]:
    """Compact the feature cache of the model's extractor (logged, never fatal: the cache
    reads the same either way)."""
    try:
        with database.session() as session:
            model = get_model(session, model_version)
            name = model.extractor if model is not None else None
        if name is None:
            return []
        extractor = get_extractor(name, settings=settings)
        return [r.as_dict() for r in FeatureCache(settings, database).compact(extractor)]
    except Exception as error:  # noqa: BLE001 - an optimisation; the next run tries again
        logger.warning("feature cache compaction failed: %s", error)
        return []


@contextmanager
def _one_run_per_model(settings: Settings, model_version: str) -> Iterator[None]:
    """One refresh per (home, model version) at a time: a second one would collect the first
    one's shard files in flight as garbage, so it is refused at once."""
    settings.embeddings_dir.mkdir(parents=True, exist_ok=True)
    path = settings.embeddings_dir / f".{model_version}.lock"
    with exclusive(path, blocking=False, optional=False) as locked:
        if not locked:
            raise RefreshError(
                f"another `recsys embed` for model {model_version} is running in "
                f"{settings.resolved_home} (lock {path}); wait for it to finish"
            )
        yield


def _run_locked(
    settings: Settings,
    database: Database,
    options: RefreshOptions,
    model_version: str,
    started: float,
) -> RefreshSummary:
    from recsys.models import load_embedder  # torch: only once there is work

    store = EmbeddingStore(settings)
    with database.session() as session:
        removed = store.collect_garbage(session, model_version)
    if removed:
        logger.info("removed %d orphaned shard files of model %s", removed, model_version)
    tasks = select_tasks(database, model_version, options)
    summary = RefreshSummary(
        model_version=model_version,
        engine=options.engine,
        workers=options.resolved_workers(),
        batch_size=options.batch_size,
        selected=len(tasks),
        garbage_collected=removed,
    )
    if not tasks:
        summary.seconds = time.perf_counter() - started
        return summary

    embedder = load_embedder(settings, database, model_version)
    extractor = get_extractor(embedder.extractor, settings=settings)
    if str(extractor.version) != str(embedder.extractor_version):
        raise RefreshError(
            f"model {model_version} was trained on features of {embedder.extractor} "
            f"version {embedder.extractor_version}, but the installed extractor is version "
            f"{extractor.version}; train a model for it or install the matching version"
        )
    spec = FeatureSpec.for_model(settings, embedder.extractor, str(embedder.extractor_version))
    label = f"embed {model_version}"
    with (
        _rare_collections(),
        Progress(
            label,
            len(tasks),
            unit="videos",
            bar=options.progress,
            transient=False,
            logger=logging.getLogger("recsys.refresh.progress"),
            log_every_s=5.0,
            failures=True,
            verb="embed",
        ) as progress,
    ):
        ctx = RunContext(
            settings=settings,
            database=database,
            options=options,
            spec=spec,
            embedder=embedder,
            extractor=extractor,
            cache=FeatureCache(settings, database),
            writer=BatchWriter(database, store, model_version, str(embedder.extractor_version)),
            summary=summary,
            progress=progress,
        )
        with _driver_threads(summary.workers if options.engine == "local" else 0) as idle:
            ctx.idle_threads = idle
            try:
                if options.engine == "ray":
                    run_ray(ctx, tasks)
                elif options.engine == "local":
                    run_local(ctx, tasks)
                else:
                    raise RefreshError(f"unknown engine {options.engine!r}; use local or ray")
            finally:
                try:
                    ctx.close()  # the unit committing in the background, if any
                finally:
                    ctx.flush_cache()  # features of videos that failed later are kept
    summary.seconds = time.perf_counter() - started
    logger.info(
        "embedded %d videos with model %s in %.1f s (%.1f videos/s, %d cache hits, %d failed)",
        summary.embedded,
        model_version,
        summary.seconds,
        summary.videos_per_s,
        summary.cache_hits,
        summary.failed,
    )
    return summary

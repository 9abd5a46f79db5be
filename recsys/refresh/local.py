"""Local engine: stage A on the kept worker pool (:mod:`recsys.stage_a`), stage B and writes
in this process, one batch at a time as the features stream in."""

from __future__ import annotations

from recsys.refresh.context import RunContext
from recsys.stage_a import FeatureResult, VideoTask, stream_features

# Rows per committed unit when a batch holds only feature-cache hits (measured with
# `bench/scale.py --embed-videos`: 64-row units spend most of a re-embed in commits).
CACHED_BATCH = 4096


def run_local(ctx: RunContext, tasks: list[VideoTask]) -> None:
    """Compute, embed and commit ``tasks`` with ``ctx.summary.workers`` processes."""
    batch: list[FeatureResult] = []
    stream = stream_features(
        tasks,
        ctx.spec,
        workers=ctx.summary.workers,
        fn=ctx.options.feature_fn,
        lookup=ctx.lookup,
    )
    hits_only = True
    for result in stream:
        if not result.cache_hit:
            ctx.computed(result)
        if result.error is not None or result.features is None:
            ctx.fail(result.task, result.error or "no features")
            continue
        batch.append(result)
        hits_only = hits_only and result.cache_hit
        # Cache hits are cheap to redo, so they are embedded and committed in larger units:
        # per-commit costs (a store file, a transaction) dominate a re-embed from the cache.
        limit = max(ctx.summary.batch_size, CACHED_BATCH) if hits_only else ctx.summary.batch_size
        if len(batch) >= limit:
            ctx.embed_and_write(batch)
            batch, hits_only = [], True
    ctx.embed_and_write(batch)

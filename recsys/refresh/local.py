"""Local engine: stage A on the kept worker pool (:mod:`recsys.stage_a`), stage B and writes
in this process, one batch at a time as the features stream in."""

from __future__ import annotations

from recsys.refresh.context import RunContext
from recsys.stage_a import FeatureResult, VideoTask, stream_features

# Rows per committed unit when a batch holds only feature-cache hits (measured with
# `bench/reembed.py`: 64-row units spend most of a re-embed in commits), at least.
CACHED_BATCH = 4096
# ...and at most: a unit is one store file, so a re-embed of N cached videos writes about
# CACHED_UNITS files, fewer than the store's compaction threshold (16 by default): a large
# re-embed needs no compaction pass that rewrites every row it just wrote.
CACHED_UNITS = 8
# Cached units commit in a writer thread while the next one is read and embedded, so the
# commit of one unit overlaps the work on the next (`bench/reembed.py --variants
# packed,threaded,ref` compares both; the README has the figures). Where the thread turns
# out slower (a machine too loaded to overlap anything), turn it off here.
BACKGROUND_WRITES = True


def cached_unit(ctx: RunContext, tasks: int) -> int:
    """Rows per committed unit of cache hits for a run of ``tasks`` videos."""
    settings = ctx.settings
    units = max(1, min(CACHED_UNITS, settings.store_compact_min_shards // 2))
    wanted = -(-tasks // units)
    return max(ctx.summary.batch_size, CACHED_BATCH, min(wanted, settings.store_compact_rows))


def run_local(ctx: RunContext, tasks: list[VideoTask]) -> None:
    """Compute, embed and commit ``tasks`` with ``ctx.summary.workers`` processes."""
    batch: list[FeatureResult] = []
    ctx.plan(tasks)  # the stream looks tasks up in this order
    stream = stream_features(
        tasks,
        ctx.spec,
        workers=ctx.summary.workers,
        fn=ctx.options.feature_fn,
        lookup=ctx.lookup,
    )
    hits_only = True
    cached_limit = cached_unit(ctx, len(tasks))
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
        limit = cached_limit if hits_only else ctx.summary.batch_size
        if len(batch) >= limit:
            ctx.embed_and_write(batch, background=hits_only and BACKGROUND_WRITES)
            batch, hits_only = [], True
    ctx.embed_and_write(batch, background=hits_only and BACKGROUND_WRITES)
    ctx.drain()

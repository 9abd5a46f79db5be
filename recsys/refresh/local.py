"""Local engine: stage A on the kept worker pool (:mod:`recsys.stage_a`), stage B and writes
in this process, one batch at a time as the features stream in."""

from __future__ import annotations

from recsys.refresh.context import RunContext
from recsys.stage_a import FeatureResult, VideoTask, stream_features


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
    for result in stream:
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

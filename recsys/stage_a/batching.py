"""Deep encoders in one place, batched across videos, fed by the decode workers.

For a spec with a network (:attr:`CompositeExtractor.deep`), the worker pool only decodes
(:func:`~recsys.stage_a.tasks.prepare_inputs`); this process holds the one copy of each network
and encodes the decoded videos in batches of :data:`BATCH_VIDEOS` (every frame, clip or audio
patch of the batch goes through the network together). With a GPU (setting ``device``: auto,
cuda) the networks run there under float16 autocast: one model copy per GPU, never one per
decode process. On a CPU the batch runs on all cores while the workers decode the next videos.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator

from recsys.device import resolve_device
from recsys.stage_a.tasks import (
    FeatureResult,
    FeatureSpec,
    VideoTask,
    extractor_for,
    prepare_inputs,
)

log = logging.getLogger(__name__)

#: Decoded videos per encoder batch.
BATCH_VIDEOS = 8

Stream = Callable[..., Iterator[FeatureResult]]


@contextlib.contextmanager
def _all_cores() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def encode_results(spec: FeatureSpec, pending: list[FeatureResult]) -> list[FeatureResult]:
    """Encode the decoded inputs of ``pending`` in one batch; a failure stays with its video."""
    from recsys.features import FeatureError
    from recsys.features.composite import CompositeExtractor

    extractor = extractor_for(spec)
    assert isinstance(extractor, CompositeExtractor)
    device = str(resolve_device(spec.device))
    extractor.to(device)
    inputs = [result.inputs for result in pending if result.inputs is not None]
    start = time.perf_counter()
    try:
        with _all_cores() if device == "cpu" else contextlib.nullcontext():
            outcomes = extractor.encode_batch(inputs)  # type: ignore[arg-type]
    except FeatureError as error:  # the networks cannot load (weights missing or wrong)
        outcomes = [error] * len(pending)
    share = (time.perf_counter() - start) / max(1, len(pending))
    for result, outcome in zip(pending, outcomes, strict=True):
        if result.inputs is not None:
            result.reused = tuple(sorted(result.inputs.cached))
        result.inputs = None
        result.seconds += share
        result.timings["encode"] = share
        if isinstance(outcome, FeatureError):
            result.error = str(outcome)
        else:
            result.features = outcome
    return pending


def stream_encoded(
    stream: Stream,
    tasks: list[VideoTask],
    spec: FeatureSpec,
    *,
    workers: int,
    lookup: Callable[[list[VideoTask]], dict] | None = None,  # type: ignore[type-arg]
) -> Iterator[FeatureResult]:
    """``stream`` (the pool) decoding with :func:`prepare_inputs`, encoded here in batches."""
    pending: list[FeatureResult] = []
    for result in stream(tasks, spec, workers=workers, fn=prepare_inputs, lookup=lookup):
        if result.inputs is None:  # a cache hit or a failed decode
            yield result
            continue
        pending.append(result)
        if len(pending) >= BATCH_VIDEOS:
            yield from encode_results(spec, pending)
            pending = []
    if pending:
        yield from encode_results(spec, pending)

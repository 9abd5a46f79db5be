"""Stage B of a refresh: one batch of stage-A features through the model, in batch order."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from recsys.stage_a import FeatureResult, VideoTask

if TYPE_CHECKING:
    from recsys.models import Embedder


@dataclass
class EmbeddedBatch:
    """Stage-B output for the successful members of one batch, in batch order."""

    tasks: list[VideoTask]
    vectors: np.ndarray
    modalities: dict[str, np.ndarray]
    seconds: float


def embed_results(embedder: Embedder, results: list[FeatureResult]) -> EmbeddedBatch:
    """Stage B for one batch of successful feature results."""
    start = time.perf_counter()
    vectors, modalities = embedder.embed([r.features for r in results if r.features is not None])
    return EmbeddedBatch(
        tasks=[r.task for r in results],
        vectors=np.asarray(vectors, dtype=np.float32),
        modalities={k: np.asarray(v, dtype=np.float32) for k, v in modalities.items()},
        seconds=time.perf_counter() - start,
    )

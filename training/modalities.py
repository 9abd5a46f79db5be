"""Which modalities a run trains on when it names none: read off the run's own signal.

A model can only re-weight what its content features carry, and it learns little of that from a
small catalog: on real clips, EfficientNet-Lite frames fused at equal weight with the hand-made
audio descriptors rank categories worse than the frames alone, and no trained fusion won that
back, while a visual model did gain over its own content features. Where each modality carries
part of the answer (the synthetic corpus pairs topics visually and, differently, by audio) the
fusion is far ahead. So before training, the content baseline of both modalities and of the
visual one alone rank the training videos against their own related pairs (or categories); the
visual modality alone is chosen only when it ranks them clearly better. No held-out video and no
cold video is consulted. The visual modality is always kept: every video has frames.
"""

from __future__ import annotations

import logging

import numpy as np

from recsys.choices import Modality
from training.baselines import content_baseline_vectors
from training.data import TrainingData
from training.evaluation import relevance_from_labels, relevance_from_pairs, retrieval_metrics

log = logging.getLogger(__name__)

BOTH: tuple[str, ...] = (Modality.VISUAL, Modality.AUDIO)
#: mAP the visual baseline must lead the fused one by on the training signal.
MARGIN = 0.02
#: Videos the choice ranks at most (a seeded sample of those with a signal): the ranking is
#: quadratic, and a few thousand videos decide it as well as a million.
MAX_VIDEOS = 2000


def choose_modalities(data: TrainingData, seed: int = 0) -> list[str]:
    """Both modalities, or the visual one alone when its content baseline ranks the training
    signal at least ``MARGIN`` mAP better (see the module docstring)."""
    if not any(f.audio is not None for f in data.features):
        return [Modality.VISUAL]
    subset = _with_signal(data, seed)
    relevant = _relevance(subset)
    if subset is None or relevant is None:
        return list(BOTH)
    scores = {
        modalities: retrieval_metrics(
            content_baseline_vectors(subset.features, modalities), relevant
        )["map"]
        for modalities in (BOTH, (Modality.VISUAL,))
    }
    chosen = (Modality.VISUAL,) if scores[(Modality.VISUAL,)] >= scores[BOTH] + MARGIN else BOTH
    log.info(
        "modalities %s: content mAP on the training signal %.3f fused, %.3f visual alone",
        "+".join(chosen),
        scores[BOTH],
        scores[(Modality.VISUAL,)],
    )
    return list(chosen)


def _with_signal(data: TrainingData, seed: int) -> TrainingData | None:
    """The videos with a related pair (else a category), at most ``MAX_VIDEOS`` of them."""
    index = np.unique(data.pairs) if len(data.pairs) else np.flatnonzero(data.labels >= 0)
    if index.shape[0] < 3:
        return None
    if index.shape[0] > MAX_VIDEOS:
        index = np.sort(np.random.default_rng([seed, 29]).choice(index, MAX_VIDEOS, replace=False))
    return data.subset(index)


def _relevance(data: TrainingData | None) -> list[np.ndarray | None] | None:
    if data is None:
        return None
    relevant = (
        relevance_from_pairs(len(data), data.pairs)
        if len(data.pairs)
        else relevance_from_labels(data.labels)
    )
    return relevant if any(r is not None and len(r) for r in relevant) else None

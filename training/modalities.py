"""Which modalities a run trains on, and how much each weighs, read off the run's own signal.

A model can only re-weight what its content features carry, and it learns little of that from a
small catalog. On real clips, EfficientNet-Lite frames fused at equal weight with the hand-made
audio descriptors rank categories worse than the frames alone (precision@5 0.274 vs 0.326 on
real-av), and no training won that back; with the audio block at a quarter weight (about a fifth
of the fused norm) the fusion keeps the frames' precision@5 and adds mAP (0.586 -> 0.605), and a
model started there gains on cold videos. Where each modality carries part of the answer (the
synthetic corpus pairs topics visually and, differently, by audio) equal weights are far ahead
(its content category match@10 is 0.87 at equal weights, 0.55 at a quarter).

So before training, the content baseline of each candidate (both modalities at equal weight,
the audio at :data:`LIGHT_AUDIO`, the visual modality alone) ranks the training videos against
their own related pairs (or categories); equal weights are kept unless another candidate ranks
them at least :data:`MARGIN` mAP better, and then the best one is chosen. No held-out video and
no cold video is consulted. The chosen weights go into the model's config: its residual towers
start from that weighting, and its content baseline (``training.baselines``) uses the same. The
visual modality is always kept: every video has frames.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.choices import Modality
from recsys.models.config import EQUAL_WEIGHTS
from training.baselines import content_baseline_vectors
from training.data import TrainingData
from training.evaluation import relevance_from_labels, relevance_from_pairs, retrieval_metrics

log = logging.getLogger(__name__)

BOTH: tuple[str, ...] = (Modality.VISUAL, Modality.AUDIO)
#: The audio block's weight of the light-audio candidate.
LIGHT_AUDIO = 0.25
#: mAP a candidate must lead equal weights by on the training signal to replace them.
MARGIN = 0.02
#: Videos the choice ranks at most (a seeded sample of those with a signal): the ranking is
#: quadratic, and a few thousand videos decide it as well as a million.
MAX_VIDEOS = 2000


@dataclass(frozen=True)
class Inputs:
    """The modalities a model trains on and each one's weight in its content features."""

    modalities: list[str]
    weights: dict[str, float]


def choose_inputs(
    data: TrainingData, seed: int = 0, modalities: Sequence[str] | None = None
) -> Inputs:
    """The modalities (``modalities`` when given) and weights the training signal ranks best
    (see the module docstring); equal weights where there is no signal or no audio."""
    given = list(modalities) if modalities else None
    if not any(f.audio is not None for f in data.features):
        return Inputs(given or [Modality.VISUAL], dict(EQUAL_WEIGHTS))
    candidates: dict[str, tuple[tuple[str, ...], dict[str, float]]] = {
        "equal": (BOTH, dict(EQUAL_WEIGHTS)),
        "light_audio": (BOTH, {**EQUAL_WEIGHTS, Modality.AUDIO.value: LIGHT_AUDIO}),
        "visual": ((Modality.VISUAL,), dict(EQUAL_WEIGHTS)),
    }
    if given is not None:  # the modalities are set: only the weights are chosen
        if set(given) != set(BOTH):
            return Inputs(given, dict(EQUAL_WEIGHTS))
        candidates.pop("visual")
    subset = _with_signal(data, seed)
    relevant = _relevance(subset)
    if subset is None or relevant is None:
        return Inputs(given or list(BOTH), dict(EQUAL_WEIGHTS))
    scores = {
        name: retrieval_metrics(content_baseline_vectors(subset.features, m, weights=w), relevant)[
            "map"
        ]
        for name, (m, w) in candidates.items()
    }
    best = max(scores, key=lambda name: scores[name])
    chosen = best if scores[best] >= scores["equal"] + MARGIN else "equal"
    log.info(
        "content features %s: content mAP on the training signal %s",
        chosen,
        ", ".join(f"{name} {score:.3f}" for name, score in scores.items()),
    )
    chosen_modalities, weights = candidates[chosen]
    return Inputs(given or list(chosen_modalities), weights)


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

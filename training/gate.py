"""The model gate: a learned embedding that is worse than its own inputs never reaches users.

The twin of the index recall gate. ``recsys train`` scores the new model and the content
baseline (the un-learned pooled features, :mod:`training.baselines`) on held-out validation data
of the run's own signal: held-out related pairs, held-out category members, or two windows of
each held-out video (self-supervised). The model passes when

    model[metric] >= content_baseline[metric] + min_gain

on mean average precision (:data:`GATE_METRIC`: it reads the whole ranking, so it
separates models even on a small split; for same-source windows it is the reciprocal rank). A model
that fails is registered as ``rejected`` with both figures and the reason and is never
activated. A validation split with fewer than :data:`MIN_HELD_OUT_PAIRS` held-out positive pairs
is too small to tell: the model is registered as ``ungated`` and activated only with ``force``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recsys.db.models import ModelStatus
from training.data import TrainingData

#: Fewer held-out positive pairs than this cannot tell a model from its baseline.
MIN_HELD_OUT_PAIRS = 10
#: The gate (and early stopping) compare mAP: it reads the whole ranking, so it tells models
#: apart even on a small validation split (where recall@10 sees almost the whole gallery).
GATE_METRIC = "map"


@dataclass(frozen=True)
class GateResult:
    """The gate's figures and verdict, as recorded with the model version."""

    metric: str
    model: float | None
    content_baseline: float | None
    min_gain: float
    held_out_pairs: int
    status: ModelStatus  # ready (passed), ungated (too small to tell) or rejected
    reason: str

    @property
    def passed(self) -> bool:
        return self.status == ModelStatus.READY

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = str(self.status)
        return out


def held_out_pairs(relevance: str, val: TrainingData | None) -> int:
    """How many positive pairs the validation split holds for this kind of relevance.

    ``pairs``: held-out related pairs; ``categories``: pairs of held-out videos that share a
    category; ``same_source``: one pair of windows per held-out video.
    """
    if val is None:
        return 0
    if relevance == "pairs":
        return int(len(val.pairs))
    if relevance == "categories":
        _, counts = np.unique(val.labels[val.labels >= 0], return_counts=True)
        return int((counts * (counts - 1) // 2).sum())
    return len(val)


def gate_model(
    validation: dict[str, Any] | None, metric: str, pairs: int, min_gain: float = 0.0
) -> GateResult:
    """The verdict for a model from its validation report (``evaluate_model``'s output)."""
    model = base = None
    if validation is not None and "model" in validation and "content_baseline" in validation:
        model = float(validation["model"][metric])
        base = float(validation["content_baseline"][metric])
    if model is None or base is None or pairs < MIN_HELD_OUT_PAIRS:
        reason = (
            f"validation too small to gate: {pairs} held-out pairs (at least "
            f"{MIN_HELD_OUT_PAIRS} needed); add videos or pairs, or pass --force to activate "
            "it anyway"
        )
        return GateResult(metric, model, base, min_gain, pairs, ModelStatus.UNGATED, reason)
    figures = f"validation {metric} {model:.4f} vs content baseline {base:.4f}"
    if model >= base + min_gain - 1e-9:
        reason = f"passed the model gate: {figures} (min gain {min_gain:g})"
        return GateResult(metric, model, base, min_gain, pairs, ModelStatus.READY, reason)
    reason = (
        f"rejected by the model gate: {figures}, below the baseline + min gain {min_gain:g}; "
        "the un-learned content features rank better than this model"
    )
    return GateResult(metric, model, base, min_gain, pairs, ModelStatus.REJECTED, reason)

"""Choosing training settings on the warm signal alone (inner cross-validation).

Cold videos have no pair and no label, so nothing about them may steer the choice of
hyper-parameters, epochs or fusion. :func:`select_on_warm` splits the *warm* videos (those with
related pairs) into seeded folds; for each fold and each candidate setting a model trains on the
pairs among the other folds and, after every epoch, ranks a gallery of the warm videos only: the
queries are the held-out videos' pairs (both directions), so a held-out video plays a cold one
(its own pairs unseen) against a gallery the model did train on, as the cold-start protocol does.
The epoch ``-1`` of each curve is the untrained model, which for residual towers *is* the
content baseline: when no candidate beats it, the selection says so and the caller keeps the
content ranking (``epochs == 0``).

The input transforms (standardisers, PCA skip paths) and the multi-task self-supervised loss
may read the features of the whole catalog, cold videos included: they use no pair and no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from recsys.choices import PairSource
from recsys.features import VideoFeatures
from training.config import TrainConfig
from training.data import TrainingData
from training.errors import TrainingError
from training.loop import FitResult, fit

#: Warm-video folds of the inner cross-validation.
INNER_FOLDS = 4
#: Candidate settings (overrides of the run's TrainConfig) the inner validation chooses among:
#: the pair loss alone, and with the self-supervised loss over the catalog at two weights.
INNER_CANDIDATES: tuple[dict[str, Any], ...] = (
    {"self_weight": 0.0},
    {"self_weight": 0.5},
    {"self_weight": 1.0},
)
#: The multi-task settings for training on co-watch pairs when many videos are cold, chosen on
#: the inner validation alone (warm clips of real-av's cold-start protocol, seeds 0-9, 4 folds;
#: no cold query consulted): early fusion, self-supervised weight 0.5, a small learning rate and
#: the centre of the widest plateau of held-out warm mAP (64-104 epochs, +0.04 mAP over the
#: content ranking, where the pair loss alone peaks at +0.025 after ~20 epochs and then decays).
MULTITASK_COLD_START: dict[str, Any] = {
    "fusion": "early",
    "self_weight": 0.5,
    "lr": 2.5e-4,
    "epochs": 80,
}


@dataclass(frozen=True)
class Selection:
    """The chosen candidate and epoch count with the inner-validation figures behind them."""

    options: dict[str, Any]  # the chosen candidate's overrides
    epochs: int  # epochs to train on all warm pairs; 0: keep the untrained (content) model
    score: float  # its mean held-out mAP over the folds
    content_baseline: float  # the untrained model's (epoch -1) mean held-out mAP
    curves: list[list[float]]  # per candidate: mean held-out mAP after epoch -1, 0, 1, ...
    held_out_queries: int  # warm videos scored over all folds

    def to_dict(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "epochs": self.epochs,
            "score": round(self.score, 4),
            "content_baseline": round(self.content_baseline, 4),
            "held_out_queries": self.held_out_queries,
        }


def warm_folds(train: TrainingData, folds: int, seed: int) -> list[np.ndarray]:
    """Seeded folds of the videos that have at least one related pair (indices into ``train``);
    fewer than ``folds`` when there are too few such videos for two in each fold."""
    paired = np.unique(train.pairs) if len(train.pairs) else np.zeros(0, np.int64)
    folds = min(folds, paired.shape[0] // 2)
    if folds < 2:
        raise TrainingError(
            f"inner validation needs at least 4 videos with related pairs, got "
            f"{paired.shape[0]}; import more pairs or train without selection"
        )
    order = np.random.default_rng([seed, 17]).permutation(paired)
    return [np.sort(order[k::folds]) for k in range(folds)]


def fold_data(train: TrainingData, held: np.ndarray) -> tuple[TrainingData, TrainingData]:
    """Training videos without the held-out ones, and the validation set: every training
    video as gallery, queried through the pairs that touch a held-out video."""
    keep = np.setdiff1d(np.arange(len(train)), held)
    touches = np.isin(train.pairs, held).any(axis=1)
    val = TrainingData(
        features=train.features,
        labels=np.full(len(train), -1, dtype=np.int64),
        pairs=train.pairs[touches],
        weights=train.weights[touches] if len(train.weights) else train.weights,
    )
    return train.subset(keep), val


def select_on_warm(
    config: TrainConfig,
    train: TrainingData,
    candidates: Sequence[dict[str, Any]] = INNER_CANDIDATES,
    *,
    folds: int = INNER_FOLDS,
    catalog: Sequence[VideoFeatures] | None = None,
    device: torch.device | None = None,
) -> Selection:
    """The candidate and epoch count with the best mean held-out mAP (see module docstring).

    ``train`` holds the warm videos and their related pairs only; ``config.epochs`` bounds the
    curves. Ties go to the earlier candidate and the fewer epochs.
    """
    if config.pairs != PairSource.RELATED:
        raise TrainingError("inner validation on warm videos needs --pairs related")
    parts = warm_folds(train, folds, config.seed)
    curves: list[list[float]] = []
    for candidate in candidates:
        run = replace(config, **candidate, patience=config.epochs, progress=False)
        per_fold = []
        for held in parts:
            fold_train, val = fold_data(train, held)
            if len(fold_train.pairs) == 0 or len(val.pairs) == 0:
                continue
            result: FitResult = fit(run, fold_train, val, device=device, catalog=catalog)
            per_fold.append([float(r["score"]) for r in result.history])
        if not per_fold:
            raise TrainingError("inner validation: no fold has pairs to train and to score on")
        length = min(len(c) for c in per_fold)
        curves.append([float(np.mean([c[e] for c in per_fold])) for e in range(length)])
    baseline = float(np.mean([c[0] for c in curves]))
    best, best_epoch, best_score = 0, 0, baseline
    for i, curve in enumerate(curves):
        for position, score in enumerate(curve[1:], start=1):
            if score > best_score + 1e-9:
                best, best_epoch, best_score = i, position, score
    return Selection(
        options=dict(candidates[best]) if best_epoch else {},
        epochs=best_epoch,
        score=best_score,
        content_baseline=baseline,
        curves=curves,
        held_out_queries=int(sum(p.shape[0] for p in parts)),
    )


def fit_selected(
    config: TrainConfig,
    train: TrainingData,
    selection: Selection,
    *,
    catalog: Sequence[VideoFeatures] | None = None,
    device: torch.device | None = None,
) -> FitResult:
    """Train on all warm pairs with the selected candidate for the selected epochs (0 epochs:
    the untrained residual model, i.e. the content baseline's ranking)."""
    run = replace(config, **selection.options, epochs=selection.epochs, progress=False)
    return fit(run, train, None, device=device, catalog=catalog)

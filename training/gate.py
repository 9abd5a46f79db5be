"""The model gate: a learned embedding that is worse than its own inputs never reaches users.

The twin of the index recall gate. A run holds out a seeded set of *videos* before training:
every related pair that touches a held-out video, and every held-out video's category, is kept
out of training, as are its features (the input transforms and the self-supervised loss never see
it). Each held-out video then queries the whole catalog, like a never-seen upload, and its
relevant items are its related partners or the other members of its category, wherever they
are. For ``--pairs self`` the held-out videos are scored among themselves: two quarter-length
windows of each, a window's relevant item being the other one.

The model and the content baseline (the un-learned pooled features, :mod:`training.baselines`)
are scored the same way, and the model passes when

    model[metric] >= content_baseline[metric] + min_gain

on mean average precision (:data:`GATE_METRIC`: it reads the whole ranking, so it separates
models even on a small split; for same-source windows it is the reciprocal rank). A model that
fails, or whose best epoch is the untrained model (no epoch beat the content features), is
registered as ``rejected`` with both figures and the reason and is never activated. A held-out
set with fewer than :data:`MIN_HELD_OUT_PAIRS` positive pairs or :data:`MIN_HELD_OUT_VIDEOS`
queries is too small to tell: the model is registered as ``ungated`` (activated only with
``force``) and the reason says how many more pairs or videos, or which ``--val-fraction``,
would gate it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recsys.choices import PairSource
from recsys.db.models import ModelStatus
from training.config import TrainConfig
from training.data import TrainingData
from training.model_evaluation import validation_relevance

#: Fewer held-out positive pairs than this cannot tell a model from its baseline.
MIN_HELD_OUT_PAIRS = 10
#: Nor can fewer held-out videos with a relevant item: a handful of queries is a coin toss.
MIN_HELD_OUT_VIDEOS = 5
#: A catalog smaller than this holds nothing out (there is too little to train on already).
MIN_VIDEOS_TO_HOLD_OUT = 10
#: The gate (and early stopping) compare mAP: it reads the whole ranking, so it tells models
#: apart even on a small validation split (where recall@10 sees almost the whole gallery).
GATE_METRIC = "map"
#: What the gate says when early stopping kept the untrained model (epoch -1).
NO_EPOCH_BEAT = "no epoch beat the content features"
#: The largest ``--val-fraction`` the gate's advice suggests: more would starve training.
MAX_ADVISED_FRACTION = 0.5


@dataclass(frozen=True)
class HeldOut:
    """What validation scores: ``queries`` (indices into ``data``) each rank all of ``data``.

    For the gate's split, ``data`` is every catalog video with its labels and only the related
    pairs that touch a held-out video; a plain validation set is its own queries and gallery.
    """

    data: TrainingData
    queries: np.ndarray

    @classmethod
    def of(cls, data: TrainingData) -> HeldOut:
        """A validation set on its own: every video queries the others."""
        return cls(data, np.arange(len(data), dtype=np.int64))

    def __len__(self) -> int:
        return int(self.queries.shape[0])


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
    held_out_videos: int = 0  # held-out videos with at least one relevant item
    best_epoch: int | None = None  # -1: no epoch beat the untrained model

    @property
    def passed(self) -> bool:
        return self.status == ModelStatus.READY

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = str(self.status)
        return out


def hold_out_videos(
    data: TrainingData, config: TrainConfig, fraction: float | None = None
) -> np.ndarray:
    """The seeded, sorted indices of the videos the gate holds out (``config.val_fraction``).

    Only videos that carry the run's signal are held out: a share of the videos with a related
    pair, of each category's members (one member of each category always trains), or of every
    video for ``--pairs self``.
    """
    fraction = config.val_fraction if fraction is None else fraction
    rng = np.random.default_rng([config.seed, 7])
    n = len(data)
    if fraction <= 0 or n < MIN_VIDEOS_TO_HOLD_OUT:
        return np.zeros(0, dtype=np.int64)
    if config.pairs == PairSource.CATEGORIES and (data.labels >= 0).any():
        # Stratified: each member's key is its position in a shuffled category over the
        # category's size, so the smallest keys are a proportional share of every category.
        keys: list[tuple[float, int]] = []
        for label in np.unique(data.labels[data.labels >= 0]):
            members = rng.permutation(np.flatnonzero(data.labels == label))
            jitter = rng.random(size=int(members.shape[0]))
            size = members.shape[0]
            keys += [((p + jitter[p]) / size, int(i)) for p, i in enumerate(members[:-1])]
        labelled = int((data.labels >= 0).sum())
        take = min(int(round(labelled * fraction)), len(keys))
        held = [i for _, i in sorted(keys)[:take]]
    elif config.pairs == PairSource.RELATED and len(data.pairs):
        paired = np.unique(data.pairs)
        held = list(rng.permutation(paired)[: int(round(paired.shape[0] * fraction))])
    else:
        held = list(rng.permutation(n)[: int(round(n * fraction))])
    return np.array(sorted(int(i) for i in held), dtype=np.int64)


def split_validation(
    data: TrainingData, config: TrainConfig, fraction: float | None = None
) -> tuple[np.ndarray, HeldOut | None]:
    """The training videos' indices and what the gate scores (None: nothing held out)."""
    held = hold_out_videos(data, config, fraction)
    train_index = np.setdiff1d(np.arange(len(data)), held)
    if not held.shape[0]:
        return train_index, None
    if config.pairs == PairSource.SELF:
        return train_index, HeldOut.of(data.subset(held))
    touched = np.zeros(len(data), dtype=bool)
    touched[held] = True
    keep = (
        touched[data.pairs[:, 0]] | touched[data.pairs[:, 1]]
        if len(data.pairs)
        else np.zeros(0, dtype=bool)
    )
    gallery = TrainingData(
        features=data.features,
        labels=data.labels,
        pairs=data.pairs[keep],
        weights=data.weights[keep] if len(data.weights) else data.weights,
        keys=data.keys,
        content_hashes=data.content_hashes,
    )
    return train_index, HeldOut(gallery, held)


@dataclass(frozen=True)
class Evidence:
    """How much the held-out set can tell: its positive pairs and the queries that have one."""

    relevance: str
    pairs: int
    videos: int

    @property
    def enough(self) -> bool:
        return self.pairs >= MIN_HELD_OUT_PAIRS and self.videos >= MIN_HELD_OUT_VIDEOS


def evidence(config: TrainConfig, held: HeldOut | None) -> Evidence:
    """The distinct positive pairs with a held-out end, and the held-out videos that have one.

    ``same_source``: one pair of windows per held-out video.
    """
    if held is None:
        kind = "same_source" if config.pairs == PairSource.SELF else str(config.pairs)
        return Evidence(kind, 0, 0)
    kind, relevant = validation_relevance(config, held.data)
    if kind == "same_source":
        return Evidence(kind, len(held), len(held))
    pairs: set[tuple[int, int]] = set()
    videos = 0
    for q in held.queries:
        partners = relevant[int(q)]
        if partners is None or not len(partners):
            continue
        videos += 1
        pairs.update((min(int(q), int(p)), max(int(q), int(p))) for p in partners)
    return Evidence(kind, len(pairs), videos)


def sizing_advice(data: TrainingData, config: TrainConfig, found: Evidence) -> str:
    """What would make the held-out set large enough to gate: more signal, or a larger
    ``--val-fraction`` (the smallest one, up to :data:`MAX_ADVISED_FRACTION`, that does)."""
    n = len(data)
    if n < MIN_VIDEOS_TO_HOLD_OUT:
        return f"add at least {MIN_VIDEOS_TO_HOLD_OUT - n} videos"
    fraction = config.val_fraction if config.val_fraction > 0 else 0.2
    short_pairs = max(MIN_HELD_OUT_PAIRS - found.pairs, 0)
    short_videos = max(MIN_HELD_OUT_VIDEOS - found.videos, 0)
    more_videos = math.ceil(short_videos / fraction)
    options = []
    if found.relevance == "pairs":
        total = len({(min(a, b), max(a, b)) for a, b in data.pairs.tolist()})
        share = found.pairs / total if total and found.pairs else 1 - (1 - fraction) ** 2
        more_pairs = math.ceil(short_pairs / share)
        if short_videos:
            options.append(
                f"add about {max(more_pairs, more_videos)} related pairs that bring about "
                f"{more_videos} more videos into the related graph"
            )
        else:
            options.append(f"add about {more_pairs} related pairs")
    elif found.relevance == "categories":
        labels = data.labels[data.labels >= 0]
        mean_size = float(np.unique(labels, return_counts=True)[1].mean()) if len(labels) else 1
        per_video = max(mean_size - 1, 1.0) * fraction
        extra = max(more_videos, math.ceil(short_pairs / per_video))
        options.append(f"add about {extra} more videos with a category")
    else:
        options.append(f"add about {max(more_videos, math.ceil(short_pairs / fraction))} videos")
    for step in range(int(round(fraction * 20)) + 1, int(MAX_ADVISED_FRACTION * 20) + 1):
        candidate = step / 20
        if evidence(config, split_validation(data, config, candidate)[1]).enough:
            options.append(f"use --val-fraction {candidate:g}")
            break
    return " or ".join(options)


def gate_model(
    validation: dict[str, Any] | None,
    metric: str,
    found: Evidence,
    min_gain: float = 0.0,
    *,
    best_epoch: int | None = None,
    advice: str = "",
) -> GateResult:
    """The verdict for a model from its validation report (``evaluate_model``'s output).

    ``best_epoch`` -1 (early stopping kept the untrained model) is never a pass.
    """
    model = base = None
    if validation is not None and "model" in validation and "content_baseline" in validation:
        model = float(validation["model"][metric])
        base = float(validation["content_baseline"][metric])

    def verdict(status: ModelStatus, reason: str) -> GateResult:
        return GateResult(
            metric, model, base, min_gain, found.pairs, status, reason, found.videos, best_epoch
        )

    untrained = best_epoch == -1
    if model is None or base is None or not found.enough:
        reason = (
            f"validation too small to gate: {found.pairs} held-out positive pairs (needs "
            f"{MIN_HELD_OUT_PAIRS}) over {found.videos} held-out videos (needs "
            f"{MIN_HELD_OUT_VIDEOS}): {advice or 'add videos or pairs'}; or pass --force to "
            "activate it anyway"
        )
        if untrained:
            reason = f"{NO_EPOCH_BEAT} (on a validation too small to tell); {reason}"
        return verdict(ModelStatus.UNGATED, reason)
    figures = f"held-out {metric} {model:.4f} vs content baseline {base:.4f}"
    if untrained:
        reason = (
            f"rejected by the model gate: {NO_EPOCH_BEAT}: the best epoch is the untrained model "
            f"(epoch -1), {figures}; train with more pairs or epochs, or serve the content "
            "features"
        )
        return verdict(ModelStatus.REJECTED, reason)
    if model >= base + min_gain - 1e-9:
        return verdict(
            ModelStatus.READY, f"passed the model gate: {figures} (min gain {min_gain:g})"
        )
    reason = (
        f"rejected by the model gate: {figures}, below the baseline + min gain {min_gain:g}; "
        "the un-learned content features rank the held-out videos better than this model"
    )
    return verdict(ModelStatus.REJECTED, reason)

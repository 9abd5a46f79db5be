"""Metric-learning losses from pytorch-metric-learning, with semi-hard mining for triplets.

``triplet``: hinge on L2 distance between normalised embeddings with a margin, over the
semi-hard triplets the miner finds in the batch (all valid triplets when it finds none, so a
batch never contributes nothing). ``infonce``: NT-Xent with a temperature, every other item of
the batch being a negative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from recsys.choices import Loss, parse_choice


@dataclass
class LossOutput:
    loss: torch.Tensor
    triplets: int  # triplets (or positive pairs for InfoNCE) that contributed


class MetricLoss:
    """A callable ``(embeddings, labels) -> LossOutput`` for the configured loss."""

    def __init__(
        self, name: Loss | str = Loss.TRIPLET, margin: float = 0.2, temperature: float = 0.1
    ):
        self.name = parse_choice(Loss, name, "loss")
        self.loss: losses.BaseMetricLossFunction
        self.miner: miners.BaseMiner | None
        match self.name:
            case Loss.TRIPLET:
                self.loss = losses.TripletMarginLoss(margin=margin)
                self.miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")
            case Loss.INFONCE:
                self.loss = losses.NTXentLoss(temperature=temperature)
                self.miner = None
            case _:
                assert_never(self.name)

    def __call__(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        not_negative: torch.Tensor | None = None,
    ) -> LossOutput:
        """Loss of a batch; ``not_negative[i, j]`` marks pairs never to use as negatives
        (e.g. videos two co-watch hops apart: probably related, just not labelled so)."""
        embeddings = embeddings.float()
        if self.miner is None:
            a1, p, a2, n = lmu.get_all_pairs_indices(labels)
            if not_negative is not None:
                keep = ~not_negative[a2, n]
                a2, n = a2[keep], n[keep]
            return LossOutput(self.loss(embeddings, labels, (a1, p, a2, n)), int(a1.numel()))
        triplets = self.miner(embeddings, labels)
        if not_negative is not None:
            triplets = _without(triplets, not_negative)
        if triplets[0].numel() == 0:  # no semi-hard triplet: use every valid one
            triplets = lmu.get_all_triplets_indices(labels)
            if not_negative is not None:
                triplets = _without(triplets, not_negative)
        if triplets[0].numel() == 0:
            return LossOutput(embeddings.sum() * 0.0, 0)
        return LossOutput(self.loss(embeddings, labels, triplets), int(triplets[0].numel()))


def _without(
    triplets: tuple[torch.Tensor, ...], not_negative: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    anchors, _, negatives = triplets
    keep = ~not_negative[anchors, negatives]
    return tuple(t[keep] for t in triplets)


def similarity_anchor(
    embeddings: torch.Tensor,
    targets: torch.Tensor,
    groups: torch.Tensor,
    temperature: float = 0.1,
) -> torch.Tensor:
    """How far the batch's neighbourhoods have drifted from those of ``targets``.

    For each item, a softmax at ``temperature`` over its cosine similarities to the batch's
    items of *other* groups (its own group's items are the metric loss's business), once for
    ``embeddings`` and once for ``targets`` (the content features' embedding of the same
    videos); the loss is the mean KL divergence of the first from the second. It is zero when
    the embeddings rank every other-group item as the targets do, and it anchors a model that
    learns invariances to the content features' neighbourhood structure (relational
    distillation), which a metric loss over a handful of positives does not constrain.
    """
    student = F.normalize(embeddings.float(), dim=-1)
    teacher = F.normalize(targets.float(), dim=-1)
    other = groups[:, None] != groups[None, :]
    rows = other.any(dim=1)
    if not bool(rows.any()):
        return student.sum() * 0.0
    other = other[rows]
    student_logits = (student[rows] @ student.T) / temperature
    teacher_logits = (teacher[rows] @ teacher.T) / temperature
    floor = torch.finfo(student_logits.dtype).min
    log_p_student = torch.log_softmax(student_logits.masked_fill(~other, floor), dim=1)
    log_p_teacher = torch.log_softmax(teacher_logits.masked_fill(~other, floor), dim=1)
    terms = log_p_teacher.exp() * (log_p_teacher - log_p_student)
    return torch.where(other, terms, torch.zeros_like(terms)).sum(dim=1).mean()

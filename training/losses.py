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

"""Metric-learning losses from pytorch-metric-learning, with semi-hard mining for triplets.

``triplet``: hinge on L2 distance between normalised embeddings with a margin, over the
semi-hard triplets the miner finds in the batch (all valid triplets when it finds none, so a
batch never contributes nothing). ``infonce``: NT-Xent with a temperature, every other item of
the batch being a negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorch_metric_learning import losses, miners


@dataclass
class LossOutput:
    loss: torch.Tensor
    triplets: int  # triplets (or positive pairs for InfoNCE) that contributed


class MetricLoss:
    """A callable ``(embeddings, labels) -> LossOutput`` for the configured loss."""

    def __init__(self, name: str = "triplet", margin: float = 0.2, temperature: float = 0.1):
        if name not in ("triplet", "infonce"):
            raise ValueError(f"loss must be 'triplet' or 'infonce', not {name!r}")
        self.name = name
        if name == "triplet":
            self.loss = losses.TripletMarginLoss(margin=margin)
            self.miner: miners.BaseMiner | None = miners.TripletMarginMiner(
                margin=margin, type_of_triplets="semihard"
            )
        else:
            self.loss = losses.NTXentLoss(temperature=temperature)
            self.miner = None

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        embeddings = embeddings.float()
        if self.miner is None:
            same = labels[:, None] == labels[None, :]
            positives = int(same.sum().item() - labels.shape[0])
            return LossOutput(self.loss(embeddings, labels), positives)
        anchors, positives, negatives = self.miner(embeddings, labels)
        if anchors.numel() > 0:
            return LossOutput(
                self.loss(embeddings, labels, (anchors, positives, negatives)), anchors.numel()
            )
        return LossOutput(self.loss(embeddings, labels), _valid_triplets(labels))


def _valid_triplets(labels: torch.Tensor) -> int:
    same = (labels[:, None] == labels[None, :]).sum(dim=1) - 1
    return int((same * (labels.shape[0] - 1 - same)).sum().item())

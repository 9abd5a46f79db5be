"""Losses against hand-computed values; the miner returns exactly the semi-hard triplets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning import miners

from training.losses import MetricLoss


def _unit(angles: list[float]) -> torch.Tensor:
    a = torch.tensor(angles, dtype=torch.float64)
    return torch.stack([torch.cos(a), torch.sin(a)], dim=1).float()


def _chord(angle: float) -> float:
    return 2 * math.sin(angle / 2)  # L2 distance between unit vectors ``angle`` apart


# anchor 0 and positive 1 share label 0; negative 2 is hard, 3 semi-hard, 4 easy for anchor 0
ANGLES = [0.0, 0.6, 0.3, 0.7, math.pi]
LABELS = torch.tensor([0, 0, 1, 2, 3])


def test_miner_returns_only_the_semi_hard_negative() -> None:
    miner = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")
    anchors, positives, negatives = miner(_unit(ANGLES), LABELS)
    assert list(zip(anchors.tolist(), positives.tolist(), negatives.tolist(), strict=True)) == [
        (0, 1, 3)
    ]
    d_ap, d_an = _chord(0.6), _chord(0.7)
    assert d_ap < d_an < d_ap + 0.2  # the definition of semi-hard


def test_triplet_loss_on_semi_hard_triplets_matches_hand_computation() -> None:
    out = MetricLoss("triplet", margin=0.2)(_unit(ANGLES), LABELS)
    expected = _chord(0.6) - _chord(0.7) + 0.2
    assert out.triplets == 1
    assert out.loss.item() == pytest.approx(expected, abs=1e-5)


def test_triplet_loss_falls_back_to_all_triplets_without_semi_hard_ones() -> None:
    # the only negative is hard for both anchors: no semi-hard triplet exists
    angles, labels = [0.0, 1.0, 0.5], torch.tensor([0, 0, 1])
    out = MetricLoss("triplet", margin=0.2)(_unit(angles), labels)
    per = [max(0.0, _chord(1.0) - _chord(0.5) + 0.2)] * 2  # anchor 0 and anchor 1
    assert out.triplets == 2
    assert out.loss.item() == pytest.approx(float(np.mean(per)), abs=1e-5)


def test_infonce_matches_hand_computation() -> None:
    embeddings = _unit([0.0, 1.2, 2.0, 3.5])
    labels = torch.tensor([0, 0, 1, 1])
    tau = 0.5
    sims = (embeddings @ embeddings.T).double() / tau
    terms = []
    for a, p in [(0, 1), (1, 0), (2, 3), (3, 2)]:
        negatives = [n for n in range(4) if labels[n] != labels[a]]
        denominator = torch.logsumexp(
            torch.stack([sims[a, p], *[sims[a, n] for n in negatives]]), 0
        )
        terms.append(float(denominator - sims[a, p]))
    out = MetricLoss("infonce", temperature=tau)(embeddings, labels)
    assert out.loss.item() == pytest.approx(float(np.mean(terms)), abs=1e-5)
    assert out.loss.item() > 0.1
    assert out.triplets == 4


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="triplet"):
        MetricLoss("hinge")


def test_not_negative_pairs_are_never_used_as_negatives() -> None:
    # forbid 3 as a negative of 0: the only semi-hard triplet goes, all valid ones remain
    not_negative = torch.zeros(5, 5, dtype=torch.bool)
    not_negative[0, 3] = not_negative[3, 0] = True
    out = MetricLoss("triplet", margin=0.2)(_unit(ANGLES), LABELS, not_negative)
    d_ap = _chord(0.6)
    losses = [
        d_ap - _chord(0.3) + 0.2,  # anchor 0, negative 2
        d_ap - _chord(0.3) + 0.2,  # anchor 1, negative 2
        d_ap - _chord(0.1) + 0.2,  # anchor 1, negative 3
    ]  # every other triplet is inactive (loss 0) and left out of the average
    assert out.triplets == 5
    assert out.loss.item() == pytest.approx(float(np.mean(losses)), abs=1e-5)

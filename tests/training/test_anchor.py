"""The content-anchoring term of self-supervised training: zero without drift, blind to each
item's own group, and what keeps a self-supervised model near its inputs' neighbourhoods."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.training.clips import category_clips
from training import TrainConfig, TrainingData, fit
from training.loop import _Optimisation
from training.losses import similarity_anchor
from training.model_evaluation import embed_data

CPU = torch.device("cpu")


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=1)


def test_anchor_is_zero_when_the_embeddings_are_the_targets() -> None:
    targets = _unit(8, 5, seed=0)
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert similarity_anchor(targets.clone(), targets, groups).item() == pytest.approx(
        0.0, abs=1e-6
    )
    # a rescaled copy ranks alike: the term compares directions, not norms
    assert similarity_anchor(3.0 * targets, targets, groups).item() == pytest.approx(0.0, abs=1e-6)


def test_anchor_grows_with_drift_and_ignores_the_items_own_group() -> None:
    targets = _unit(8, 5, seed=0)
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    small = similarity_anchor(targets + 0.1 * _unit(8, 5, seed=1), targets, groups).item()
    large = similarity_anchor(targets + 1.0 * _unit(8, 5, seed=1), targets, groups).item()
    assert 0.0 < small < large
    # two views of one video: their own similarity is the metric loss's, not the anchor's
    apart = torch.stack([targets[0], targets[1]])
    together = torch.stack([targets[0], targets[0]])
    assert similarity_anchor(together, apart, torch.tensor([0, 0])).item() == 0.0


def _config(**options: object) -> TrainConfig:
    base: dict[str, object] = {
        "pairs": "self",
        "dim": 64,  # 32 per modality: the PCA skip paths keep every input dimension
        "hidden": 32,
        "batch_size": 8,
        "epochs": 15,
        "lr": 5e-3,  # large steps: enough drift to see in a few epochs
        "progress": False,
    }
    return TrainConfig(**{**base, **options})  # type: ignore[arg-type]


def _drift(config: TrainConfig, data: TrainingData) -> float:
    """How far the trained model's neighbourhoods of whole videos are from the untrained
    model's (the content features'), as the anchoring term measures it."""
    untrained = fit(replace(config, epochs=0), data, None, device=CPU).model
    trained = fit(config, data, None, device=CPU, keep_last=True).model
    groups = torch.arange(len(data))
    return similarity_anchor(
        torch.from_numpy(embed_data(trained, data, CPU)),
        torch.from_numpy(embed_data(untrained, data, CPU)),
        groups,
        config.anchor_temperature,
    ).item()


def test_anchoring_keeps_a_self_supervised_model_near_its_content_neighbourhoods() -> None:
    features, _ = category_clips()
    data = TrainingData(features=features, labels=np.full(len(features), -1))
    free = _drift(_config(self_anchor_weight=0.0), data)
    anchored = _drift(_config(), data)  # the default weight
    assert free > 0.0
    assert anchored < 0.5 * free


def test_anchoring_is_the_self_supervised_default_and_only_there() -> None:
    features, _ = category_clips()
    data = TrainingData(features=features, labels=np.full(len(features), -1))
    assert TrainConfig().self_anchor_weight > 0
    selfsup = _Optimisation.create(_config(), data, CPU, features)
    assert selfsup.teacher is not None and selfsup.anchor_weight > 0
    off = _Optimisation.create(_config(self_anchor_weight=0.0), data, CPU, features)
    assert off.teacher is None
    labelled = TrainingData(features=features, labels=np.arange(len(features)) % 4)
    categories = _Optimisation.create(_config(pairs="categories"), labelled, CPU, features)
    assert categories.teacher is None and categories.anchor_weight == 0.0

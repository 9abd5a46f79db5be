"""Multi-task training (pair loss + self-supervised loss over the catalog) and the inner
validation that chooses settings on warm videos only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import training.selection as selection
from recsys.features import VideoFeatures
from tests.training.clips import category_clips
from training import TrainConfig, TrainingData, fit
from training.baselines import content_baseline_vectors
from training.coldstart import simulate_cowatch
from training.errors import TrainingError
from training.evaluation import ranking
from training.loop import _Auxiliary
from training.model_evaluation import embed_data
from training.selection import fit_selected, fold_data, select_on_warm, warm_folds

CPU = torch.device("cpu")


def _config(**options: object) -> TrainConfig:
    base: dict[str, object] = {
        "fusion": "early",
        "pairs": "related",
        "modalities": ["visual", "audio"],
        "dim": 64,  # 32 per modality: the PCA skip paths keep every input dimension
        "hidden": 32,
        "batch_size": 16,
        "epochs": 4,
        "patience": 4,
        "lr": 5e-3,
        "progress": False,
    }
    return TrainConfig(**{**base, **options})  # type: ignore[arg-type]


def _warm_signal(seed: int = 0) -> tuple[list[VideoFeatures], np.ndarray, TrainingData]:
    features, labels = category_clips()
    sim = simulate_cowatch(labels, seed)
    signal = TrainingData(
        features=features, labels=np.full(len(features), -1), pairs=sim.pairs, weights=sim.weights
    )
    return features, sim.warm, signal.subset(sim.warm)


def _state(config: TrainConfig, train: TrainingData, catalog: list[VideoFeatures]) -> dict:
    return fit(config, train, None, device=CPU, catalog=catalog).model.state_dict()


def test_multitask_with_weight_zero_is_the_pair_loss_alone() -> None:
    features, _, warm = _warm_signal()
    assert _Auxiliary.create(_config(self_weight=0.0), features) is None
    plain = _state(_config(), warm, features)
    zero = _state(_config(self_weight=0.0), warm, features)
    multi = _state(_config(self_weight=1.0), warm, features)
    assert all(torch.equal(plain[k], zero[k]) for k in plain)
    assert any(not torch.equal(plain[k], multi[k]) for k in plain)
    # self-supervised training has no second self-supervised signal to add
    assert _Auxiliary.create(_config(pairs="self", self_weight=1.0), features) is None


def test_multitask_self_supervised_batches_cover_cold_videos() -> None:
    features, warm, _ = _warm_signal()
    auxiliary = _Auxiliary.create(_config(self_weight=0.5), features)
    assert auxiliary is not None and auxiliary.weight == 0.5
    rng = np.random.default_rng(0)
    seen = np.concatenate([auxiliary.next_batch(rng).items for _ in range(4)])
    cold = np.setdiff1d(np.arange(len(features)), warm)
    assert np.isin(cold, seen).all()  # every video, cold ones included, within an epoch
    batch = auxiliary.next_batch(rng)
    assert (np.bincount(batch.groups) == 2).all()  # two windows of each video: one group


def test_warm_folds_partition_the_paired_videos() -> None:
    _, _, warm = _warm_signal()
    parts = warm_folds(warm, 3, seed=1)
    joined = np.sort(np.concatenate(parts))
    assert (joined == np.unique(warm.pairs)).all()  # each paired warm video held out once
    assert all((a == b).all() for a, b in zip(parts, warm_folds(warm, 3, seed=1), strict=True))
    fold_train, val = fold_data(warm, parts[0])
    touching = np.isin(warm.pairs, parts[0]).any(axis=1)
    assert len(fold_train) == len(warm) - len(parts[0])  # held-out videos leave training
    assert len(fold_train.pairs) == int((~touching).sum())  # and so do their pairs
    assert np.isin(val.pairs, parts[0]).any(axis=1).all() and len(val) == len(warm)


def test_inner_validation_uses_fewer_folds_when_few_videos_are_paired() -> None:
    features, _ = category_clips(8)
    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    data = TrainingData(features=features, labels=np.full(8, -1), pairs=pairs, weights=np.ones(3))
    assert [p.shape[0] for p in warm_folds(data, 4, seed=0)] == [2, 2, 2]  # 6 paired: 3 folds
    with pytest.raises(TrainingError, match="at least 4 videos"):
        warm_folds(data.subset(np.arange(3)), 4, seed=0)  # one pair left


def test_inner_validation_never_sees_cold_videos(monkeypatch: pytest.MonkeyPatch) -> None:
    features, warm_index, warm = _warm_signal()
    cold = {id(features[i]) for i in np.setdiff1d(np.arange(len(features)), warm_index)}
    scored: list[TrainingData] = []
    trained: list[TrainingData] = []
    real_fit = selection.fit

    def spy(config, train, val=None, **kwargs):  # type: ignore[no-untyped-def]
        trained.append(train)
        if val is not None:
            scored.append(val)
        return real_fit(config, train, val, **kwargs)

    monkeypatch.setattr(selection, "fit", spy)
    candidates = ({"self_weight": 0.0}, {"self_weight": 1.0})
    chosen = select_on_warm(_config(), warm, candidates, folds=3, catalog=features)
    assert len(scored) == 6 and len(chosen.curves) == 2
    for data in scored + trained:  # scored and trained on warm videos only
        assert not cold & {id(f) for f in data.features}
    assert chosen.held_out_queries == np.unique(warm.pairs).shape[0]


def test_inner_validation_keeps_the_content_ranking_when_nothing_beats_it() -> None:
    features, _, warm = _warm_signal()
    # learning rate 0: no epoch can beat the untrained model, which is the content baseline
    chosen = select_on_warm(
        _config(lr=0.0), warm, ({"self_weight": 0.0},), folds=3, catalog=features
    )
    assert chosen.epochs == 0 and chosen.options == {}
    assert chosen.score == chosen.content_baseline
    model = fit_selected(_config(lr=0.0), warm, chosen, catalog=features).model
    data = TrainingData(features=features, labels=np.zeros(len(features), dtype=np.int64))
    learned = ranking(embed_data(model, data, CPU))[:, :5]
    # the content baseline of the model's modalities and weights (chosen on the warm signal)
    config = model.config
    content = content_baseline_vectors(features, config.modalities, weights=config.modality_weights)
    assert (learned == ranking(content)[:, :5]).mean() > 0.95  # float ties aside, the same

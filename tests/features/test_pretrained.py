"""Pretrained encoders load local weights only (weights_only / safetensors), never download,
refuse unverified hand-placed files, and fail with errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from recsys.features import FeatureError, get_extractor
from recsys.settings import load_settings
from recsys.weights import verify
from tests.features.helpers import decoded, solid_frames, tone


def test_missing_weights_name_the_expected_path(tmp_path) -> None:
    settings = load_settings(tmp_path / "home")
    expected = settings.weights_dir / "resnet18.pth"
    with pytest.raises(FeatureError, match=str(expected)):
        get_extractor("torchvision:resnet18", settings=settings)
    with pytest.raises(FeatureError, match="recsys weights fetch vggish"):
        get_extractor("visual=content,audio=vggish", settings=settings)


def test_resnet18_from_a_self_written_weights_file(tmp_path) -> None:
    settings = load_settings(tmp_path / "home")
    settings.weights_dir.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), settings.weights_dir / "resnet18.pth")
    # Random weights do not match the published checksum: refused until vouched for.
    with pytest.raises(FeatureError, match="--trust-unverified"):
        get_extractor("torchvision:resnet18", settings=settings)
    verify(settings, "resnet18", trust_unverified=True)

    extractor = get_extractor("torchvision:resnet18", settings=settings)
    assert extractor.name == "visual=torchvision:resnet18,audio=content"
    frames = solid_frames((200, 40, 40), n=4, size=64)
    frames[:, 16:48, 16:48] = (20, 200, 20)
    features = extractor.extract(decoded(frames, tone(330, 2.0)))
    assert features.visual_seq.shape == (4, 512)
    assert features.visual.shape == (1024,)
    assert features.audio is not None and features.audio_seq.shape[0] == 2

    # The weights' own preprocessing: resize 256, centre crop 224, ImageNet mean/std.
    reference.fc = torch.nn.Identity()
    reference.eval()
    transform = torchvision.models.ResNet18_Weights.DEFAULT.transforms()
    x = transform(torch.from_numpy(frames).permute(0, 3, 1, 2))
    assert tuple(x.shape[-2:]) == (224, 224)
    with torch.no_grad():
        np.testing.assert_allclose(features.visual_seq, reference(x).numpy(), atol=1e-4)


def test_other_weights_give_a_new_version_and_bad_weights_a_clear_error(tmp_path) -> None:
    first, second, wrong = tmp_path / "a.pth", tmp_path / "b.pth", tmp_path / "wrong.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), first)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), second)
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    a = get_extractor("torchvision:resnet18", weights_path=first)
    b = get_extractor("torchvision:resnet18", weights_path=second)
    assert a.version != b.version
    bad = get_extractor("torchvision:resnet18", weights_path=wrong)
    with pytest.raises(FeatureError, match=r"wrong\.pth.*another architecture"):
        bad.extract(decoded(solid_frames((1, 1, 1), n=1, size=32)))


class Payload:
    """Stands for any pickled object a checkpoint may carry besides tensors."""


def test_missing_extra_and_pickled_checkpoints_are_refused_naming_the_file(tmp_path) -> None:
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()
    missing, extra, pickled = tmp_path / "missing.pth", tmp_path / "extra.pth", tmp_path / "p.pth"
    torch.save({k: v for k, v in state.items() if k != "fc.bias"}, missing)
    torch.save({**state, "surprise.weight": torch.zeros(1)}, extra)

    # An arbitrary object: only a full (unsafe) pickle load could rebuild it.
    torch.save({"model": state, "config": Payload()}, pickled)
    frames = decoded(solid_frames((9, 9, 9), n=1, size=32))
    for path, message in (
        (missing, r"missing\.pth.*missing keys: fc\.bias"),
        (extra, r"extra\.pth.*unexpected keys: surprise\.weight"),
        (pickled, r"p\.pth.*weights_only=True"),
    ):
        with pytest.raises(FeatureError, match=message):
            get_extractor("torchvision:resnet18", weights_path=path).extract(frames)


def test_wrong_architecture_for_an_audio_encoder(tmp_path) -> None:
    settings = load_settings(tmp_path / "home")
    settings.weights_dir.mkdir(parents=True)
    torch.save(
        torchvision.models.resnet18(weights=None).state_dict(), settings.weights_dir / "vggish.pth"
    )
    verify(settings, "vggish", trust_unverified=True)
    extractor = get_extractor("visual=content,audio=vggish", settings=settings)
    with pytest.raises(FeatureError, match=r"vggish\.pth does not fit VGGish \(weights of another"):
        extractor.extract(decoded(solid_frames((9, 9, 9), n=2, size=32), tone(300, 2.0)))

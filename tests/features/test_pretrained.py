"""``torchvision:<model>`` loads a local weights file with weights_only=True, never downloads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from recsys.features import FeatureError, get_extractor
from recsys.settings import load_settings
from tests.features.helpers import decoded, solid_frames, tone


def test_missing_weights_name_the_expected_path(tmp_path) -> None:
    settings = load_settings(tmp_path / "home")
    expected = settings.weights_dir / "resnet18.pth"
    with pytest.raises(FeatureError, match=str(expected)):
        get_extractor("torchvision:resnet18", settings=settings)


def test_resnet18_from_a_self_written_weights_file(tmp_path) -> None:
    settings = load_settings(tmp_path / "home")
    settings.weights_dir.mkdir(parents=True)
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), settings.weights_dir / "resnet18.pth")

    extractor = get_extractor("torchvision:resnet18", settings=settings)
    frames = solid_frames((200, 40, 40), n=4, size=64)
    frames[:, 16:48, 16:48] = (20, 200, 20)
    features = extractor.extract(decoded(frames, tone(330, 2.0)))
    assert features.visual_seq.shape == (4, 512)
    assert features.visual.shape == (1024,)
    assert features.audio is not None and features.audio_seq.shape[0] == 2
    assert extractor.version.startswith("tv-resnet18-1-")

    reference.fc = torch.nn.Identity()
    reference.eval()
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    x = (torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0 - mean) / std
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
    with pytest.raises(FeatureError, match="wrong.pth"):
        bad.extract(decoded(solid_frames((1, 1, 1), n=1, size=32)))

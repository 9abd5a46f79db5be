"""``RECSYS_DEVICE`` is a closed choice made concrete by one function."""

from __future__ import annotations

import pytest
import torch

from recsys.choices import InvalidChoice, TorchDevice
from recsys.device import resolve_device
from recsys.settings import SettingsError, load_settings


@pytest.mark.parametrize("cuda", [False, True])
def test_auto_picks_cuda_only_when_torch_sees_it(
    cuda: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert resolve_device() == torch.device("cuda" if cuda else "cpu")
    assert resolve_device(load_settings().device) == resolve_device(TorchDevice.AUTO)


def test_named_devices_and_refusals() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(TorchDevice.CUDA) == torch.device("cuda")  # named, not checked
    assert load_settings(device="cpu").device is TorchDevice.CPU
    with pytest.raises(InvalidChoice, match="auto, cpu, cuda"):
        resolve_device("gpu")
    with pytest.raises(SettingsError, match="RECSYS_DEVICE"):
        load_settings(device="gpu")

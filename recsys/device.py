"""Where torch runs: the ``RECSYS_DEVICE`` choice (:class:`~recsys.choices.TorchDevice`) made
concrete in one place, for training, the embedder and the stage-A encoders alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

from recsys.choices import TorchDevice, parse_choice

if TYPE_CHECKING:
    import torch


def resolve_device(requested: TorchDevice | str = TorchDevice.AUTO) -> torch.device:
    """``auto``: CUDA when torch sees a GPU, else the CPU; ``cpu`` and ``cuda`` as named.

    torch is imported here, not with the module, so choosing costs nothing until it is used.
    """
    import torch

    device = parse_choice(TorchDevice, requested, "RECSYS_DEVICE")
    if device is TorchDevice.AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device.value)

"""Modality towers: an MLP for pooled descriptors, and the two small CNNs of the ``cnn`` path.

The frame CNN encodes each downsampled frame and averages over frames; the VGG-style log-mel CNN
encodes each ~1 s window (with torchaudio SpecAugment masks while training) and averages over
windows, as in the audio network of the CDML paper.
"""

from __future__ import annotations

import torch
from torch import nn


class MLPTower(nn.Module):
    """Two fully-connected layers with normalisation and dropout."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.LayerNorm(hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class FrameCNN(nn.Module):
    """Per-frame conv encoder, mean-pooled over frames: (B, T, 3, H, W) uint8 -> (B, width)."""

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.width = width
        self.net = nn.Sequential(
            _conv_block(3, 16), _conv_block(16, 32), _conv_block(32, width), nn.AdaptiveAvgPool2d(1)
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        x = frames.reshape(b * t, *frames.shape[2:]).float() / 255.0 - 0.5
        return self.net(x).reshape(b, t, -1).mean(dim=1)


class MelCNN(nn.Module):
    """VGG-style log-mel window encoder, mean-pooled: (B, W, mels, frames) -> (B, width)."""

    def __init__(self, width: int = 64, spec_augment: bool = True) -> None:
        super().__init__()
        self.width = width
        self.spec_augment = spec_augment
        self.net = nn.Sequential(
            _conv_block(1, 16),
            _conv_block(16, 32),
            _conv_block(32, width),
            nn.AdaptiveAvgPool2d(1),
        )
        self._augment: nn.Module | None = None
        if spec_augment:
            import torchaudio.transforms as T

            self._augment = nn.Sequential(
                T.FrequencyMasking(freq_mask_param=8, iid_masks=True),
                T.TimeMasking(time_mask_param=10, iid_masks=True),
            )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        b, w = windows.shape[:2]
        x = windows.reshape(b * w, 1, *windows.shape[2:]).float()
        if self.training and self._augment is not None:
            x = self._augment(x)
        return self.net(x).reshape(b, w, -1).mean(dim=1)


class ResidualTower(nn.Module):
    """``skip(x) + offset + mlp(x)``: a linear skip path plus an MLP whose last layer starts at
    zero, so the untrained tower is exactly its skip path.

    :meth:`FusionModel.fit_inputs` sets the skip to a PCA projection of the catalog's encoded
    features (and, for the multiplicative combination, the ``offset`` to ones outside this
    modality's coordinates), which makes the untrained model rank like the content baseline.
    """

    offset: torch.Tensor

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.skip = nn.Linear(in_dim, out_dim, bias=False)
        nn.init.zeros_(self.skip.weight)
        self.mlp = MLPTower(in_dim, hidden, out_dim, dropout)
        last = self.mlp.net[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.register_buffer("offset", torch.zeros(out_dim))

    def set_skip(self, weight: torch.Tensor, offset: torch.Tensor | None = None) -> None:
        with torch.no_grad():
            self.skip.weight.copy_(weight)
            if offset is not None:
                self.offset.copy_(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.offset + self.mlp(x)

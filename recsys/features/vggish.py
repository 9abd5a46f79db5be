"""VGGish (Hershey et al. 2017), the paper's audio network, in PyTorch.

The module layout matches the published PyTorch port of the AudioSet release (``features.*``
VGG convolutions, ``embeddings.*`` three linear layers), so its state dict loads unchanged. The
front end follows the reference ``vggish_input``: 16 kHz mono, 25 ms periodic-Hann frames every
10 ms, 512-point FFT magnitude, 64 HTK-mel bands 125-7500 Hz, ``log(mel + 0.01)``, cut into
non-overlapping 0.96 s patches of 96 x 64. The optional post-processing is the reference PCA
(with whitening) and 8-bit quantisation of the released AudioSet embeddings.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16_000
WINDOW = 400  # 0.025 s
HOP = 160  # 0.010 s
FFT = 2 ** math.ceil(math.log2(WINDOW))
MEL_BANDS = 64
PATCH_FRAMES = 96
EMBEDDING = 128
MEL_MIN_HZ, MEL_MAX_HZ = 125.0, 7500.0
LOG_OFFSET = 0.01
#: Fewest samples that make one patch: 96 frames of 400 samples every 160.
MIN_SAMPLES = WINDOW + (PATCH_FRAMES - 1) * HOP


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + hz / 700.0)


def mel_matrix() -> np.ndarray:
    """(FFT/2+1, 64) HTK-mel weights with triangles in the mel domain (as the reference)."""
    bins = FFT // 2 + 1
    bins_mel = _hz_to_mel(np.linspace(0.0, SAMPLE_RATE / 2.0, bins))
    edges = np.linspace(
        _hz_to_mel(np.array(MEL_MIN_HZ)), _hz_to_mel(np.array(MEL_MAX_HZ)), MEL_BANDS + 2
    )
    weights = np.empty((bins, MEL_BANDS))
    for i in range(MEL_BANDS):
        lower, center, upper = edges[i : i + 3]
        rising = (bins_mel - lower) / (center - lower)
        falling = (upper - bins_mel) / (upper - center)
        weights[:, i] = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin never contributes
    return weights


class VggishFrontEnd(nn.Module):
    """Waveform (16 kHz, float) → log-mel patches (P, 1, 96, 64)."""

    window: torch.Tensor
    mel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        window = 0.5 - 0.5 * np.cos(2 * np.pi / WINDOW * np.arange(WINDOW))  # periodic Hann
        self.register_buffer("window", torch.tensor(window, dtype=torch.float64), persistent=False)
        self.register_buffer(
            "mel", torch.tensor(mel_matrix(), dtype=torch.float64), persistent=False
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        signal = waveform.to(torch.float64).reshape(-1)
        if signal.numel() < MIN_SAMPLES:
            raise ValueError(
                f"{signal.numel() / SAMPLE_RATE:.2f} s of audio is shorter than one VGGish patch "
                f"({MIN_SAMPLES / SAMPLE_RATE:.3f} s)"
            )
        frames = signal.unfold(0, WINDOW, HOP) * self.window
        magnitude = torch.fft.rfft(frames, n=FFT).abs()
        log_mel = torch.log(magnitude @ self.mel + LOG_OFFSET)
        patches = log_mel.unfold(0, PATCH_FRAMES, PATCH_FRAMES).transpose(1, 2)
        return patches[:, None].to(torch.float32)


def _vgg_layers() -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = 1
    for width in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"):
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(width), kernel_size=3, padding=1), nn.ReLU(True)]
            channels = int(width)
    return nn.Sequential(*layers)


class Vggish(nn.Module):
    """Log-mel patches (P, 1, 96, 64) → 128-d embeddings (P, 128)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = _vgg_layers()
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096),
            nn.ReLU(True),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Linear(4096, EMBEDDING),
            nn.ReLU(True),
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.features(patches)
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # the TF (H, W, C) flattening order
        return self.embeddings(x)


class VggishPostprocess(nn.Module):
    """The AudioSet release's PCA (with whitening), clipping to ±2 and 8-bit quantisation."""

    matrix: torch.Tensor
    means: torch.Tensor

    def __init__(self, eigen_vectors: np.ndarray, means: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("matrix", torch.as_tensor(eigen_vectors, dtype=torch.float32))
        self.register_buffer("means", torch.as_tensor(means, dtype=torch.float32).reshape(-1, 1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        projected = (self.matrix @ (embeddings.float().t() - self.means)).t()
        clipped = projected.clamp(-2.0, 2.0)
        return torch.round((clipped + 2.0) * (255.0 / 4.0))

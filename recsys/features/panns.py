"""PANNs CNN14 (Kong et al. 2020), the AudioSet audio-tagging network, as an embedding model.

Module names follow the published checkpoint (``Cnn14_mAP=0.431.pth``, key ``model``), so it
loads unchanged, front end included: torchlibrosa's ``Spectrogram`` and ``LogmelFilterBank``
(32 kHz, 1024-point Hann STFT every 320 samples, 64 mel bands 50-14000 Hz, ``10·log10`` power)
whose fixed kernels are part of that state dict. The output is the 2048-d ``fc1`` embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 32_000
WINDOW = 1024
HOP = 320
MEL_BANDS = 64
FMIN, FMAX = 50, 14_000
CLASSES = 527
EMBEDDING = 2048
#: Fewest samples the five 2x poolings leave one time step for.
MIN_SAMPLES = 32 * HOP


class ConvBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool: tuple[int, int]) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool)


class Cnn14(nn.Module):
    """Waveform (B, samples) at 32 kHz → 2048-d embeddings (B, 2048); inference only."""

    def __init__(self) -> None:
        super().__init__()
        from torchlibrosa.stft import LogmelFilterBank, Spectrogram

        self.spectrogram_extractor = Spectrogram(
            n_fft=WINDOW,
            hop_length=HOP,
            win_length=WINDOW,
            window="hann",
            center=True,
            pad_mode="reflect",
            freeze_parameters=True,
        )
        self.logmel_extractor = LogmelFilterBank(
            sr=SAMPLE_RATE,
            n_fft=WINDOW,
            n_mels=MEL_BANDS,
            fmin=FMIN,
            fmax=FMAX,
            ref=1.0,
            amin=1e-10,
            top_db=None,
            freeze_parameters=True,
        )
        self.bn0 = nn.BatchNorm2d(MEL_BANDS)
        widths = (1, 64, 128, 256, 512, 1024, 2048)
        for i in range(6):
            setattr(self, f"conv_block{i + 1}", ConvBlock(widths[i], widths[i + 1]))
        self.fc1 = nn.Linear(2048, EMBEDDING)
        self.fc_audioset = nn.Linear(2048, CLASSES)  # kept so the checkpoint loads strictly

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.logmel_extractor(self.spectrogram_extractor(waveform))  # (B, 1, T, 64)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for i in range(6):
            block = getattr(self, f"conv_block{i + 1}")
            x = block(x, (2, 2) if i < 5 else (1, 1))
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        return F.relu_(self.fc1(x))

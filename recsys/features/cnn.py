"""The ``cnn`` extractor: raw-ish inputs for the small CNNs that train end-to-end in stage B.

Stage A only downsamples frames and cuts the log-mel spectrogram into ~1 s windows; the frame
CNN and the VGG-style log-mel CNN (``recsys.models.towers``) learn the descriptors themselves.
The pooled vectors (coarse colour layout, mean log-mel) let the un-learned baseline and pooled
models use the same cache entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recsys.features.base import FeatureError, VideoFeatures, pool_sequence

if TYPE_CHECKING:
    from recsys.media import DecodedVideo

FRAME_SIZE = 32
CNN_MELS = 64
CNN_HOP = 256
CNN_FFT = 1024
WINDOW_FRAMES = 64  # ~1 s of log-mel frames at 16 kHz with hop 256


def downsample_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """Area-average frames (N, H, W, 3) uint8 to (N, 3, size, size) uint8."""
    import torch
    import torch.nn.functional as F

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise FeatureError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    small = F.adaptive_avg_pool2d(tensor, size)
    return small.round().clamp(0, 255).to(torch.uint8).numpy()


def log_mel_windows(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-mel spectrogram cut into ~1 s windows: (W, CNN_MELS, WINDOW_FRAMES) float32."""
    import librosa

    y = np.asarray(audio, dtype=np.float32).reshape(-1)
    if len(y) < CNN_FFT:
        y = np.pad(y, (0, CNN_FFT - len(y)))
    mel = librosa.feature.melspectrogram(
        y=y, sr=sample_rate, n_fft=CNN_FFT, hop_length=CNN_HOP, n_mels=CNN_MELS
    )
    log_mel = np.maximum(librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None), -100.0)
    log_mel = (log_mel + 50.0) / 50.0  # roughly centred so the CNN starts in a sane range
    n_windows = max(1, int(np.floor(log_mel.shape[1] / WINDOW_FRAMES + 0.5)))
    needed = n_windows * WINDOW_FRAMES
    if log_mel.shape[1] < needed:
        log_mel = np.pad(log_mel, ((0, 0), (0, needed - log_mel.shape[1])), mode="edge")
    windows = log_mel[:, :needed].reshape(CNN_MELS, n_windows, WINDOW_FRAMES)
    return np.ascontiguousarray(windows.transpose(1, 0, 2)).astype(np.float32)


class CnnInputExtractor:
    """Downsampled frames and log-mel windows for the end-to-end CNN towers."""

    name = "cnn"
    version = "cnn-1"

    def extract(self, decoded: DecodedVideo) -> VideoFeatures:
        frames = downsample_frames(decoded.frames, FRAME_SIZE)
        coarse = downsample_frames(decoded.frames, 4).reshape(frames.shape[0], -1) / 255.0
        windows = None
        if decoded.audio is not None and len(decoded.audio) > 0:
            windows = log_mel_windows(decoded.audio, decoded.sample_rate)
        return VideoFeatures(
            extractor=self.name,
            extractor_version=self.version,
            visual=pool_sequence(coarse),
            visual_seq=frames,
            audio=None if windows is None else pool_sequence(windows.mean(axis=2)),
            audio_seq=windows,
            info={
                "frames": int(frames.shape[0]),
                "audio_windows": 0 if windows is None else int(windows.shape[0]),
            },
        )

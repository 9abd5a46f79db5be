"""The ``content`` extractor: hand-made visual and audio descriptors that need no weights.

Per sampled frame: HSV colour histograms and colour moments (what it looks like), a
gradient-orientation histogram (texture and edges), coarse grid means (layout) and the frame
difference to the next sample (motion). Per ~1 s audio window: log-mel statistics, MFCC, spectral
contrast, loudness/brightness and onset/rhythm descriptors. Everything is vectorised over frames
and windows so stage A stays decode-bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recsys.features.base import FeatureError, VideoFeatures, pool_sequence

if TYPE_CHECKING:
    from recsys.media import DecodedVideo

HUE_BINS, SAT_BINS, VAL_BINS = 16, 8, 8
ORIENT_BINS = 8
GRID = 4
N_MELS = 40
N_MFCC = 20
N_FFT = 1024
HOP = 256
WINDOW_S = 1.0


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """Vectorised RGB (floats in [0, 1], channels last) to HSV with every channel in [0, 1]."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    maxc = rgb.max(axis=-1)
    minc = rgb.min(axis=-1)
    delta = maxc - minc
    safe = np.where(delta > 0, delta, 1.0)
    hue = np.where(
        maxc == r,
        ((g - b) / safe) % 6.0,
        np.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = np.where(delta > 0, hue / 6.0, 0.0)
    sat = np.where(maxc > 0, delta / np.where(maxc > 0, maxc, 1.0), 0.0)
    return np.stack([hue, sat, maxc], axis=-1)


def _histograms(values: np.ndarray, bins: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-row normalised histograms of values in [0, 1]: (N, P) -> (N, bins)."""
    n = values.shape[0]
    index = np.minimum((values * bins).astype(np.int64), bins - 1)
    index += np.arange(n, dtype=np.int64)[:, None] * bins
    flat_w = None if weights is None else weights.reshape(-1)
    counts = np.bincount(index.reshape(-1), weights=flat_w, minlength=n * bins).reshape(n, bins)
    totals = counts.sum(axis=1, keepdims=True)
    return (counts / np.where(totals > 0, totals, 1.0)).astype(np.float32)


def _grid_means(image: np.ndarray, grid: int) -> np.ndarray:
    """Mean of each cell of a grid x grid layout: (N, H, W, C) -> (N, grid*grid*C)."""
    n, h, w, c = image.shape
    ch, cw = max(h // grid, 1), max(w // grid, 1)
    cropped = image[:, : ch * grid, : cw * grid]
    cells = cropped.reshape(n, grid, ch, grid, cw, c).mean(axis=(2, 4))
    return cells.reshape(n, -1)


def visual_descriptors(frames: np.ndarray) -> np.ndarray:
    """Per-frame descriptors, (N, H, W, 3) uint8 RGB -> (N, D) float32."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise FeatureError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    rgb = frames.astype(np.float32) / 255.0
    n = rgb.shape[0]
    hsv = rgb_to_hsv(rgb).reshape(n, -1, 3)
    colour = [
        _histograms(hsv[..., 0], HUE_BINS, weights=hsv[..., 1]),  # hue weighted by saturation
        _histograms(hsv[..., 1], SAT_BINS),
        _histograms(hsv[..., 2], VAL_BINS),
    ]
    pixels = rgb.reshape(n, -1, 3)
    mean = pixels.mean(axis=1)
    std = pixels.std(axis=1)
    centred = pixels - mean[:, None, :]
    skew = np.cbrt((centred**3).mean(axis=1))
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gy, gx = np.gradient(gray, axis=(1, 2))
    magnitude = np.hypot(gx, gy)
    orientation = (np.arctan2(gy, gx) % np.pi) / np.pi  # unsigned edges in [0, 1)
    texture = _histograms(orientation.reshape(n, -1), ORIENT_BINS, weights=magnitude.reshape(n, -1))
    edge_stats = np.stack(
        [magnitude.mean(axis=(1, 2)), (magnitude > 0.1).mean(axis=(1, 2))], axis=1
    )
    layout = _grid_means(rgb, GRID)
    if n > 1:
        diff = np.abs(np.diff(gray, axis=0))
        diff = np.concatenate([diff, diff[-1:]], axis=0)  # last frame repeats its predecessor
    else:
        diff = np.zeros_like(gray)
    motion = np.concatenate(
        [diff.mean(axis=(1, 2))[:, None], _grid_means(diff[..., None], 2)], axis=1
    )
    parts = [*colour, mean, std, skew, texture, edge_stats, layout, motion]
    return np.concatenate(parts, axis=1).astype(np.float32)


def _window_index(n_frames: int, sample_rate: int, n_windows: int) -> np.ndarray:
    starts = np.arange(n_frames) * HOP
    return np.minimum(starts // int(sample_rate * WINDOW_S), n_windows - 1)


def _window_stats(
    matrix: np.ndarray, index: np.ndarray, n_windows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over the frames of each window: (F, T) -> two (W, F)."""
    onehot = np.zeros((matrix.shape[1], n_windows), dtype=np.float64)
    onehot[np.arange(matrix.shape[1]), index] = 1.0
    counts = np.maximum(onehot.sum(axis=0), 1.0)[:, None]
    mean = (matrix @ onehot).T / counts
    sq = ((matrix.astype(np.float64) ** 2) @ onehot).T / counts
    return mean, np.sqrt(np.maximum(sq - mean**2, 0.0))


def audio_descriptors(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per ~1 s window descriptors of mono audio -> (W, D) float32."""
    import librosa

    y = np.asarray(audio, dtype=np.float32).reshape(-1)
    window = int(sample_rate * WINDOW_S)
    # A trailing part shorter than half a window is dropped; a short clip is one window.
    n_windows = max(1, int(np.floor(len(y) / window + 0.5)))
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    spectrum = np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP))
    mel = librosa.feature.melspectrogram(S=spectrum**2, sr=sample_rate, n_mels=N_MELS)
    log_mel = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
    log_mel = np.maximum(log_mel, -100.0)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=N_MFCC)
    contrast = librosa.feature.spectral_contrast(S=spectrum, sr=sample_rate, fmin=100.0, n_bands=5)
    onset = librosa.onset.onset_strength(S=log_mel, sr=sample_rate)[None, :]
    rms = librosa.feature.rms(S=spectrum, frame_length=N_FFT)
    centroid = librosa.feature.spectral_centroid(S=spectrum, sr=sample_rate) / 1000.0
    zcr = librosa.feature.zero_crossing_rate(y, frame_length=N_FFT, hop_length=HOP)
    tempo = float(
        np.atleast_1d(
            librosa.feature.tempo(onset_envelope=onset[0], sr=sample_rate, hop_length=HOP)
        )[0]
    )
    n_frames = min(m.shape[1] for m in (log_mel, mfcc, contrast, onset, rms, centroid, zcr))
    index = _window_index(n_frames, sample_rate, n_windows)
    peaks = librosa.util.peak_pick(
        onset[0, :n_frames], pre_max=3, post_max=3, pre_avg=3, post_avg=5, delta=0.5, wait=5
    )
    peak_rate = np.bincount(index[peaks], minlength=n_windows).astype(np.float64)
    stats = []
    for matrix, with_std in (
        (log_mel, True),
        (mfcc, True),
        (contrast, False),
        (onset, True),
        (rms, True),
        (centroid, True),
        (zcr, False),
    ):
        mean, std = _window_stats(matrix[:, :n_frames], index, n_windows)
        stats.append(mean)
        if with_std:
            stats.append(std)
    onset_max = np.zeros(n_windows)
    np.maximum.at(onset_max, index, onset[0, :n_frames])
    rhythm = np.stack([onset_max, peak_rate, np.full(n_windows, tempo / 200.0)], axis=1)
    return np.concatenate([*stats, rhythm], axis=1).astype(np.float32)


class ContentExtractor:
    """Hand-made colour/texture/layout/motion and log-mel/MFCC/contrast/rhythm descriptors."""

    name = "content"
    version = "content-1"

    def extract(self, decoded: DecodedVideo) -> VideoFeatures:
        visual_seq = visual_descriptors(decoded.frames)
        audio_seq = None
        if decoded.audio is not None and len(decoded.audio) > 0:
            audio_seq = audio_descriptors(decoded.audio, decoded.sample_rate)
        return VideoFeatures(
            extractor=self.name,
            extractor_version=self.version,
            visual=pool_sequence(visual_seq),
            visual_seq=visual_seq,
            audio=None if audio_seq is None else pool_sequence(audio_seq),
            audio_seq=audio_seq,
            info={"frames": int(visual_seq.shape[0]), "audio_windows": _len(audio_seq)},
        )


def _len(array: np.ndarray | None) -> int:
    return 0 if array is None else int(array.shape[0])

"""Audio half of the ``content`` extractor: per ~1 s window descriptors that need no weights.

Log-mel statistics, MFCC, spectral contrast, loudness/brightness and onset/rhythm descriptors,
all derived from one STFT of the whole clip (stage A must stay decode-bound).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from recsys.features.base import FeatureError

if TYPE_CHECKING:
    from recsys.media import DecodedVideo

N_MELS = 40
N_MFCC = 20
N_FFT = 1024
HOP = 256
WINDOW_S = 1.0
CONTRAST_BANDS = 5
CONTRAST_FMIN = 100.0
TEMPO_PRIOR_BPM = 120.0
TEMPO_SECONDS = 8.0  # autocorrelation window (librosa's ac_size)
TEMPO_STRIDE = 4


@lru_cache(maxsize=8)
def _audio_tables(sample_rate: int) -> dict[str, np.ndarray]:
    """Window, mel filters, DCT matrix and band layout for one sample rate (built once)."""
    import scipy.fft
    import scipy.signal
    from librosa.filters import mel

    freqs = np.fft.rfftfreq(N_FFT, d=1.0 / sample_rate)
    n_bins = len(freqs)
    # Octave bands of spectral contrast, laid out as librosa.feature.spectral_contrast does.
    edges = np.zeros(CONTRAST_BANDS + 2)
    edges[1:] = CONTRAST_FMIN * (2.0 ** np.arange(0, CONTRAST_BANDS + 1))
    if np.any(edges[:-1] >= 0.5 * sample_rate):
        raise FeatureError(f"sample rate {sample_rate} Hz is too low for spectral contrast bands")
    bands = []
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        band = (freqs >= low) & (freqs <= high)
        idx = np.flatnonzero(band)
        if k > 0:
            band[idx[0] - 1] = True
        if k == CONTRAST_BANDS:
            band[idx[-1] + 1 :] = True
        members = np.flatnonzero(band)
        if k < CONTRAST_BANDS:
            members = members[:-1]
        bands.append(members)
    return {
        "window": scipy.signal.get_window("hann", N_FFT, fftbins=True).astype(np.float32),
        "mel": mel(sr=sample_rate, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32),
        "dct": scipy.fft.dct(np.eye(N_MELS), type=2, norm="ortho", axis=0)[:N_MFCC].astype(
            np.float32
        ),
        "freqs_khz": (freqs / 1000.0).astype(np.float32),
        "n_bins": np.array(n_bins),
        **{f"band{k}": members for k, members in enumerate(bands)},
    }


def _power_to_db(power: np.ndarray, top_db: float | None) -> np.ndarray:
    db = 10.0 * np.log10(np.maximum(power, 1e-10))
    if top_db is not None and db.size:
        db = np.maximum(db, db.max() - top_db)
    return db


def _spectral_contrast(spectrum: np.ndarray, tables: dict[str, np.ndarray]) -> np.ndarray:
    """Octave-band peak/valley contrast in dB (librosa's definition, quantile 0.02)."""
    peaks, valleys = [], []
    for k in range(CONTRAST_BANDS + 1):
        members = tables[f"band{k}"]
        sub = np.sort(spectrum[members], axis=0)
        take = max(int(np.rint(0.02 * (len(members) + (1 if k < CONTRAST_BANDS else 0)))), 1)
        valleys.append(sub[:take].mean(axis=0))
        peaks.append(sub[-take:].mean(axis=0))
    return _power_to_db(np.stack(peaks), 80.0) - _power_to_db(np.stack(valleys), 80.0)


def _zero_crossing_rate(y: np.ndarray, n_frames: int) -> np.ndarray:
    """Fraction of sign changes per STFT frame (edge-padded, centred frames of N_FFT samples)."""
    padded = np.pad(y, N_FFT // 2, mode="edge")
    signs = np.signbit(np.where(np.abs(padded) <= 1e-10, 0.0, padded))
    total = np.concatenate([[0], np.cumsum(signs[1:] != signs[:-1])])
    starts = np.arange(n_frames) * HOP
    ends = np.minimum(starts + N_FFT - 1, len(total) - 1)
    return ((total[ends] - total[starts]) / N_FFT)[None, :]


def _onset_envelope(log_mel: np.ndarray) -> np.ndarray:
    """Mean positive log-mel flux per frame, shifted like librosa.onset.onset_strength."""
    flux = np.maximum(log_mel[:, 1:] - log_mel[:, :-1], 0.0).mean(axis=0)
    shift = 1 + 2048 // (2 * 512)
    return np.concatenate([np.zeros(shift, dtype=flux.dtype), flux])[: log_mel.shape[1]]


@lru_cache(maxsize=8)
def _tempo_window(size: int) -> np.ndarray:
    return np.hanning(size + 1)[:-1].astype(np.float32)


def estimate_tempo(onset: np.ndarray, frame_rate: float) -> float:
    """Tempo (BPM) as librosa.feature.tempo estimates it, without its fixed cost.

    Mean of Hann-windowed local autocorrelations of the onset envelope (an ~8 s tempogram,
    evaluated at every TEMPO_STRIDE-th frame), scored with a log-normal prior around 120 BPM.
    """
    n, size = len(onset), max(int(TEMPO_SECONDS * frame_rate), 2)
    padded = np.pad(onset.astype(np.float32), size // 2, mode="linear_ramp", end_values=(0, 0))
    frames = np.lib.stride_tricks.sliding_window_view(padded, size)[:n:TEMPO_STRIDE]
    spectrum = np.fft.rfft(frames * _tempo_window(size), 2 * size, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    autocorr = np.fft.irfft(power, 2 * size, axis=1)[:, :size]
    autocorr /= np.maximum(autocorr[:, :1], 1e-10)  # lag 0 is each row's maximum
    tempogram = autocorr.mean(axis=0)
    bpm = 60.0 * frame_rate / np.arange(1, size)
    score = np.log1p(1e6 * tempogram[1:]) - 0.5 * np.log2(bpm / TEMPO_PRIOR_BPM) ** 2
    score = np.where(bpm <= 320.0, score, -np.inf)
    return float(bpm[int(np.argmax(score))])


def _peak_pick(
    x: np.ndarray, pre_max: int, post_max: int, pre_avg: int, post_avg: int, delta: float, wait: int
) -> np.ndarray:
    """Indices of local maxima that clear the local mean by ``delta``, ``wait`` frames apart.

    Same rule as librosa.util.peak_pick (without its numba compilation cost per process).
    """
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lo = np.full(pre_max, -np.inf)
    hi = np.full(post_max, -np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(
        np.concatenate([lo, x, hi]), pre_max + post_max + 1
    )
    local_max = windows[:, : pre_max + 1 + post_max - 1].max(axis=1)
    total = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(n)
    a, b = np.maximum(idx - pre_avg, 0), np.minimum(idx + post_avg, n)
    local_mean = (total[b] - total[a]) / (b - a)
    candidates = np.flatnonzero((x == local_max) & (x >= local_mean + delta))
    peaks: list[int] = []
    for i in candidates:
        if not peaks or i - peaks[-1] > wait:
            peaks.append(int(i))
    return np.asarray(peaks, dtype=np.int64)


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
    matrix = matrix.astype(np.float64)
    mean = (matrix @ onehot).T / counts
    sq = ((matrix**2) @ onehot).T / counts
    return mean, np.sqrt(np.maximum(sq - mean**2, 0.0))


def audio_descriptors(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Per ~1 s window descriptors of mono audio -> (W, D) float32.

    One centred Hann STFT of the whole clip; mel, MFCC, contrast, onset, RMS, centroid and
    tempo all derive from it.
    """
    import scipy.fft

    y = np.asarray(audio, dtype=np.float32).reshape(-1)
    window = int(sample_rate * WINDOW_S)
    # A trailing part shorter than half a window is dropped; a short clip is one window.
    n_windows = max(1, int(np.floor(len(y) / window + 0.5)))
    if len(y) < N_FFT:
        y = np.pad(y, (0, N_FFT - len(y)))
    tables = _audio_tables(int(sample_rate))
    padded = np.pad(y, N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    spectrum = np.abs(scipy.fft.rfft(frames * tables["window"], axis=1)).T  # (bins, T)
    power = spectrum * spectrum
    log_mel = np.maximum(_power_to_db(tables["mel"] @ power, None), -100.0)
    mfcc = tables["dct"] @ log_mel
    contrast = _spectral_contrast(spectrum, tables)
    onset = _onset_envelope(log_mel)[None, :]
    weighted = power.copy()
    weighted[0] *= 0.5
    weighted[-1] *= 0.5
    rms = np.sqrt(2.0 * weighted.sum(axis=0, keepdims=True) / N_FFT**2)
    total = spectrum.sum(axis=0)
    centroid = (tables["freqs_khz"] @ spectrum) / np.where(total > 0, total, 1.0)
    centroid = np.where(total > 0, centroid, 0.0)[None, :]
    n_frames = spectrum.shape[1]
    zcr = _zero_crossing_rate(y, n_frames)
    tempo = estimate_tempo(onset[0], sample_rate / HOP)
    index = _window_index(n_frames, sample_rate, n_windows)
    peaks = _peak_pick(onset[0], pre_max=3, post_max=3, pre_avg=3, post_avg=5, delta=0.5, wait=5)
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
        mean, std = _window_stats(matrix, index, n_windows)
        stats.append(mean)
        if with_std:
            stats.append(std)
    onset_max = np.zeros(n_windows)
    np.maximum.at(onset_max, index, onset[0])
    rhythm = np.stack([onset_max, peak_rate, np.full(n_windows, tempo / 200.0)], axis=1)
    return np.concatenate([*stats, rhythm], axis=1).astype(np.float32)


def audio_sequence(decoded: DecodedVideo) -> np.ndarray | None:
    """Per-window audio descriptors of a decoded video; None without (or with empty) audio."""
    if decoded.audio is None or len(decoded.audio) == 0:
        return None
    return audio_descriptors(decoded.audio, decoded.sample_rate)

"""The ``content`` extractor: hand-made visual and audio descriptors that need no weights.

Per sampled frame: HSV colour histograms and colour moments (what it looks like), a
gradient-orientation histogram (texture and edges), coarse grid means (layout) and the frame
difference to the next sample (motion). Per ~1 s audio window: log-mel statistics, MFCC, spectral
contrast, loudness/brightness and onset/rhythm descriptors.

Stage A must stay decode-bound, so everything is computed at once over all frames (lookup tables
for integer colour bins and for the orientation and magnitude of integer grey gradients, no
per-pixel trigonometry) and over one STFT of the whole clip, from which every audio descriptor
is derived.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from recsys.features.base import FeatureError, VideoFeatures

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
CONTRAST_BANDS = 5
CONTRAST_FMIN = 100.0
TEMPO_PRIOR_BPM = 120.0
TEMPO_SECONDS = 8.0  # autocorrelation window (librosa's ac_size)
TEMPO_STRIDE = 4
_GRAY = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_EDGE_THRESHOLD = 0.1
_GRADIENT_MAX = 255  # largest |difference| of two uint8 grey levels


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


@lru_cache(maxsize=1)
def _saturation_tables() -> tuple[np.ndarray, np.ndarray]:
    """Saturation and its bin for each uint8 (max, max - min) pair, indexed max * 256 + d."""
    maxc = np.arange(256, dtype=np.float32)[:, None]
    delta = np.arange(256, dtype=np.float32)[None, :]
    sat = np.where((maxc > 0) & (delta <= maxc), delta / np.maximum(maxc, 1.0), 0.0)
    sat = sat.astype(np.float32).reshape(-1)
    bins = np.minimum((sat * SAT_BINS).astype(np.int64), SAT_BINS - 1)
    return sat, bins


@lru_cache(maxsize=1)
def _value_bins() -> np.ndarray:
    return np.minimum(np.arange(256, dtype=np.int64) * VAL_BINS // 255, VAL_BINS - 1)


def hsv_bins(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HSV binning of uint8 RGB pixels (..., 3): hue bin, saturation, saturation bin, value bin.

    Integer arithmetic plus lookup tables; same bins as ``rgb_to_hsv`` on ``pixels / 255``.
    """
    r = pixels[..., 0].astype(np.int16)
    g = pixels[..., 1].astype(np.int16)
    b = pixels[..., 2].astype(np.int16)
    maxc = np.maximum(np.maximum(r, g), b)
    delta = maxc - np.minimum(np.minimum(r, g), b)
    sat_table, sat_bin_table = _saturation_tables()
    key = maxc.astype(np.int32) * 256 + delta
    is_r = maxc == r
    is_g = ~is_r & (maxc == g)
    numerator = np.where(is_r, g - b, np.where(is_g, b - r, r - g)).astype(np.float32)
    offset = np.where(is_r, 0.0, np.where(is_g, 2.0, 4.0)).astype(np.float32)
    hue6 = numerator / np.maximum(delta, 1).astype(np.float32) + offset
    hue6 = np.where(hue6 < 0, hue6 + 6.0, hue6)
    hue6 = np.where(delta > 0, hue6, 0.0)
    hue_bin = np.minimum((hue6 * (HUE_BINS / 6.0)).astype(np.int64), HUE_BINS - 1)
    return hue_bin, sat_table[key], sat_bin_table[key], _value_bins()[maxc]


def _bin_counts(index: np.ndarray, bins: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Per-row normalised histograms of integer bins: (N, P) in [0, bins) -> (N, bins)."""
    n = index.shape[0]
    flat = (index.astype(np.int64) + np.arange(n, dtype=np.int64)[:, None] * bins).reshape(-1)
    flat_w = None if weights is None else weights.reshape(-1)
    counts = np.bincount(flat, weights=flat_w, minlength=n * bins).reshape(n, bins)
    totals = counts.sum(axis=1, keepdims=True)
    return (counts / np.where(totals > 0, totals, 1.0)).astype(np.float32)


def _block_sums(image: np.ndarray, grid: int) -> np.ndarray:
    """Sum of each cell of a grid x grid layout: (N, H, W, C) -> (N, grid, grid, C) float32.

    Rows are summed first (contiguous adds), then columns, which beats a strided 6-d mean.
    """
    n, h, w, c = image.shape
    ch, cw = max(h // grid, 1), max(w // grid, 1)
    rows = image[:, : ch * grid].reshape(n, grid, ch, w * c).sum(axis=2, dtype=np.float32)
    rows = rows.reshape(n, grid, w, c)[:, :, : cw * grid].reshape(n, grid, grid, cw, c)
    return rows.sum(axis=3)


def _grid_means(image: np.ndarray, grid: int) -> np.ndarray:
    """Mean of each cell of a grid x grid layout: (N, H, W, C) -> (N, grid*grid*C)."""
    n, h, w, _ = image.shape
    cells = max(h // grid, 1) * max(w // grid, 1)
    return (_block_sums(image, grid) / np.float32(cells)).reshape(n, -1)


@lru_cache(maxsize=1)
def _orientation_boundaries() -> tuple[np.ndarray, np.ndarray]:
    angles = np.arange(1, ORIENT_BINS) * np.pi / ORIENT_BINS
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def orientation_bins(gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Unsigned gradient orientation bins in [0, ORIENT_BINS) without ``arctan2``.

    Gradients are folded onto the upper half plane; an angle lies past boundary ``a`` exactly
    when ``cos(a) * gy - sin(a) * gx > 0``, so the bin is the number of boundaries passed.
    """
    flip = (gy < 0) | ((gy == 0) & (gx < 0))
    sign = np.where(flip, np.float32(-1), np.float32(1))
    fx = gx * sign
    fy = gy * sign
    cos, sin = _orientation_boundaries()
    bins = np.zeros(gx.shape, dtype=np.uint8)
    lhs, rhs = np.empty_like(fy), np.empty_like(fx)
    passed = np.empty(gx.shape, dtype=bool)
    for c, s in zip(cos, sin, strict=True):  # c*fy - s*fx > 0, without temporaries
        np.multiply(fy, c, out=lhs)
        np.multiply(fx, s, out=rhs)
        np.greater(lhs, rhs, out=passed)
        bins += passed
    return bins


def _half_resolution(frames: np.ndarray) -> np.ndarray:
    """2x2 block means of uint8 frames (odd edges cropped), rounded back to uint8."""
    n, h, w, c = frames.shape
    even = frames[:, : h - h % 2, : w - w % 2]
    rows = even[:, 0::2].astype(np.uint16) + even[:, 1::2]
    sums = rows[:, :, 0::2] + rows[:, :, 1::2] + 2
    return (sums >> 2).astype(np.uint8)


@lru_cache(maxsize=1)
def _gradient_tables() -> tuple[np.ndarray, np.ndarray]:
    """Orientation bin and magnitude of every integer central difference pair.

    Grey levels are integers, so (gx, gy) takes 511 x 511 values: looking both up costs two
    gathers per pixel instead of ~30 passes of float arithmetic. Indexed (gx + 255) * 511 +
    (gy + 255); magnitudes in the units of a [0, 1] image (the 1/2 and 1/255 folded in).
    """
    levels = np.arange(-_GRADIENT_MAX, _GRADIENT_MAX + 1, dtype=np.float32) * np.float32(0.5 / 255)
    gx = np.repeat(levels, len(levels))
    gy = np.tile(levels, len(levels))
    return orientation_bins(gx, gy).astype(np.intp), np.sqrt(gx * gx + gy * gy)


def _edges(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient-orientation histogram and edge statistics at full resolution.

    Fine texture is what tells real clips apart here (half resolution lost it), so these use
    central differences of the integer grey image on the full-resolution interior.
    """
    n = frames.shape[0]
    if min(frames.shape[1:3]) < 3:
        return np.zeros((n, ORIENT_BINS), np.float32), np.zeros((n, 2), np.float32)
    gray = np.rint(frames.reshape(-1, 3).astype(np.float32) @ _GRAY)
    gray = gray.astype(np.int16).reshape(frames.shape[:3])
    gx = gray[:, 1:-1, 2:] - gray[:, 1:-1, :-2]
    gy = gray[:, 2:, 1:-1] - gray[:, :-2, 1:-1]
    key = gx.astype(np.int32)
    key *= 2 * _GRADIENT_MAX + 1
    key += gy
    key += _GRADIENT_MAX * (2 * _GRADIENT_MAX + 1) + _GRADIENT_MAX
    key = key.reshape(n, -1)
    bin_table, magnitude_table = _gradient_tables()
    magnitude = np.take(magnitude_table, key)
    index = np.take(bin_table, key)
    index += (np.arange(n, dtype=np.intp) * ORIENT_BINS)[:, None]
    counts = np.bincount(
        index.reshape(-1), weights=magnitude.reshape(-1), minlength=n * ORIENT_BINS
    ).reshape(n, ORIENT_BINS)
    totals = counts.sum(axis=1, keepdims=True)
    texture = (counts / np.where(totals > 0, totals, 1.0)).astype(np.float32)
    edge_stats = np.stack(
        [magnitude.mean(axis=1), (magnitude > _EDGE_THRESHOLD).mean(axis=1)], axis=1
    )
    return texture, edge_stats


def visual_descriptors(frames: np.ndarray) -> np.ndarray:
    """Per-frame descriptors, (N, H, W, 3) uint8 RGB -> (N, D) float32."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise FeatureError(f"expected frames of shape (N, H, W, 3), got {frames.shape}")
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    n = frames.shape[0]
    layout = _grid_means(frames, GRID) * np.float32(1 / 255)
    # Colour and motion are measured on 2x2 block means (56 px for 112 px frames): a quarter
    # of the work and the same colour distributions.
    small = _half_resolution(frames) if min(frames.shape[1:3]) >= 16 else frames
    pixels = small.reshape(n, -1, 3)
    hue_bin, sat, sat_bin, val_bin = hsv_bins(pixels)
    colour = [
        _bin_counts(hue_bin, HUE_BINS, weights=sat),  # hue weighted by saturation
        _bin_counts(sat_bin, SAT_BINS),
        _bin_counts(val_bin, VAL_BINS),
    ]
    # Colour moments over contiguous channel planes.
    planes = pixels.transpose(0, 2, 1).astype(np.float32, order="C")
    planes *= np.float32(1 / 255)
    mean = planes.mean(axis=2)
    centred = planes - mean[:, :, None]
    sq = centred * centred
    std = np.sqrt(sq.mean(axis=2))
    skew = np.cbrt((sq * centred).mean(axis=2))
    gray = planes[:, 0] * _GRAY[0] + planes[:, 1] * _GRAY[1] + planes[:, 2] * _GRAY[2]
    gray = gray.reshape(small.shape[:3])
    texture, edge_stats = _edges(frames)
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


class ContentExtractor:
    """Hand-made colour/texture/layout/motion and log-mel/MFCC/contrast/rhythm descriptors."""

    name = "content"
    version = "content-4"

    def extract(self, decoded: DecodedVideo) -> VideoFeatures:
        return VideoFeatures.from_sequences(
            self.name,
            self.version,
            visual_descriptors(decoded.frames),
            audio_sequence(decoded),
        )


def audio_sequence(decoded: DecodedVideo) -> np.ndarray | None:
    """Per-window audio descriptors of a decoded video; None without (or with empty) audio."""
    if decoded.audio is None or len(decoded.audio) == 0:
        return None
    return audio_descriptors(decoded.audio, decoded.sample_rate)

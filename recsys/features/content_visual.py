"""Visual half of the ``content`` extractor: per-frame descriptors that need no weights.

Per sampled frame: HSV colour histograms and colour moments (what it looks like), a
gradient-orientation histogram (texture and edges), coarse grid means (layout) and the frame
difference to the next sample (motion).

Stage A must stay decode-bound, so everything is computed at once over all frames, with lookup
tables for integer colour bins and for the orientation and magnitude of integer grey gradients
(no per-pixel trigonometry).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from recsys.features.base import FeatureError

HUE_BINS, SAT_BINS, VAL_BINS = 16, 8, 8
ORIENT_BINS = 8
GRID = 4
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

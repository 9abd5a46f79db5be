"""Turning cached :class:`VideoFeatures` into model input tensors, whole or as segment views.

A *view* pools only a contiguous run of segments (frames / audio windows); two views of the same
video are the self-supervised positive pair, and random views augment the supervised pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from recsys.features.base import ExtractorMismatch, FeatureError, VideoFeatures, pool_sequence
from recsys.features.pooling import pool_visual
from recsys.models.config import ModelConfig
from recsys.models.fusion import ModelInputs


def random_window(length: int, fraction: float, rng: np.random.Generator) -> slice:
    """A random contiguous run of ``fraction`` of ``length`` segments (at least one): a view."""
    size = max(1, int(round(length * fraction)))
    start = int(rng.integers(0, length - size + 1))
    return slice(start, start + size)


def _fixed_count(sequence: np.ndarray, count: int) -> np.ndarray:
    """Evenly spaced rows (repeating when short) so every video feeds ``count`` segments."""
    index = np.linspace(0, sequence.shape[0] - 1, count).round().astype(np.int64)
    return sequence[index]


def check_features(config: ModelConfig, features: Sequence[VideoFeatures]) -> None:
    for f in features:
        if f.extractor_version != config.extractor_version:
            raise ExtractorMismatch(
                f"features from extractor {f.extractor_version} given to a model trained on "
                f"{config.extractor_version}; extract them with {config.extractor!r} first"
            )


def build_inputs(
    config: ModelConfig,
    features: Sequence[VideoFeatures],
    *,
    rng: np.random.Generator | None = None,
    view_fraction: float | Sequence[float] = 1.0,
) -> ModelInputs:
    """Batch tensors for ``features``; with ``rng`` each item becomes a random segment view.

    ``view_fraction`` (per item or shared) is the share of segments a view keeps.
    """
    n = len(features)
    fractions = (
        [float(view_fraction)] * n
        if isinstance(view_fraction, int | float)
        else [float(x) for x in view_fraction]
    )
    if len(fractions) != n:
        raise ValueError(f"{len(fractions)} view fractions for {n} videos")
    if config.input_kind == "vector" and (rng is None or min(fractions, default=1.0) >= 1.0):
        return _pooled_inputs(config, features)
    present = np.array([f.audio is not None for f in features], dtype=bool)
    visual_rows: list[np.ndarray] = []
    audio_rows: list[np.ndarray] = []
    for f, fraction in zip(features, fractions, strict=True):
        use_view = rng is not None and fraction < 1.0
        if config.input_kind == "vector" and not use_view:
            # Pooled vectors only: the sequences are not touched (packed cache entries read
            # them lazily, so a re-embed reads a fifth of the bytes).
            visual_rows.append(f.visual)
            if f.audio is not None:
                audio_rows.append(f.audio)
            else:
                audio_rows.append(np.zeros(max(config.audio_dim, 1), dtype=np.float32))
            continue
        v_seq = f.visual_seq
        a_seq = f.audio_seq
        if use_view:
            assert rng is not None
            v_seq = v_seq[random_window(v_seq.shape[0], fraction, rng)]
            if a_seq is not None:
                a_seq = a_seq[random_window(a_seq.shape[0], fraction, rng)]
        if config.input_kind == "vector":
            visual_rows.append(pool_visual(f, v_seq) if use_view else f.visual)
            if a_seq is not None and f.audio is not None:
                audio_rows.append(pool_sequence(a_seq) if use_view else f.audio)
            else:
                audio_rows.append(np.zeros(max(config.audio_dim, 1), dtype=np.float32))
        else:
            visual_rows.append(_fixed_count(v_seq, config.frames))
            if a_seq is not None:
                audio_rows.append(_fixed_count(a_seq, config.windows))
            else:
                audio_rows.append(np.zeros((config.windows, *config.mel_shape), dtype=np.float32))
    visual = torch.from_numpy(np.stack(visual_rows))
    audio = torch.from_numpy(np.stack(audio_rows).astype(np.float32))
    return ModelInputs(visual=visual, audio=audio, audio_present=torch.from_numpy(present))


def _pooled_inputs(config: ModelConfig, features: Sequence[VideoFeatures]) -> ModelInputs:
    """The pooled vectors as they are (no view): the sequences are not touched (packed cache
    entries read them lazily, so a re-embed reads a fifth of the bytes)."""
    audio: list[np.ndarray] = []
    present = np.empty(len(features), dtype=bool)
    zero = None
    for i, f in enumerate(features):
        present[i] = f.audio is not None
        if f.audio is not None:
            audio.append(f.audio)
        else:
            if zero is None:
                zero = np.zeros(max(config.audio_dim, 1), dtype=np.float32)
            audio.append(zero)
    return ModelInputs(
        visual=torch.from_numpy(_matrix([f.visual for f in features])),
        audio=torch.from_numpy(_matrix(audio).astype(np.float32, copy=False)),
        audio_present=torch.from_numpy(present),
    )


def _matrix(rows: list[np.ndarray]) -> np.ndarray:
    """``np.stack(rows)`` without one view per row (a third of its time on 4,096 rows)."""
    shapes = {row.shape for row in rows}
    if len(shapes) != 1:
        raise ValueError(f"inputs of different shapes cannot share a batch: {sorted(shapes)}")
    return np.concatenate(rows).reshape(len(rows), *rows[0].shape)


def input_dims(features: Sequence[VideoFeatures]) -> tuple[int, int]:
    """Pooled visual and audio sizes found in ``features`` (audio 0 when none has audio)."""
    if not features:
        raise FeatureError("no features to size the model from")
    visual = int(features[0].visual.shape[0])
    audio = next((int(f.audio.shape[0]) for f in features if f.audio is not None), 0)
    return visual, audio

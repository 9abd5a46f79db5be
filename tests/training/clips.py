"""Tiny pooled-feature clips for training tests: their category shows in a few of many noisy
dimensions, so a model can learn it and the content features alone only half show it."""

from __future__ import annotations

import numpy as np

from recsys.features import VideoFeatures, pool_sequence


def category_clips(
    n: int = 24, categories: int = 4, seed: int = 0
) -> tuple[list[VideoFeatures], np.ndarray]:
    """``n`` clips (frames and audio, 6 rows each) and their category labels (round robin)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % categories
    centres = rng.normal(size=(categories, 6))
    features = []
    for label in labels:
        visual_seq = rng.normal(size=(6, 12)).astype(np.float32)
        visual_seq[:, :6] += 1.5 * centres[label]
        audio_seq = rng.normal(size=(6, 10)).astype(np.float32)
        features.append(
            VideoFeatures(
                "content",
                "content-test",
                pool_sequence(visual_seq),
                visual_seq,
                pool_sequence(audio_seq),
                audio_seq,
            )
        )
    return features, labels

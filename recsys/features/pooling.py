"""How a video's per-frame visual rows become its one pooled vector (the ``pool=`` option).

- ``meanstd``: mean and standard deviation over the frames, concatenated. Hand-made descriptors
  need the spread (motion, changing colours are in it); the default of every encoder that does
  not declare another.
- ``mean``: the mean alone. CNN embeddings are already invariant to what the spread measures,
  and every consumer z-scores the pooled vector per dimension on the catalog (the content
  baseline, the model's input standardiser), which blows the small std half up into noise.
- ``meanmax``: mean and per-dimension maximum, the other pooling retrieval with CNN features
  uses (as good as ``mean`` once centred, twice the width).

The pooling is written into the features' ``info`` (``"pooling"``) so that every later pooling
of a segment view (training views, same-source windows) uses the same function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys.features.base import FeatureError, VideoFeatures, pool_sequence

#: The legacy pooling: what features without a recorded pooling were made with.
DEFAULT_POOLING = "meanstd"
INFO_KEY = "pooling"


def _mean(flat: np.ndarray) -> np.ndarray:
    return flat.mean(axis=0)


def _meanmax(flat: np.ndarray) -> np.ndarray:
    return np.concatenate([flat.mean(axis=0), flat.max(axis=0)])


_POOLS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"mean": _mean, "meanmax": _meanmax}
POOLINGS: tuple[str, ...] = ("mean", "meanmax", DEFAULT_POOLING)


def check_pooling(pooling: str) -> str:
    """``pooling`` when it is one of :data:`POOLINGS`; FeatureError naming them otherwise."""
    if pooling not in POOLINGS:
        raise FeatureError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")
    return pooling


def pool_rows(sequence: np.ndarray, pooling: str = DEFAULT_POOLING) -> np.ndarray:
    """The pooled vector of ``sequence`` (segments x features) with ``pooling``."""
    if check_pooling(pooling) == DEFAULT_POOLING:
        return pool_sequence(sequence)
    if sequence.shape[0] == 0:
        raise FeatureError("cannot pool an empty segment sequence")
    flat = np.asarray(sequence, dtype=np.float32).reshape(sequence.shape[0], -1)
    return _POOLS[pooling](flat).astype(np.float32)


def visual_pooling(features: VideoFeatures) -> str:
    """The pooling that made ``features.visual`` (the legacy one when none is recorded)."""
    return str(features.info.get(INFO_KEY, DEFAULT_POOLING))


def pool_visual(features: VideoFeatures, sequence: np.ndarray) -> np.ndarray:
    """``sequence`` (a run of ``features``' visual rows) pooled as ``features.visual`` was."""
    return pool_rows(sequence, visual_pooling(features))

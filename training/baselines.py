"""Un-learned baselines every learned model is reported next to.

The content baseline is what stage A gives without stage B: each modality's pooled descriptors
z-scored over the evaluated set (so no single large-valued descriptor dominates), L2-normalised
per modality and concatenated (a missing audio block is zero), then normalised again.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recsys.features import VideoFeatures


def _zscore_block(rows: list[np.ndarray | None]) -> np.ndarray | None:
    present = [r for r in rows if r is not None]
    if not present:
        return None
    matrix = np.stack(present).astype(np.float64)
    mean, std = matrix.mean(axis=0), matrix.std(axis=0)
    std[std < 1e-6] = 1.0
    dim = matrix.shape[1]
    out = np.zeros((len(rows), dim), dtype=np.float64)
    for i, r in enumerate(rows):
        if r is not None:
            z = (r - mean) / std
            out[i] = z / max(np.linalg.norm(z), 1e-9)
    return out


def content_baseline_vectors(
    features: Sequence[VideoFeatures], modalities: Sequence[str] = ("visual", "audio")
) -> np.ndarray:
    """Pooled stage-A descriptors as un-learned embeddings (see the module docstring)."""
    blocks = []
    if "visual" in modalities:
        blocks.append(_zscore_block([f.visual for f in features]))
    if "audio" in modalities:
        blocks.append(_zscore_block([f.audio for f in features]))
    matrix = np.concatenate([b for b in blocks if b is not None], axis=1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-9)).astype(np.float32)

"""Un-learned baselines every learned model is reported next to.

The content baseline is what stage A gives without stage B: each modality's pooled descriptors
z-scored over the evaluated set, or a reference set such as the catalog (so no single
large-valued descriptor dominates), L2-normalised per modality, weighted (equal weights unless
the training signal chose others, :mod:`training.modalities`: a model's baseline uses its
``modality_weights``, the weights its residual towers start from) and concatenated (a missing
audio block is zero), then normalised again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from recsys.choices import Modality
from recsys.features import VideoFeatures
from recsys.models.config import modality_weight


def _zscore_block(
    rows: list[np.ndarray | None], reference: list[np.ndarray | None] | None = None
) -> np.ndarray | None:
    present = [r for r in rows if r is not None]
    if not present:
        return None
    fitted = [r for r in (reference if reference is not None else rows) if r is not None]
    matrix = np.stack(fitted or present).astype(np.float64)
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
    features: Sequence[VideoFeatures],
    modalities: Sequence[str] = tuple(Modality),
    reference: Sequence[VideoFeatures] | None = None,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Pooled stage-A descriptors as un-learned embeddings (see the module docstring).

    ``reference``: the videos whose statistics z-score them (default: ``features`` themselves);
    the model gate passes the catalog, the set a served model is fitted on. ``weights``: each
    modality's weight (default: equal).
    """
    blocks = []
    for modality in Modality:
        if modality in modalities:
            rows = [getattr(f, modality) for f in features]
            ref = None if reference is None else [getattr(f, modality) for f in reference]
            block = _zscore_block(rows, ref)
            if block is not None:
                blocks.append(block * modality_weight(modality, weights))
    matrix = np.concatenate(blocks, axis=1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-9)).astype(np.float32)

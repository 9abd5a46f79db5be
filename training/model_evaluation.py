"""Scoring a trained model: its embeddings of a data set, next to the content baseline and random.

The metrics themselves live in :mod:`training.evaluation`; this module decides what is relevant
for the run's pair source and feeds the model and the baseline the same views of each video.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from recsys.choices import PairSource
from recsys.features import VideoFeatures, pool_sequence
from recsys.features.pooling import pool_visual
from recsys.models import FusionModel, build_inputs, random_window
from training.baselines import content_baseline_vectors
from training.coldstart import restrict
from training.config import TrainConfig
from training.data import TrainingData
from training.evaluation import (
    random_metrics,
    relevance_from_labels,
    relevance_from_pairs,
    retrieval_metrics,
)

#: Same-source validation compares quarter-length windows: with half-length ones, even the
#: content baseline finds every partner on a small split and validation cannot tell models apart.
SAME_SOURCE_WINDOW = 0.25


@torch.no_grad()
def embed_data(
    model: FusionModel,
    data: TrainingData,
    device: torch.device,
    *,
    views: float = 1.0,
    rng: np.random.Generator | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Embeddings of every video in ``data`` (or of one random view of each)."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        chunk = data.features[start : start + batch_size]
        inputs = build_inputs(model.config, chunk, rng=rng, view_fraction=views).to(device)
        out.append(model(inputs).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.dim), np.float32)


def validation_relevance(
    config: TrainConfig, data: TrainingData
) -> tuple[str, list[np.ndarray | None]]:
    """What 'relevant' means on the validation set for this pair source."""
    if config.pairs == PairSource.RELATED and len(data.pairs):
        return "pairs", relevance_from_pairs(len(data), data.pairs)
    if config.pairs != PairSource.SELF and (data.labels >= 0).sum() >= 2:
        return "categories", relevance_from_labels(data.labels)
    return "same_source", []


def evaluate_model(
    model: FusionModel,
    data: TrainingData,
    config: TrainConfig,
    device: torch.device,
    *,
    with_baselines: bool = True,
    catalog: Sequence[VideoFeatures] | None = None,
    queries: np.ndarray | None = None,
) -> dict[str, Any]:
    """Validation figures for the model (and, optionally, the content baseline and random).

    ``catalog``: the features the model's input transforms were fitted on; the content baseline
    is then z-scored with the same statistics, so an untrained residual model equals it.
    ``queries``: the indices of the videos whose rankings count (default: every video); each
    ranks the whole of ``data``, as a new upload ranks the catalog.
    """
    kind, relevant = validation_relevance(config, data)
    asked = np.ones(len(data), dtype=bool) if queries is None else np.zeros(len(data), bool)
    if queries is not None:
        asked[queries] = True
    report: dict[str, Any] = {"relevance": kind, "videos": int(asked.sum()), "gallery": len(data)}
    if kind == "same_source":
        # Two windows of every video; a window's relevant item is the other window.
        rng = np.random.default_rng(12345)
        window = min(config.view_fraction, SAME_SOURCE_WINDOW)
        first = embed_data(model, data, device, views=window, rng=rng)
        second = embed_data(model, data, device, views=window, rng=rng)
        n = len(data)
        vectors = np.concatenate([first, second])
        relevant = [np.array([(i + n) % (2 * n)]) if asked[i % n] else None for i in range(2 * n)]
        report["model"] = retrieval_metrics(vectors, relevant)
        if with_baselines:
            rng = np.random.default_rng(12345)
            views = [build_inputs_views(data, window, rng) for _ in range(2)]
            weights = model.config.modality_weights
            base = np.concatenate(
                [content_baseline_vectors(v, reference=catalog, weights=weights) for v in views]
            )
            report["content_baseline"] = retrieval_metrics(base, relevant)
            report["random"] = random_metrics(2 * n, relevant)
        return report
    relevant = restrict(relevant, asked)
    vectors = embed_data(model, data, device)
    report["model"] = retrieval_metrics(vectors, relevant)
    if with_baselines:
        modalities = model.config.modalities
        report["content_baseline"] = retrieval_metrics(
            content_baseline_vectors(
                data.features, modalities, catalog, model.config.modality_weights
            ),
            relevant,
        )
        report["random"] = random_metrics(len(data), relevant)
    return report


def build_inputs_views(
    data: TrainingData, fraction: float, rng: np.random.Generator
) -> list[VideoFeatures]:
    """Pooled-feature copies of every video restricted to one random window (for baselines)."""
    out = []
    for f in data.features:
        v = f.visual_seq[random_window(f.visual_seq.shape[0], fraction, rng)]
        a = (
            None
            if f.audio_seq is None
            else f.audio_seq[random_window(f.audio_seq.shape[0], fraction, rng)]
        )
        out.append(
            replace(
                f,
                visual=pool_visual(f, v),
                audio=None if a is None else pool_sequence(a),
                visual_seq=v,
                audio_seq=a,
            )
        )
    return out

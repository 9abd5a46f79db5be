"""Retrieval metrics on hand-made rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.baselines import content_baseline_vectors
from training.evaluation import (
    random_metrics,
    relevance_from_labels,
    relevance_from_pairs,
    retrieval_metrics,
)


def _unit(angles: list[float]) -> np.ndarray:
    a = np.array(angles)
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_known_ranking() -> None:
    # query 0 ranks: item1 (relevant), item2 (not), item3 (relevant)
    vectors = _unit([0.0, 0.1, 0.2, 0.3])
    relevant = [np.array([1, 3]), None, None, None]
    m = retrieval_metrics(vectors, relevant, ks=(1, 2, 3))
    assert m["queries"] == 1
    assert m["precision@1"] == 1.0 and m["precision@2"] == 0.5
    assert m["precision@3"] == pytest.approx(2 / 3)
    assert m["recall@1"] == 1.0 and m["recall@2"] == 0.5 and m["recall@3"] == 1.0
    assert m["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / ideal)


def test_perfect_and_random_rankings() -> None:
    labels = np.repeat(np.arange(4), 5)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    vectors = centres[labels] + 0.01 * rng.normal(size=(20, 16))
    relevant = relevance_from_labels(labels)
    perfect = retrieval_metrics(vectors.astype(np.float32), relevant)
    assert perfect["map"] == pytest.approx(1.0) and perfect["recall@10"] == pytest.approx(1.0)
    chance = random_metrics(20, relevant)
    assert chance["precision@10"] == pytest.approx(4 / 19, abs=0.05)


def test_relevance_helpers() -> None:
    assert relevance_from_labels(np.array([0, 0, 1, -1]), min_relevant=1)[2] is None
    assert relevance_from_labels(np.array([0, 0, 1, -1]))[0].tolist() == [1]
    partners = relevance_from_pairs(4, np.array([[0, 1], [2, 1]]))
    assert partners[1].tolist() == [0, 2] and partners[3] is None


def test_content_baseline_is_normalised_with_missing_audio() -> None:
    from recsys.features import VideoFeatures

    rng = np.random.default_rng(0)
    features = [
        VideoFeatures(
            "content",
            "content-1",
            rng.normal(size=6).astype(np.float32) * 1000,
            np.zeros((1, 3), np.float32),
            None if i == 0 else rng.normal(size=4).astype(np.float32),
        )
        for i in range(5)
    ]
    vectors = content_baseline_vectors(features)
    assert vectors.shape == (5, 10)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not vectors[0, 6:].any()

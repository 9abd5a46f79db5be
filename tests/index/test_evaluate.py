"""Recall against exact search: tie-tolerant, and the knob is tuned upward to the gate."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from index.evaluate import TIE_TOLERANCE, exact_ground_truth, recall_at_k, tune_search
from tests.index.catalog import clustered_vectors


def test_ties_at_rank_k_do_not_count_as_misses() -> None:
    base = clustered_vectors(300, 16, seed=3)
    vectors = np.concatenate([base, base])  # every vector twice: ranks 1-2 tie, and so on
    ids = np.arange(vectors.shape[0], dtype=np.int64)
    queries = base[:20]
    truth = exact_ground_truth(vectors, ids, queries, k=3)
    # swap each tied pair: a different but equally good answer
    twin = np.where(truth.ids < 300, truth.ids + 300, truth.ids - 300)
    assert recall_at_k(truth, twin[:, :3]) == pytest.approx(1.0)
    assert recall_at_k(truth, truth.ids[:, :3]) == pytest.approx(1.0)
    wrong = np.full((20, 3), -1, dtype=np.int64)
    assert recall_at_k(truth, wrong) == 0.0


def test_recall_counts_partial_overlap() -> None:
    vectors = clustered_vectors(500, 16, seed=4)
    ids = np.arange(500, dtype=np.int64) + 1000
    truth = exact_ground_truth(vectors, ids, vectors[:10], k=10)
    half = truth.ids[:, :10].copy()
    half[:, 5:] = -1
    assert recall_at_k(truth, half) == pytest.approx(0.5)


def test_tuning_raises_nprobe_until_the_gate() -> None:
    vectors = clustered_vectors(4000, 32, seed=5)
    ids = np.arange(4000, dtype=np.int64)
    index = faiss.index_factory(32, "IVF64,Flat", faiss.METRIC_INNER_PRODUCT)
    index.train(vectors)
    index.add_with_ids(vectors, ids)
    truth = exact_ground_truth(vectors, ids, vectors[:300], k=10)
    result = tune_search(index, truth, 0.97)
    assert result.reached and result.recall >= 0.97
    values = [point["nprobe"] for point in result.curve]
    assert values == sorted(values) and values[-1] == result.params["nprobe"]
    assert all(point["recall"] < 0.97 for point in result.curve[:-1])
    assert faiss.extract_index_ivf(index).nprobe == result.params["nprobe"]
    impossible = tune_search(index, truth, 1.01)
    assert not impossible.reached and impossible.recall <= 1.0


def _at_scores(scores: list[float]) -> np.ndarray:
    """Unit vectors whose inner product with the query (1, 0, 0, 0) is each given score."""
    return np.array([[s, np.sqrt(1 - s * s), 0.0, 0.0] for s in scores], dtype=np.float32)


def test_tie_tolerance_is_absolute_and_within_the_2k_exact_neighbours() -> None:
    """What the module docstring says: a hit is one of the 2k exact neighbours whose exact
    score is ≥ the k-th exact score − TIE_TOLERANCE (absolute, even for small scores)."""
    query = np.array([[1.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    kth = 0.05  # small: a relative tolerance of 1e-5 would be 5e-7 here
    keys = np.arange(100, 104, dtype=np.int64)
    within = exact_ground_truth(
        _at_scores([0.9, kth, kth - TIE_TOLERANCE / 2, 0.01]), keys, query, k=2
    )
    assert recall_at_k(within, np.array([[100, 102]])) == 1.0
    beyond = exact_ground_truth(
        _at_scores([0.9, kth, kth - 3 * TIE_TOLERANCE, 0.01]), keys, query, k=2
    )
    assert recall_at_k(beyond, np.array([[100, 102]])) == 0.5
    # four vectors share the k-th score: the exact search is 2k = 4 deep, so one is not seen
    tied = np.arange(100, 106, dtype=np.int64)
    truth = exact_ground_truth(_at_scores([0.9, kth, kth, kth, kth, 0.01]), tied, query, k=2)
    assert truth.ids.shape == (1, 4)
    unseen = sorted(set(range(101, 105)) - set(truth.ids[0].tolist()))
    assert len(unseen) == 1
    seen_tie = int(truth.ids[0][-1])
    assert recall_at_k(truth, np.array([[100, seen_tie]])) == 1.0
    assert recall_at_k(truth, np.array([[100, unseen[0]]])) == 0.5

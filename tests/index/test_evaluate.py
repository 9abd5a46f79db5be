"""Recall against exact search: tie-tolerant, and the knob is tuned upward to the gate."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from index.evaluate import exact_ground_truth, recall_at_k, tune_search
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

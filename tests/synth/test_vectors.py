"""The seeded synthetic embeddings shared by the index tests and the benchmarks."""

from __future__ import annotations

import numpy as np

from recsys.synth import SyntheticVectors


def test_unit_norm_float32_and_seeded() -> None:
    data = SyntheticVectors(16, 500, clusters=8, seed=3)
    vectors = data.database()
    assert vectors.shape == (500, 16) and vectors.dtype == np.float32
    assert vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(vectors, SyntheticVectors(16, 500, clusters=8, seed=3).database())
    assert not np.array_equal(vectors, SyntheticVectors(16, 500, clusters=8, seed=4).database())


def test_vectors_lie_around_their_cluster_centre() -> None:
    data = SyntheticVectors(32, 2000, clusters=10, seed=0)
    vectors, labels = data.database_with_labels()
    centres = data.centres / np.linalg.norm(data.centres, axis=1, keepdims=True)
    nearest = np.argmax(vectors @ centres.T, axis=1)
    assert np.mean(nearest == labels) > 0.99
    assert data.n_clusters == 10 and SyntheticVectors(8, 10_000).n_clusters == 100


def test_queries_are_held_out_and_never_change_the_database() -> None:
    data = SyntheticVectors(16, 300, clusters=5, seed=1)
    queries = data.queries(50)
    assert queries.shape == (50, 16) and queries.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(queries, data.queries(50))
    assert not np.isin(queries, data.database()).all(axis=1).any()
    # from the same mixture: each query is close to some database vector
    assert (queries @ data.database().T).max(axis=1).min() > 0.5

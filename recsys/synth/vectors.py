"""Seeded synthetic embeddings for index tests and benchmarks (like faiss's ``SyntheticDataset``).

A Gaussian mixture: ``clusters`` random centres, each vector a centre plus ``spread`` times
Gaussian noise, L2-normalised float32 (clustered like real embeddings, so IVF and HNSW behave as
they do on a catalog, unlike uniform noise). The database and the held-out queries come from
their own random streams, so asking for more queries never changes the database. Generation
works in blocks, so a million 256-d vectors never need a float64 copy.

Exact neighbours and recall are measured with :mod:`index.evaluate` (``exact_ground_truth``,
``recall_at_k``), the same tie-tolerant measure as the index recall gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Vectors drawn per block.
BLOCK = 100_000
#: Offset of the queries' random stream from the database's.
QUERY_STREAM = 1000


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` scaled in place to unit L2 norm (rows of zeros stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.divide(vectors, norms, out=vectors, where=norms > 0)
    return vectors


@dataclass(frozen=True)
class SyntheticVectors:
    """``count`` database vectors of ``dim`` dimensions in ``clusters`` clusters; seeded.

    ``clusters`` defaults to ``max(16, sqrt(count))``. ``database()`` and ``queries(n)`` return
    new float32 arrays (C-contiguous, unit norm); the same arguments give the same arrays.
    """

    dim: int
    count: int
    clusters: int | None = None
    spread: float = 0.35
    seed: int = 0

    @property
    def n_clusters(self) -> int:
        return self.clusters or max(16, int(np.sqrt(self.count)))

    def _centres(self, rng: np.random.Generator) -> np.ndarray:
        return rng.standard_normal((self.n_clusters, self.dim), dtype=np.float32)

    @property
    def centres(self) -> np.ndarray:
        """The cluster centres (not normalised)."""
        return self._centres(np.random.default_rng(self.seed))

    def _draw(
        self, rng: np.random.Generator, centres: np.ndarray, count: int
    ) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((count, self.dim), dtype=np.float32)
        labels = np.empty(count, dtype=np.int64)
        for start in range(0, count, BLOCK):
            end = min(start + BLOCK, count)
            labels[start:end] = rng.integers(0, self.n_clusters, size=end - start)
            block = rng.standard_normal((end - start, self.dim), dtype=np.float32)
            block *= self.spread
            block += centres[labels[start:end]]
            out[start:end] = block
        return normalize_rows(out), labels

    def database_with_labels(self) -> tuple[np.ndarray, np.ndarray]:
        """The database vectors and the cluster of each."""
        rng = np.random.default_rng(self.seed)
        return self._draw(rng, self._centres(rng), self.count)

    def database(self) -> np.ndarray:
        return self.database_with_labels()[0]

    def queries(self, count: int) -> np.ndarray:
        """``count`` held-out vectors from the same mixture (not in the database)."""
        rng = np.random.default_rng(self.seed + QUERY_STREAM)
        return self._draw(rng, self.centres, count)[0]

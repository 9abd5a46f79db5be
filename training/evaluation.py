"""Retrieval metrics for embeddings: recall@K, precision@K, mAP and nDCG@K.

Every query ranks the whole gallery by inner product (exact search; the query itself is left
out). Relevance is given as a set of gallery indices per query: same category, held-out related
partners, or the other windows of the same source clip.

``recall@K`` is normalised so that a perfect ranking scores 1: the share of the
``min(K, |relevant|)`` best possible hits that are in the top K. It equals plain recall when a
query has at most K relevant items and precision@K when it has more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.errors import TrainingError


def relevance_from_labels(labels: np.ndarray, min_relevant: int = 1) -> list[np.ndarray | None]:
    """Same-label relevance; queries with fewer than ``min_relevant`` others are None."""
    labels = np.asarray(labels)
    result: list[np.ndarray | None] = []
    for i, label in enumerate(labels):
        if label is None or (isinstance(label, int | np.integer) and label < 0):
            result.append(None)
            continue
        same = np.flatnonzero(labels == label)
        same = same[same != i]
        result.append(same if same.shape[0] >= min_relevant else None)
    return result


def relevance_from_pairs(n: int, pairs: np.ndarray) -> list[np.ndarray | None]:
    """Partners of each video in ``pairs`` (both directions); videos without any are None."""
    partners: list[set[int]] = [set() for _ in range(n)]
    for a, b in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
        if a != b:
            partners[int(a)].add(int(b))
            partners[int(b)].add(int(a))
    return [np.array(sorted(p), dtype=np.int64) if p else None for p in partners]


def ranking(vectors: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Gallery order per query (``rows``, default every item), best first, the query itself
    removed: (len(rows), n-1). Ranking only the queries keeps a few held-out videos against
    a large catalog cheap."""
    vectors = np.asarray(vectors, dtype=np.float32)
    rows = np.arange(vectors.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    scores = vectors[rows] @ vectors.T
    scores[np.arange(rows.shape[0]), rows] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :-1]


def retrieval_metrics(
    vectors: np.ndarray,
    relevant: Sequence[np.ndarray | None],
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Mean metrics over the queries that have relevant items (see the module docstring)."""
    n = vectors.shape[0]
    if n < 2:
        raise ValueError("retrieval metrics need at least 2 items")
    asked = [(q, rel) for q, rel in enumerate(relevant[:n]) if rel is not None and len(rel)]
    order = ranking(vectors, np.array([q for q, _ in asked], dtype=np.int64))
    sums: dict[str, float] = {}
    queries = 0
    discounts = 1.0 / np.log2(np.arange(2, n + 1))
    for row, (_, rel) in enumerate(asked):
        queries += 1
        hits = np.isin(order[row], rel)
        cum = np.cumsum(hits)
        n_rel = int(hits.sum())
        for k in ks:
            k_eff = min(k, n - 1)
            found = float(cum[k_eff - 1])
            sums[f"precision@{k}"] = sums.get(f"precision@{k}", 0.0) + found / k_eff
            sums[f"recall@{k}"] = sums.get(f"recall@{k}", 0.0) + found / min(k_eff, n_rel)
            ideal = discounts[: min(k_eff, n_rel)].sum()
            dcg = float((hits[:k_eff] * discounts[:k_eff]).sum())
            sums[f"ndcg@{k}"] = sums.get(f"ndcg@{k}", 0.0) + float(dcg / ideal)
        positions = np.flatnonzero(hits)
        ap = float(((np.arange(positions.shape[0]) + 1) / (positions + 1)).mean())
        sums["map"] = sums.get("map", 0.0) + ap
    if queries == 0:
        raise TrainingError(
            "no query has a relevant item (no related pair or shared category among the "
            "evaluated videos); nothing to evaluate: add related pairs or categories, or "
            "evaluate more videos"
        )
    metrics = {key: value / queries for key, value in sorted(sums.items())}
    metrics["queries"] = float(queries)
    return metrics


def random_metrics(
    n: int,
    relevant: Sequence[np.ndarray | None],
    ks: Sequence[int] = (1, 5, 10),
    seeds: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """The same metrics for random rankings (mean over ``seeds`` draws): the chance level."""
    rng = np.random.default_rng(seed)
    runs = [
        retrieval_metrics(rng.standard_normal((n, 32)).astype(np.float32), relevant, ks)
        for _ in range(seeds)
    ]
    return {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}

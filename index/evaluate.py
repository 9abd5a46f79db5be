"""Recall of an approximate index against exact search, and tuning its search knob.

Recall@k is the k-NN intersection of faiss ``contrib/evaluation.py`` (``knn_intersection_measure``)
made tolerant of ties, in the spirit of its ``check_ref_knn_with_draws``. The exact search is run
2k deep; a returned id is a hit when it is one of those 2k exact neighbours *and* its exact score
is at least the k-th exact score minus :data:`TIE_TOLERANCE` (an absolute tolerance on the inner
product, not a relative one). So an equally good id returned in place of an exact top-k one
counts, as long as the exact search saw it within 2k; an id tied with the k-th beyond rank 2k
(more than k extra ties) counts as a miss. Each query counts at most k hits (an id returned
twice counts twice); ``-1`` (no result) never counts.

The knob (``nprobe`` / ``efSearch``) is raised from its cheapest value until the recall reaches
the gate, or the gate refuses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from index.params import apply_search_params, search_param_name, search_param_values

log = logging.getLogger(__name__)
TIE_TOLERANCE = 1e-5
SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class GroundTruth:
    """Exact top results (scores and ids) for a set of query vectors."""

    queries: np.ndarray
    scores: np.ndarray
    ids: np.ndarray
    k: int


@dataclass
class TuneResult:
    params: dict[str, int]
    recall: float
    reached: bool
    curve: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def exact_ground_truth(
    vectors: np.ndarray, video_keys: np.ndarray, queries: np.ndarray, k: int = 10
) -> GroundTruth:
    """Exact inner-product neighbours (2k deep, so ties at rank k are visible).

    ``video_keys[i]`` is the id of ``vectors[i]``; the truth is in those ids.
    """
    depth = min(2 * k, vectors.shape[0])
    scores, positions = faiss.knn(
        np.ascontiguousarray(queries, dtype=np.float32),
        np.ascontiguousarray(vectors, dtype=np.float32),
        depth,
        metric=faiss.METRIC_INNER_PRODUCT,
    )
    found = np.where(positions >= 0, video_keys[np.clip(positions, 0, None)], -1)
    return GroundTruth(queries=queries, scores=scores, ids=found, k=k)


def recall_at_k(truth: GroundTruth, found_ids: np.ndarray) -> float:
    """Mean fraction of the exact top-k found in ``found_ids[:, :k]``, ties tolerated.

    A found id is a hit when it is among the 2k exact neighbours of ``truth`` with an exact
    score ≥ (k-th exact score − :data:`TIE_TOLERANCE`); see the module docstring.
    """
    k = truth.k
    found_ids = found_ids[:, :k]
    wanted = min(k, truth.ids.shape[1])
    if wanted == 0:
        return 1.0
    kth = truth.scores[:, wanted - 1 : wanted] - TIE_TOLERANCE
    acceptable = np.where(truth.scores >= kth, truth.ids, -2)  # -2 never matches a result
    hits = 0
    for row in range(found_ids.shape[0]):
        valid = found_ids[row][found_ids[row] >= 0]
        hits += min(wanted, int(np.isin(valid, acceptable[row]).sum()))
    return hits / (wanted * found_ids.shape[0])


def measure_recall(index: faiss.Index, truth: GroundTruth, search: SearchFn | None = None) -> float:
    _, found = (search or index.search)(truth.queries, truth.k)
    return recall_at_k(truth, found)


def tune_search(
    index: faiss.Index, truth: GroundTruth, min_recall: float, search: SearchFn | None = None
) -> TuneResult:
    """Smallest knob value whose recall@k reaches ``min_recall`` (the index keeps it set).

    ``search`` replaces ``index.search`` (e.g. to skip hidden ids); it must honour the knob.
    """
    started = time.perf_counter()
    name = search_param_name(index)
    curve: list[dict[str, Any]] = []
    if name is None:
        recall = measure_recall(index, truth, search)
        curve.append({"recall": recall})
        return TuneResult({}, recall, recall >= min_recall, curve, time.perf_counter() - started)
    best: tuple[float, int] = (-1.0, 0)
    for value in search_param_values(index):
        apply_search_params(index, {name: value})
        t0 = time.perf_counter()
        recall = measure_recall(index, truth, search)
        per_query_ms = 1000 * (time.perf_counter() - t0) / max(1, truth.queries.shape[0])
        curve.append({name: value, "recall": recall, "batch_ms_per_query": per_query_ms})
        log.info("%s=%d: recall@%d %.4f", name, value, truth.k, recall)
        if recall > best[0]:
            best = (recall, value)
        if recall >= min_recall:
            return TuneResult({name: value}, recall, True, curve, time.perf_counter() - started)
    apply_search_params(index, {name: best[1]})
    return TuneResult({name: best[1]}, best[0], False, curve, time.perf_counter() - started)


def pick_queries(count: int, wanted: int, exclude: np.ndarray, seed: int = 0) -> np.ndarray:
    """Positions of held-out query vectors: outside the training sample when possible."""
    rng = np.random.default_rng(seed + 1)
    wanted = min(wanted, count)
    pool = np.setdiff1d(np.arange(count), exclude, assume_unique=True)
    if pool.size < wanted:
        pool = np.arange(count)
    return np.sort(rng.choice(pool, size=wanted, replace=False))

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

Filtered queries (a category, a duration range) search with an id selector inside the index
(:mod:`index.selectors`): the probed lists then hold only a fraction of admitted videos, and the
k best admitted ones lie in more lists than the k best overall. So the gate also measures
recall@k within seeded random subsets of :data:`FILTER_SELECTIVITIES` of the catalog (random:
no correlation with the vectors, the hardest case for a filter) and records, per selectivity,
the knob value that reaches the same recall (:func:`tune_filtered`); a filtered search uses the
value of the nearest measured selectivity at or below its own (:class:`index.load.LoadedIndex`).

The exact neighbours are gathered chunk by chunk (:class:`TruthBuilder`), so a build that
streams its vectors from the store computes them on the same pass that adds them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from index.params import (
    SelectorParams,
    apply_search_params,
    search_param_name,
    search_param_values,
)
from index.selectors import KeySelector

log = logging.getLogger(__name__)
TIE_TOLERANCE = 1e-5
# Filter selectivities the gate tunes the knob for (share of the catalog a filter admits).
FILTER_SELECTIVITIES = (0.1, 0.01)
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
    filtered: list[dict[str, Any]] = field(default_factory=list)  # see tune_filtered


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


class TruthBuilder:
    """Exact neighbours of fixed queries, accumulated over chunks of the searched vectors:
    over everything and within each subset (a boolean mask over positions)."""

    def __init__(self, queries: np.ndarray, k: int, subsets: Sequence[np.ndarray] = ()) -> None:
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.k = k
        self.depth = 2 * k
        self.subsets = list(subsets)
        nq = self.queries.shape[0]
        self._heaps = [
            faiss.ResultHeap(nq, self.depth, keep_max=True) for _ in range(1 + len(self.subsets))
        ]
        self._seen = [0] * (1 + len(self.subsets))

    def add(self, positions: np.ndarray, keys: np.ndarray, vectors: np.ndarray) -> None:
        """One chunk: rows ``vectors`` at ``positions``, keyed ``keys``."""
        for slot, mask in enumerate([None, *self.subsets]):
            if mask is None:
                rows, ids = vectors, keys
            else:
                inside = mask[positions]
                if not inside.any():
                    continue
                rows, ids = vectors[inside], keys[inside]
            depth = min(self.depth, rows.shape[0])
            scores, found = faiss.knn(
                self.queries, np.ascontiguousarray(rows), depth, metric=faiss.METRIC_INNER_PRODUCT
            )
            self._heaps[slot].add_result(
                scores, np.where(found >= 0, ids[np.clip(found, 0, None)], -1)
            )
            self._seen[slot] += int(rows.shape[0])

    def finish(self) -> list[GroundTruth]:
        """[truth over everything, truth within each subset] (each at most 2k deep)."""
        out = []
        for heap, seen in zip(self._heaps, self._seen, strict=True):
            heap.finalize()
            depth = min(self.depth, seen)
            out.append(GroundTruth(self.queries, heap.D[:, :depth], heap.I[:, :depth], self.k))
        return out


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


@dataclass
class FilteredTruth:
    """The exact answers of the gate's queries within one random subset of the catalog."""

    selectivity: float
    keys: np.ndarray  # the subset's video keys
    truth: GroundTruth


def filter_subsets(count: int, seed: int, k: int) -> list[tuple[float, np.ndarray]]:
    """Seeded random subsets of positions for each of :data:`FILTER_SELECTIVITIES`, as
    boolean masks (none smaller than ``k``: such a filter is answered whole anyway)."""
    out = []
    for level, selectivity in enumerate(FILTER_SELECTIVITIES):
        size = round(selectivity * count)
        if size < k or size >= count:
            continue
        rng = np.random.default_rng([seed, 2, level])
        mask = np.zeros(count, dtype=bool)
        mask[rng.choice(count, size=size, replace=False)] = True
        out.append((selectivity, mask))
    return out


def tune_filtered(
    index: faiss.Index, filtered: Sequence[FilteredTruth], min_recall: float, start: dict[str, int]
) -> list[dict[str, Any]]:
    """Per selectivity, the smallest knob value (from the unfiltered one, ``start``) whose
    selector-filtered recall@k reaches ``min_recall``; the index keeps ``start`` set."""
    name = search_param_name(index)
    if name is None or not filtered:
        return []
    values = [v for v in search_param_values(index) if v >= int(start.get(name, 0))]
    out: list[dict[str, Any]] = []
    try:
        for item in filtered:
            selector = KeySelector.of_keys(item.keys)
            best: tuple[float, int] = (-1.0, values[0] if values else 0)
            reached = False
            for value in values:
                apply_search_params(index, {name: value})
                params = SelectorParams(index, selector.selector)
                _, found = index.search(item.truth.queries, item.truth.k, params=params.params)
                recall = recall_at_k(item.truth, found)
                log.info(
                    "filter %.3g, %s=%d: recall@%d %.4f",
                    item.selectivity,
                    name,
                    value,
                    item.truth.k,
                    recall,
                )
                if recall > best[0]:
                    best = (recall, value)
                if recall >= min_recall:
                    best, reached = (recall, value), True
                    break
            out.append(
                {
                    "selectivity": item.selectivity,
                    name: best[1],
                    "recall": best[0],
                    "reached": reached,
                }
            )
    finally:
        apply_search_params(index, start)
    return out


def pick_queries(count: int, wanted: int, exclude: np.ndarray, seed: int = 0) -> np.ndarray:
    """Positions of held-out query vectors: outside the training sample when possible."""
    rng = np.random.default_rng(seed + 1)
    wanted = min(wanted, count)
    pool = np.setdiff1d(np.arange(count), exclude, assume_unique=True)
    if pool.size < wanted:
        pool = np.arange(count)
    return np.sort(rng.choice(pool, size=wanted, replace=False))

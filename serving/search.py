"""Candidates of a query over the served state: nearest neighbours under filters (searching
deeper within a budget), co-watch partners, stored vectors, explanations.

Pure functions of a :class:`ServingState`; they raise domain errors (:mod:`serving.errors`). A
search asks the index for a few more neighbours than wanted; when filters (category, channel,
duration, exclusions, deleted or failed videos) drop too many, it asks again four times deeper
until it has ``k``, the index has nothing more to give, or the query's :class:`SearchBudget` is
spent: a filter that matches almost nothing must not turn one request into a scan of the whole
index. A search the budget stopped says so (``partial``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from recsys.ids import VideoKey
from serving.errors import VideoNotFound, VideoNotServed
from serving.plan import DEFAULT_BUDGET, SearchBudget
from serving.selectors import FilterCodes, admitted
from serving.state import ServingState

GROWTH = 4
# Up to this many results a Python loop beats a dozen numpy calls; beyond, numpy wins.
PYTHON_LOOP_DEPTH = 64
NO_FILTER = FilterCodes()


@dataclass
class Neighbours:
    """Candidates best first: keys, catalog positions and scores (ties: smaller key first)."""

    video_keys: np.ndarray  # int64
    positions: np.ndarray  # catalog positions
    scores: np.ndarray  # float32
    searched: int
    exhausted: bool  # nothing more passes the filters
    partial: bool = False  # the budget stopped the search short
    sources: list[str] | None = None  # hybrid: each candidate's source
    similarities: np.ndarray | None = None  # content cosine to the query, when not the score

    @classmethod
    def empty(cls, searched: int = 0) -> Neighbours:
        nothing = np.zeros(0, np.int64)
        return cls(nothing, nothing, np.zeros(0, np.float32), searched, True)

    def __len__(self) -> int:
        return int(self.video_keys.shape[0])


def resolve(state: ServingState, video_id: str) -> int:
    """Catalog position of a video that the served index holds, or the domain error that says
    why not (:class:`VideoNotFound`, :class:`VideoNotServed`).

    Unknown to the snapshot means it was added after the index was built: the caller falls
    back to the database to tell 404 from 409.
    """
    catalog = state.catalog
    position = catalog.position(video_id)
    if position is None:
        raise VideoNotFound(f"video {video_id!r} is not in the served catalog", video_id=video_id)
    if catalog.is_servable(position) and state.index.contains(catalog.video_key(position)):
        return position
    info = catalog.info(position)
    if info.status in ("deleted", "failed"):
        raise VideoNotServed(
            f"video {video_id!r} is {info.status} and is not served",
            video_id=video_id,
            status=info.status,
            reason=info.status_reason or f"status {info.status}",
        )
    if not state.index.contains(info.video_key):
        raise VideoNotServed(
            f"video {video_id!r} has no embedding in index {state.index_version} "
            f"(model {state.model_version}); it is served after the next refresh and index "
            "build",
            video_id=video_id,
            status=info.status,
            reason=info.status_reason or f"not embedded in model {state.model_version}",
        )
    return position


def video_keys(state: ServingState, video_ids: Iterable[str]) -> frozenset[VideoKey]:
    """Video keys of the catalog videos among ``video_ids`` (unknown ones cannot appear)."""
    catalog = state.catalog
    found = (catalog.position(v) for v in video_ids)
    return frozenset(catalog.video_key(p) for p in found if p is not None)


def first_depth(ntotal: int, k: int, unwanted: int) -> int:
    """Neighbours the first search round asks for: ``k``, the ``unwanted`` ones that may be
    among them, and one spare (a deleted or failed result)."""
    return min(ntotal, k + unwanted + 1)


def nearest(
    state: ServingState,
    query: np.ndarray,
    k: int,
    codes: FilterCodes = NO_FILTER,
    unwanted: frozenset[VideoKey] = frozenset(),
    budget: SearchBudget = DEFAULT_BUDGET,
    floor: float | None = None,
) -> Neighbours:
    """The ``k`` best servable neighbours of ``query`` that pass the filters, none below
    ``floor``, searching no deeper and no wider than ``budget`` allows (``partial`` when that
    stopped it short)."""
    catalog = state.catalog
    ntotal = state.ntotal
    if ntotal == 0:
        return Neighbours.empty()
    queries = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    depth = first_depth(ntotal, k, len(unwanted))
    if not codes.narrowing and catalog.dense is not None and depth <= PYTHON_LOOP_DEPTH:
        found = _nearest_unfiltered(state, queries, k, depth, unwanted, floor)
        if found is not None:
            return found
    unwanted_arr = np.fromiter(unwanted, dtype=np.int64, count=len(unwanted))
    # Never below the first round (bounded by the request schema), so a budget cannot make a
    # plain query worse; widening beyond the index's own limit is pointless.
    max_depth = min(ntotal, max(depth, budget.max_depth))
    max_effort = max(1, min(state.index.max_effort, budget.max_effort))
    effort = 1
    # Catalog filters run inside the index: it returns admitted videos only.
    allow = None
    if codes.narrowing:
        allow = catalog.selectors.selector(catalog, codes)
        if allow.count == 0:
            return Neighbours.empty()
    while True:
        scores, keys = state.index.search(queries, depth, effort=effort, allow=allow)
        keys = keys[0]
        scores = scores[0]
        valid = keys >= 0
        mask, positions = admissible(state, keys, codes, unwanted, unwanted_arr)
        mask &= valid
        below = floor is not None and bool((valid & (scores < floor)).any())
        if floor is not None:
            mask &= scores >= floor
        chosen = np.flatnonzero(mask)[:k]
        # Fewer results than asked for means the probed part of the index ran dry: widen the
        # search until it covers everything; otherwise ask for more results.
        ran_dry = not bool(valid.all())
        widest = effort >= state.index.max_effort
        exhausted = (depth >= ntotal and not ran_dry) or (ran_dry and widest) or below
        spent = effort >= max_effort if ran_dry else depth >= max_depth
        if chosen.size >= k or exhausted or spent:
            return _ties_by_key(
                Neighbours(
                    video_keys=keys[chosen],
                    positions=positions[chosen],
                    scores=scores[chosen],
                    searched=depth,
                    exhausted=exhausted and chosen.size < k,
                    partial=not exhausted and chosen.size < k,
                )
            )
        if ran_dry:
            effort = min(max_effort, effort * GROWTH)
        else:
            depth = min(max_depth, depth * GROWTH)


def admissible(
    state: ServingState,
    keys: np.ndarray,
    codes: FilterCodes,
    unwanted: frozenset[VideoKey],
    unwanted_arr: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(which ``keys`` may be returned, their catalog positions): servable, not unwanted,
    passing the catalog filters."""
    catalog = state.catalog
    positions = catalog.positions_of(keys)
    mask = catalog.servable_mask(positions)
    if unwanted_arr.size > 8:
        mask &= ~np.isin(keys, unwanted_arr)
    else:
        for unwanted_key in unwanted:
            mask &= keys != unwanted_key
    if codes.narrowing:
        mask &= admitted(catalog, positions, codes)
    return mask, positions


def co_watched(
    state: ServingState,
    video_key: VideoKey,
    codes: FilterCodes = NO_FILTER,
    unwanted: frozenset[VideoKey] = frozenset(),
) -> Neighbours:
    """The video's co-watch partners in the served graph that pass the filters, strongest
    first (scores: the co-watch weights; ties: smaller key first); served videos only."""
    graph = state.cowatch
    partners, weights = graph.of(int(video_key)) if graph is not None else (None, None)
    if partners is None or weights is None or not partners.size:
        return Neighbours.empty()
    unwanted_arr = np.fromiter(unwanted, dtype=np.int64, count=len(unwanted))
    mask, positions = admissible(state, partners, codes, unwanted, unwanted_arr)
    hidden = state.index.excluded  # removed from the index since it was built
    if hidden.size:
        mask &= ~np.isin(partners, hidden)
    chosen = np.flatnonzero(mask)
    return _ties_by_key(
        Neighbours(
            video_keys=partners[chosen],
            positions=positions[chosen],
            scores=weights[chosen].astype(np.float32),
            searched=int(partners.size),
            exhausted=True,
        )
    )


def _ties_by_key(found: Neighbours) -> Neighbours:
    """``found`` with equal scores ordered by video key, so that a list is the same however
    deep it was searched (faiss leaves the order of ties open)."""
    scores = found.scores
    if scores.shape[0] < 2 or not bool((scores[1:] == scores[:-1]).any()):
        return found
    _reorder(found, np.lexsort((found.video_keys, -scores.astype(np.float64))))
    return found


def _reorder(found: Neighbours, order: np.ndarray) -> None:
    found.video_keys = found.video_keys[order]
    found.positions = found.positions[order]
    found.scores = found.scores[order]


def _nearest_unfiltered(
    state: ServingState,
    queries: np.ndarray,
    k: int,
    depth: int,
    unwanted: frozenset[VideoKey],
    floor: float | None,
) -> Neighbours | None:
    """The common case (no filters) in plain Python over ~k results: a dozen numpy calls on
    11-element arrays cost more than the loop. None when the first page is not enough."""
    scores, keys = state.index.search(queries, depth)
    admitted = admit_first(state, scores[0], keys[0], k, unwanted, floor)
    return None if admitted is None else admitted[0]


def admit_first(
    state: ServingState,
    scores: np.ndarray,
    keys: np.ndarray,
    k: int,
    unwanted: frozenset[VideoKey],
    floor: float | None = None,
) -> tuple[Neighbours, list[int]] | None:
    """The first ``k`` servable results of one unfiltered search of ``len(keys)`` neighbours
    (none below ``floor``, none ``unwanted``), and their rows in it; ties ordered by key.
    None when they are not enough to tell the list (fewer than ``k`` while the index may hold
    more): the general search decides then."""
    catalog = state.catalog
    dense = catalog.dense
    assert dense is not None
    servable = catalog.servable
    limit = dense.shape[0]
    depth = int(keys.shape[0])
    out_keys: list[int] = []
    out_positions: list[int] = []
    out_scores: list[float] = []
    rows: list[int] = []
    returned = 0
    below = False
    for video_key, score in zip(keys.tolist(), scores.tolist(), strict=True):
        if video_key < 0:
            break
        returned += 1
        if floor is not None and score < floor:
            below = True
            break
        if video_key in unwanted or video_key >= limit:
            continue
        position = dense.item(video_key)  # a Python int without a numpy scalar
        if position < 0 or not servable.item(position):
            continue
        out_keys.append(video_key)
        out_positions.append(position)
        out_scores.append(score)
        rows.append(returned - 1)
        if len(out_keys) == k:
            break
    # Short of k: let the general loop decide between "searched everything" and "the probed
    # lists ran dry" (an approximate index returns fewer than asked for in both cases).
    if len(out_keys) < k and not below and (depth < state.ntotal or returned < depth):
        return None
    found = Neighbours(
        video_keys=np.array(out_keys, dtype=np.int64),
        positions=np.array(out_positions, dtype=np.int64),
        scores=np.array(out_scores, dtype=np.float32),
        searched=depth,
        exhausted=len(out_keys) < k,
    )
    # ties are rare: look for them in the list (cheap at ~k) before any numpy call
    if any(a == b for a, b in zip(out_scores, out_scores[1:], strict=False)):
        order = np.lexsort((found.video_keys, -found.scores.astype(np.float64)))
        _reorder(found, order)
        rows = [rows[i] for i in order.tolist()]
    return found, rows


def stored_vectors(state: ServingState, video_keys: np.ndarray) -> np.ndarray:
    """The indexed vectors of served videos, one row each (zeros where the index has none):
    one batch call for keys a search returned, one call per key otherwise."""
    try:
        return state.index.reconstruct_batch(video_keys)
    except (KeyError, RuntimeError):  # a key the index does not hold
        pass
    out = np.zeros((int(video_keys.shape[0]), state.index.dim), dtype=np.float32)
    for row, video_key in enumerate(video_keys.tolist()):
        vector = state.vector(VideoKey(video_key))
        if vector is not None:
            out[row] = vector
    return out


def explain(
    state: ServingState, query_modalities: dict[str, np.ndarray | None], video_keys: np.ndarray
) -> list[dict[str, float | None]]:
    """Cosine similarity per modality between the query and each result (None if unknown)."""
    rows = state.modality_rows(video_keys)
    out: list[dict[str, float | None]] = [{} for _ in range(video_keys.shape[0])]
    for name, matrix in state.modalities.items():
        q = query_modalities.get(name)
        q_norm = float(np.linalg.norm(q)) if q is not None else 0.0
        for i, row in enumerate(rows):
            if row < 0 or q is None or q_norm == 0.0:
                out[i][name] = None
                continue
            vector = matrix[row]
            norm = float(np.linalg.norm(vector))
            out[i][name] = None if norm == 0.0 else float(vector @ q) / (norm * q_norm)
    for name in query_modalities:
        for item in out:
            item.setdefault(name, None)
    return out


def explain_video(
    state: ServingState, video_key: VideoKey, video_keys: np.ndarray
) -> list[dict[str, float | None]]:
    """:func:`explain` with a catalog video as the query."""
    return explain(state, dict(modality_vectors_of(state, (video_key,))[0]), video_keys)


def modality_vectors_of(
    state: ServingState, video_keys: Iterable[VideoKey]
) -> list[dict[str, np.ndarray]]:
    """Per-modality vectors of known videos (empty dicts where the store has none)."""
    rows = state.modality_rows(np.fromiter(video_keys, dtype=np.int64))
    return [
        {name: matrix[row] for name, matrix in state.modalities.items()} if row >= 0 else {}
        for row in rows
    ]


def combine(
    positives: list[np.ndarray], negatives: list[np.ndarray], negative_weight: float
) -> np.ndarray | None:
    """mean(positives) - w * mean(negatives), L2-normalised; None when it cancels out."""
    vector = np.mean(np.stack(positives), axis=0)
    if negatives and negative_weight > 0:
        vector = vector - negative_weight * np.mean(np.stack(negatives), axis=0)
    norm = float(np.linalg.norm(vector))
    if not math.isfinite(norm) or norm < 1e-6:
        return None
    return (vector / norm).astype(np.float32)


__all__ = [
    "Neighbours",
    "admit_first",
    "admissible",
    "co_watched",
    "combine",
    "explain",
    "explain_video",
    "first_depth",
    "modality_vectors_of",
    "nearest",
    "resolve",
    "stored_vectors",
    "video_keys",
]

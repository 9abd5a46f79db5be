"""Nearest-neighbour queries over the served state: filters, deeper search, explanations.

Pure functions of a :class:`ServingState`, shared by the JSON routes and the web page; they raise
domain errors (:mod:`api.errors`), never HTTP ones. A query
asks the index for a few more neighbours than wanted; when filters (category, duration, exclusions,
deleted or failed videos) drop too many, it asks again four times deeper until it has ``k``, the
index has nothing more to give, or the query's :class:`SearchBudget` is spent: a filter that
matches almost nothing must not turn one request into a scan of the whole index. A search the
budget stopped says so (``partial``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from api.config import ApiOptions
from api.errors import VideoNotFound, VideoNotServed
from api.filter_selectors import filter_selector
from api.serving_state import ServingState
from recsys.ids import VideoKey, video_id_path

GROWTH = 4


@dataclass(frozen=True)
class SearchBudget:
    """The most work one query may do while filters make it search deeper.

    ``max_depth`` bounds the neighbours asked of the index in one round (never below what the
    query needs in its first round: ``k`` plus its exclusions), ``max_effort`` how far an
    approximate index is widened (a multiple of its tuned ``nprobe``/``efSearch``). With growth
    by 4 per round, a query costs at most a handful of rounds of that size.
    """

    max_depth: int = ApiOptions.model_fields["search_max_depth"].default
    max_effort: int = ApiOptions.model_fields["search_max_effort"].default

    @classmethod
    def from_options(cls, options: ApiOptions) -> SearchBudget:
        return cls(max_depth=options.search_max_depth, max_effort=options.search_max_effort)


DEFAULT_BUDGET = SearchBudget()


@dataclass
class Filters:
    category: str | None = None
    exclude: frozenset[VideoKey] = frozenset()  # never returned
    min_duration: float | None = None
    max_duration: float | None = None

    @property
    def narrowing(self) -> bool:
        """Whether the filters may drop many results (so a deep search is likely)."""
        return (
            self.category is not None
            or self.min_duration is not None
            or self.max_duration is not None
        )


@dataclass
class Neighbours:
    video_keys: np.ndarray  # int64, best first
    positions: np.ndarray  # catalog positions
    scores: np.ndarray  # float32
    searched: int
    exhausted: bool
    modalities: list[dict[str, float | None]] | None = field(default=None)
    partial: bool = False  # the budget stopped the search before k results
    sources: list[str] | None = None  # with explain on GET /similar: each result's source


def thumbnail_url(video_id: str) -> str:
    return f"/thumbnails/{video_id_path(video_id)}.jpg"


def media_url(video_id: str) -> str:
    """``/`` stays literal: some proxies refuse ``%2F`` in paths."""
    return f"/media/{video_id_path(video_id)}"


def resolve(state: ServingState, video_id: str) -> int:
    """Catalog position of a video that the served index holds, or the domain error that says
    why not (:class:`VideoNotFound`, :class:`VideoNotServed`).

    Unknown to the snapshot means it was added after the index was built: the caller falls
    back to the database to tell 404 from 409 (:func:`api.recommend.missing_video_error`).
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


def nearest(
    state: ServingState,
    query: np.ndarray,
    k: int,
    filters: Filters,
    skip: frozenset[VideoKey],
    budget: SearchBudget = DEFAULT_BUDGET,
) -> Neighbours:
    """The ``k`` best servable neighbours of ``query`` that pass the filters, searching no
    deeper and no wider than ``budget`` allows (``partial`` when that stopped it short)."""
    catalog = state.catalog
    ntotal = state.ntotal
    empty = Neighbours(
        np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), 0, True
    )
    code: int | None = None
    if filters.category is not None:
        code = catalog.category_code(filters.category)
        if code is None:
            return empty
    if ntotal == 0:
        return empty
    unwanted = skip | filters.exclude
    unwanted_arr = np.fromiter(unwanted, dtype=np.int64, count=len(unwanted))
    queries = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
    depth = min(ntotal, k + len(unwanted) + 1)
    if code is None and not filters.narrowing and catalog.dense is not None:
        found = _nearest_unfiltered(state, queries, k, depth, unwanted)
        if found is not None:
            return found
    # Never below the first round (bounded by the request schema), so a budget cannot make a
    # plain query worse; widening beyond the index's own limit is pointless.
    max_depth = min(ntotal, max(depth, budget.max_depth))
    max_effort = max(1, min(state.index.max_effort, budget.max_effort))
    effort = 1
    # Category and duration filters run inside the index: it returns admitted videos only.
    allow = None
    if filters.narrowing:
        allow = filter_selector(catalog, code, filters.min_duration, filters.max_duration)
        if allow.count == 0:
            return empty
    while True:
        scores, keys = state.index.search(queries, depth, effort=effort, allow=allow)
        keys = keys[0]
        scores = scores[0]
        valid = keys >= 0
        mask, positions = admissible(state, keys, filters, unwanted, unwanted_arr, code)
        mask &= valid
        chosen = np.flatnonzero(mask)[:k]
        # Fewer results than asked for means the probed part of the index ran dry: widen the
        # search until it covers everything; otherwise ask for more results.
        ran_dry = not bool(valid.all())
        widest = effort >= state.index.max_effort
        exhausted = (depth >= ntotal and not ran_dry) or (ran_dry and widest)
        spent = effort >= max_effort if ran_dry else depth >= max_depth
        if chosen.size >= k or exhausted or spent:
            return Neighbours(
                video_keys=keys[chosen],
                positions=positions[chosen],
                scores=scores[chosen],
                searched=depth,
                exhausted=exhausted and chosen.size < k,
                partial=not exhausted and chosen.size < k,
            )
        if ran_dry:
            effort = min(max_effort, effort * GROWTH)
        else:
            depth = min(max_depth, depth * GROWTH)


def admissible(
    state: ServingState,
    keys: np.ndarray,
    filters: Filters,
    unwanted: frozenset[VideoKey],
    unwanted_arr: np.ndarray,
    code: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(which ``keys`` may be returned, their catalog positions): servable, not unwanted,
    passing the category and duration filters."""
    catalog = state.catalog
    positions = catalog.positions_of(keys)
    mask = catalog.servable_mask(positions)
    if unwanted_arr.size > 8:
        mask &= ~np.isin(keys, unwanted_arr)
    else:
        for unwanted_key in unwanted:
            mask &= keys != unwanted_key
    safe = np.where(positions >= 0, positions, 0)
    if code is not None:
        mask &= catalog.category_codes[safe] == code
    if filters.min_duration is not None or filters.max_duration is not None:
        durations = catalog.durations[safe]
        known = ~np.isnan(durations)
        mask &= known
        if filters.min_duration is not None:
            mask &= np.where(known, durations, -math.inf) >= filters.min_duration
        if filters.max_duration is not None:
            mask &= np.where(known, durations, math.inf) <= filters.max_duration
    return mask, positions


def co_watched(
    state: ServingState, video_key: VideoKey, filters: Filters, skip: frozenset[VideoKey]
) -> Neighbours:
    """The video's co-watch partners in the served graph that pass the filters, strongest
    first (scores: the co-watch weights); served videos only."""
    graph = state.cowatch
    partners, weights = graph.of(int(video_key)) if graph is not None else (None, None)
    if partners is None or weights is None or not partners.size:
        empty = np.zeros(0, np.int64)
        return Neighbours(empty, empty, np.zeros(0, np.float32), 0, True)
    code: int | None = None
    if filters.category is not None:
        code = state.catalog.category_code(filters.category)
        if code is None:
            empty = np.zeros(0, np.int64)
            return Neighbours(empty, empty, np.zeros(0, np.float32), int(partners.size), True)
    unwanted = skip | filters.exclude
    unwanted_arr = np.fromiter(unwanted, dtype=np.int64, count=len(unwanted))
    mask, positions = admissible(state, partners, filters, unwanted, unwanted_arr, code)
    hidden = state.index.excluded  # removed from the index since it was built
    if hidden.size:
        mask &= ~np.isin(partners, hidden)
    chosen = np.flatnonzero(mask)
    return Neighbours(
        video_keys=partners[chosen],
        positions=positions[chosen],
        scores=weights[chosen].astype(np.float32),
        searched=int(partners.size),
        exhausted=True,
    )


def _nearest_unfiltered(
    state: ServingState,
    queries: np.ndarray,
    k: int,
    depth: int,
    unwanted: frozenset[VideoKey],
) -> Neighbours | None:
    """The common case (no filters) in plain Python over ~k results: a dozen numpy calls on
    11-element arrays cost more than the loop. None when the first page is not enough."""
    catalog = state.catalog
    dense = catalog.dense
    assert dense is not None
    servable = catalog.servable
    limit = dense.shape[0]
    scores, keys = state.index.search(queries, depth)
    out_keys: list[int] = []
    out_positions: list[int] = []
    out_scores: list[float] = []
    returned = 0
    for video_key, score in zip(keys[0].tolist(), scores[0].tolist(), strict=True):
        if video_key < 0:
            break
        returned += 1
        if video_key in unwanted or video_key >= limit:
            continue
        position = int(dense[video_key])
        if position < 0 or not servable[position]:
            continue
        out_keys.append(video_key)
        out_positions.append(position)
        out_scores.append(score)
        if len(out_keys) == k:
            break
    # Short of k: let the general loop decide between "searched everything" and "the probed
    # lists ran dry" (an approximate index returns fewer than asked for in both cases).
    if len(out_keys) < k and (depth < state.ntotal or returned < depth):
        return None
    return Neighbours(
        video_keys=np.array(out_keys, dtype=np.int64),
        positions=np.array(out_positions, dtype=np.int64),
        scores=np.array(out_scores, dtype=np.float32),
        searched=depth,
        exhausted=len(out_keys) < k,
    )


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


def to_response(
    state: ServingState,
    query: list[str],
    k: int,
    found: Neighbours,
    source: str | None = None,
) -> dict[str, Any]:
    """The response as plain data (shaped like :class:`SimilarResponse`, which FastAPI
    validates and serialises in one pass in pydantic-core)."""
    catalog = state.catalog
    names = catalog.category_names
    positions = found.positions.tolist()
    scores = found.scores.tolist()
    codes = catalog.category_codes[found.positions].tolist()
    durations = catalog.durations[found.positions].tolist()
    thumbs = catalog.has_thumbnail[found.positions].tolist()
    explanations = found.modalities
    items = []
    for i, position in enumerate(positions):
        video_id = catalog.video_ids[position]
        duration = durations[i]
        score = scores[i]
        items.append(
            {
                "video_id": video_id,
                "score": score if math.isfinite(score) else 0.0,
                "title": catalog.titles[position],
                "category": names[codes[i]] if codes[i] >= 0 else None,
                "duration": None if math.isnan(duration) else duration,
                "thumbnail_url": thumbnail_url(video_id) if thumbs[i] else None,
                "modalities": explanations[i] if explanations is not None else None,
                "source": found.sources[i] if found.sources is not None else None,
            }
        )
    return {
        "query": query,
        "model_version": state.model_version,
        "index_version": state.index_version,
        "k": k,
        "results": items,
        "searched": found.searched,
        "exhausted": found.exhausted,
        "partial": found.partial,
        "source": source,
    }


__all__ = [
    "Filters",
    "Neighbours",
    "SearchBudget",
    "admissible",
    "co_watched",
    "combine",
    "explain",
    "media_url",
    "modality_vectors_of",
    "nearest",
    "resolve",
    "thumbnail_url",
    "video_keys",
]

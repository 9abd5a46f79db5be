"""Hybrid candidates: a video's co-watch partners and its content neighbours, ranked by the
blended score of :func:`recsys.events.hybrid.blend` with every candidate's true scores.

Each partner gets its real content similarity (its stored vector against the query's), not 0
for being outside the content top-k; the content side is searched for the best ``depth``
videos that are *not* partners. A video that is neither scores as a content neighbour with a
similarity no higher than the last content score found (``Blended.score_of_content``), so the
blended list is exact down to that bound and cut there: the first n of it are the first n of
the blend over the whole catalog, whatever ``depth`` (so whatever k) asked for it. The blend's
reference similarity (the best candidate's) is the best non-partner or a partner, found at any
depth, so it does not change with k either.
"""

from __future__ import annotations

import numpy as np

from recsys.choices import SimilarSource
from recsys.events.hybrid import BlendSettings, blend
from recsys.ids import VideoKey
from serving.plan import SearchBudget
from serving.search import Neighbours, co_watched, nearest, stored_vectors
from serving.selectors import FilterCodes
from serving.state import ServingState

BOTH = "both"


def hybrid(
    state: ServingState,
    video_key: VideoKey,
    vector: np.ndarray,
    depth: int,
    codes: FilterCodes,
    unwanted: frozenset[VideoKey],
    budget: SearchBudget,
    settings: BlendSettings,
    floor: float | None = None,
) -> Neighbours:
    """At least ``depth`` candidates (fewer only when the catalog runs out) in blended order,
    each with its content similarity and its source (content, collaborative or both)."""
    partners = co_watched(state, video_key, codes, unwanted)
    partner_keys = frozenset(VideoKey(int(key)) for key in partners.video_keys.tolist())
    content = nearest(state, vector, depth, codes, unwanted | partner_keys, budget, floor)
    partner_similarity = stored_vectors(state, partners.video_keys) @ vector.reshape(-1)
    graph = state.cowatch
    evidence = graph.evidence(int(video_key)) if graph is not None else 0
    keys = np.concatenate([content.video_keys, partners.video_keys])
    similarity = np.concatenate([content.scores, partner_similarity.astype(np.float32)])
    mixed = blend(
        keys,
        similarity,
        partners.video_keys,
        partners.scores,
        int(keys.shape[0]),
        evidence=evidence,
        settings=settings,
    )
    scores = mixed.scores
    # the blend at the content side's depth: what the next content neighbour could reach
    last = float(content.scores[-1]) if len(content) else 0.0
    if not content.exhausted and len(content):
        bound = mixed.score_of_content(last)
        exact = int(np.searchsorted(-scores, -np.float32(bound), side="right"))
        count = max(exact, len(content))
    else:
        count = int(scores.shape[0])
    order_keys = mixed.keys[:count]
    lookup = {int(key): i for i, key in enumerate(keys.tolist())}
    rows = np.array([lookup[int(key)] for key in order_keys.tolist()], dtype=np.int64)
    in_partners = rows >= len(content)
    # a partner is "both" when its content similarity ranks it among the content neighbours
    threshold = last if len(content) and not content.exhausted else -np.inf
    sources = [
        (BOTH if float(similarity[row]) >= threshold else str(SimilarSource.COLLABORATIVE))
        if partner
        else str(SimilarSource.CONTENT)
        for row, partner in zip(rows.tolist(), in_partners.tolist(), strict=True)
    ]
    return Neighbours(
        video_keys=order_keys,
        positions=state.catalog.positions_of(order_keys),
        scores=scores[:count],
        searched=content.searched + partners.searched,
        exhausted=content.exhausted,
        partial=content.partial,
        sources=sources,
        similarities=similarity[rows],
    )


__all__ = ["hybrid"]

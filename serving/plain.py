"""The plain query in a few calls: the first page of a catalog video's content neighbours,
unfiltered, re-ranked by near-duplicates only. That is most of the traffic of ``GET
/similar/{video_id}``, and the general pipeline spends more on its generality (a candidate
list, re-ranking candidates, a search that may go deeper) than on the search itself.

:func:`serving.pipeline.run` stays the definition. :func:`answer` gives the same answer for
the plans :func:`covers` admits, or None whenever its shortcut does not settle the list (a
result short, a duplicate to drop, a video not served): the pipeline then runs the plan as it
would have anyway. One search returns the results' vectors with them
(:meth:`~index.LoadedIndex.search_with_vectors`), for the near-duplicate check.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recsys.choices import SimilarSource
from recsys.ids import VideoKey
from serving.moments import page_moments
from serving.pages import page_token
from serving.plan import ByVideo, Filters, QueryPlan
from serving.present import Page, present
from serving.rerank import nearness, nothing_to_drop, similarities
from serving.search import PYTHON_LOOP_DEPTH, admit_first, explain_video, first_depth
from serving.state import ServingState

NO_FILTERS = Filters()


def covers(state: ServingState, plan: QueryPlan) -> bool:
    """Whether ``plan`` is a plain query of this snapshot: a catalog video's content
    neighbours (asked for, or the default without a co-watch graph), no filters, no diversity
    or channel cap, the first page of a size the search's Python loop takes, and a snapshot
    whose keys map densely. Explanations (per modality, matched moments) are fine."""
    options = plan.rerank
    return (
        isinstance(plan.query, ByVideo)
        and plan.offset == 0
        and plan.page_token is None
        and options.diversity == 0
        and options.max_per_channel is None
        and first_depth(state.ntotal, plan.k, 1) <= PYTHON_LOOP_DEPTH  # as nearest decides
        and (
            plan.source == SimilarSource.CONTENT or (plan.source is None and state.cowatch is None)
        )
        and plan.filters == NO_FILTERS
        and plan.filters.allowed is None
        and state.catalog.dense is not None
    )


def answer(state: ServingState, plan: QueryPlan, *, inline: bool = False) -> dict[str, Any] | None:
    """The answer :func:`serving.pipeline.run` gives a plan that :func:`covers` admits, or
    None when the shortcut cannot tell it (``inline``: as for the pipeline)."""
    assert isinstance(plan.query, ByVideo)
    video_id = plan.query.video_id
    catalog = state.catalog
    position = catalog.position(video_id)
    if position is None or not catalog.servable[position]:
        return None  # the pipeline says why (not found, not served)
    video_key = VideoKey(int(catalog.video_keys[position]))
    vector = state.index.reconstruct(video_key)  # None: not served (hidden, not embedded)
    if vector is None:
        return None
    k = plan.k
    depth = first_depth(state.ntotal, k, 1)  # the video itself is unwanted
    scores, keys, vectors = state.index.search_with_vectors(vector.reshape(1, -1), depth)
    admitted = admit_first(state, scores[0], keys[0], k, frozenset((video_key,)))
    if admitted is None or len(admitted[0]) < k:
        return None  # a short list: the pipeline searches deeper or says it is exhausted
    found, rows = admitted
    options = plan.rerank
    if options.dedup:
        chosen = vectors[rows]
        query_content = int(catalog.content_keys[position])
        if not nothing_to_drop(
            catalog.content_keys[found.positions],
            frozenset((query_content,)),
            similarities(chosen),
            nearness(chosen, vector.reshape(1, -1)),
            options.duplicate_similarity,
        ):
            return None  # the pipeline drops them and searches on
    page = Page(
        found=found,
        rows=np.arange(k),
        offset=0,
        searched=depth,
        exhausted=False,
        partial=False,
        duplicates=0,
        capped=0,
        pool=None,
        next_page_token=page_token(state.index_version, k, plan.list_digest()),
        unknown_category=False,
        unknown_channel=False,
    )
    modalities = explain_video(state, video_key, found.video_keys) if plan.explain else None
    moments = None
    if plan.moments:
        results = found.video_keys.tolist()
        moments = page_moments(state.segments, video_key, results, inline=inline)
    content = str(SimilarSource.CONTENT)
    return present(
        state, plan, [video_id], page, source=content, modalities=modalities, moments=moments
    )


__all__ = ["answer", "covers"]

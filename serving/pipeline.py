"""One pipeline for every query plan: candidates → filters → blend → re-rank → page → present.

- **candidates + filters**: content neighbours from the index (catalog filters inside it, see
  :mod:`serving.selectors`), co-watch partners from the published graph, or both
  (:mod:`serving.blend`), already ranked; ties go to the smaller video key.
- **re-rank** (:mod:`serving.rerank`): near-duplicates, channel caps and diversity, after the
  filters and before the page, so a page holds ``k`` results while candidates allow. Without
  diversity the list is searched deeper until ``offset + k`` results survive; with it, MMR
  chooses from a fixed pool of the best ``pool`` candidates (the same for every page).
- **page**: ``offset`` (or a page token) into the final list.
- **present** (:mod:`serving.present`): plain data shaped like the API's response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.choices import SimilarSource
from recsys.ids import VideoKey
from serving import plain
from serving.blend import hybrid
from serving.errors import InvalidQuery, NoCowatchGraph, VideoNotServed
from serving.moments import page_moments
from serving.pages import page_token, token_offset
from serving.plan import ByExamples, ByVector, ByVideo, Filters, QueryPlan
from serving.present import Page, present
from serving.rerank import Candidates, rerank
from serving.search import (
    Neighbours,
    co_watched,
    combine,
    explain,
    explain_video,
    modality_vectors_of,
    nearest,
    resolve,
    stored_vectors,
    video_keys,
)
from serving.selectors import FilterCodes
from serving.state import ServingState

GROWTH = 2


@dataclass(frozen=True)
class Resolved:
    """A plan's query against one snapshot: the vector searched with and the query videos."""

    vector: np.ndarray
    ids: list[str]  # the query video ids (empty for a vector)
    keys: list[VideoKey]  # the query videos' keys, never returned
    anchors: np.ndarray  # (m, d) embeddings whose near-duplicates are dropped
    anchor_keys: frozenset[int]  # their content keys (same bytes: a duplicate too)
    negative_keys: list[VideoKey]


@dataclass(frozen=True)
class Codes:
    """The plan's filters in the snapshot's codes, and the names that matched nothing."""

    codes: FilterCodes
    unknown_category: bool
    unknown_channel: bool

    @property
    def matches_nothing(self) -> bool:
        return self.unknown_category or self.unknown_channel


NO_CODES = Codes(FilterCodes(), unknown_category=False, unknown_channel=False)


def run(state: ServingState, plan: QueryPlan, *, inline: bool = False) -> dict[str, Any]:
    """The answer to ``plan`` from one served snapshot, as plain data. ``inline`` (on the
    event loop): raise :class:`~serving.errors.WouldBlock` rather than read the feature cache
    or the database."""
    if plain.covers(state, plan):  # most requests: the same answer in a few calls
        answer = plain.answer(state, plan, inline=inline)
        if answer is not None:
            return answer
    return _run(state, plan, inline)


def _run(state: ServingState, plan: QueryPlan, inline: bool = False) -> dict[str, Any]:
    offset = plan.offset
    if plan.page_token is not None:
        offset = token_offset(plan.page_token, state.index_version, plan.list_digest())
    query = resolve_query(state, plan)
    source = served_source(state, plan)
    codes = filter_codes(state, plan.filters)
    unwanted = frozenset(query.keys) | frozenset(query.negative_keys)
    if plan.filters.exclude:
        unwanted |= video_keys(state, plan.filters.exclude)
    want = offset + plan.k
    options = plan.rerank
    pooled = options.diversity > 0
    depth = max(options.pool, 1) if pooled else want
    limit = max(depth, plan.budget.max_depth)
    searched = 0
    while True:
        found = (
            Neighbours.empty()
            if codes.matches_nothing
            else _candidates(state, plan, query, source, depth, codes.codes, unwanted)
        )
        searched += found.searched
        if plan.filters.allowed is not None:  # a predicted category: only its videos
            found = _only(found, plan.filters.allowed)
        if pooled and len(found) > depth:  # hybrid may return more: the pool is fixed
            found = _head(found, depth)
        chosen = rerank(_for_rerank(state, query, source, found), options, want)
        enough = chosen.order.shape[0] >= want
        if pooled or enough or found.exhausted or found.partial or depth >= limit:
            break
        depth = min(limit, depth * GROWTH)
    page = chosen.order[offset:want]
    more = enough and (chosen.more or not found.exhausted)
    if pooled:
        more = enough and chosen.more
    answer = Page(
        found=found,
        rows=page,
        offset=offset,
        searched=searched,
        exhausted=not enough and not found.partial,
        partial=found.partial and not enough,
        duplicates=chosen.duplicates,
        capped=chosen.capped,
        pool=depth if pooled else None,
        next_page_token=(
            page_token(state.index_version, want, plan.list_digest()) if more else None
        ),
        unknown_category=codes.unknown_category,
        unknown_channel=codes.unknown_channel,
    )
    modalities = _explanations(state, plan, query, found, page) if plan.explain else None
    moments = _moments(state, plan, query, found, page, inline) if plan.moments else None
    return present(
        state,
        plan,
        query.ids,
        answer,
        source=str(source) if isinstance(plan.query, ByVideo) else None,
        modalities=modalities,
        moments=moments,
    )


def resolve_query(state: ServingState, plan: QueryPlan) -> Resolved:
    """The vector a plan searches with, or the domain error that says why there is none."""
    query = plan.query
    if isinstance(query, ByVector):
        # An upload has no catalog identity: the catalog copy of an uploaded file is what the
        # uploader looks for, so only results duplicating better-ranked results are dropped.
        uploaded = np.asarray(query.vector, np.float32).reshape(-1)
        nothing = np.zeros((0, uploaded.size), np.float32)
        return Resolved(uploaded, [], [], nothing, frozenset(), [])
    if isinstance(query, ByVideo):
        position = resolve(state, query.video_id)
        video_key = state.catalog.video_key(position)
        vector = state.vector(video_key)
        if vector is None:
            raise VideoNotServed(
                f"index {state.index_version} cannot return the vector of {query.video_id!r}",
                video_id=query.video_id,
                status=state.catalog.info(position).status,
                reason="vector not reconstructible from the index",
            )
        content = int(state.catalog.content_keys[position])
        anchors = vector.reshape(1, -1)
        return Resolved(vector, [query.video_id], [video_key], anchors, frozenset((content,)), [])
    return _examples(state, query)


def _examples(state: ServingState, query: ByExamples) -> Resolved:
    catalog = state.catalog
    positions = [resolve(state, v) for v in query.positive]
    keys = [catalog.video_key(p) for p in positions]
    negative_keys = [catalog.video_key(resolve(state, v)) for v in query.negative]
    vectors = [state.vector(key) for key in keys]
    negatives = [state.vector(key) for key in negative_keys]
    if any(v is None for v in vectors) or any(v is None for v in negatives):
        raise InvalidQuery("an example's vector cannot be read from the served index")
    vector = combine(
        [v for v in vectors if v is not None],
        [v for v in negatives if v is not None],
        query.negative_weight,
    )
    if vector is None:
        raise InvalidQuery(
            "the positive and negative examples cancel out; use fewer or different negatives "
            "or a smaller negative_weight"
        )
    anchors = np.stack([v for v in vectors if v is not None])
    contents = frozenset(int(catalog.content_keys[p]) for p in positions)
    return Resolved(vector, list(query.positive), keys, anchors, contents, negative_keys)


def served_source(state: ServingState, plan: QueryPlan) -> SimilarSource:
    """The source a plan uses: the one asked for, else hybrid for a catalog video when the
    served index has a co-watch graph, else content."""
    asked = plan.source
    if not isinstance(plan.query, ByVideo):
        return SimilarSource.CONTENT
    if asked is None:
        return SimilarSource.HYBRID if state.cowatch is not None else SimilarSource.CONTENT
    if asked != SimilarSource.CONTENT and state.cowatch is None:
        raise NoCowatchGraph(
            f"index {state.index_version} was published without a co-watch graph, so it has no "
            f"{asked} neighbours: ingest related pairs or watch events (recsys ingest --related "
            "/ --events), then rebuild the index; or ask for source=content"
        )
    return asked


def filter_codes(state: ServingState, filters: Filters) -> Codes:
    """The filters in the snapshot's codes; a category or channel no video has matches
    nothing (and says so), an excluded channel no video has excludes nothing."""
    if (
        filters.category is None
        and filters.channel is None
        and not filters.exclude_channels
        and filters.min_duration is None
        and filters.max_duration is None
    ):
        return NO_CODES  # most queries: nothing to look up
    catalog = state.catalog
    category = channel = None
    unknown_category = unknown_channel = False
    if filters.category is not None:
        category = catalog.category_code(filters.category)
        unknown_category = category is None
    if filters.channel is not None:
        channel = catalog.channel_code(filters.channel)
        unknown_channel = channel is None
    excluded = (catalog.channel_code(name) for name in filters.exclude_channels)
    codes = FilterCodes(
        category=category,
        channel=channel,
        not_channels=tuple(sorted({code for code in excluded if code is not None})),
        min_duration=filters.min_duration,
        max_duration=filters.max_duration,
    )
    return Codes(codes, unknown_category, unknown_channel)


def _candidates(
    state: ServingState,
    plan: QueryPlan,
    query: Resolved,
    source: SimilarSource,
    depth: int,
    codes: FilterCodes,
    unwanted: frozenset[VideoKey],
) -> Neighbours:
    floor = plan.filters.min_score
    if source == SimilarSource.COLLABORATIVE:
        found = co_watched(state, query.keys[0], codes, unwanted)
    elif source == SimilarSource.HYBRID:
        found = hybrid(
            state,
            query.keys[0],
            query.vector,
            depth,
            codes,
            unwanted,
            plan.budget,
            plan.blend,
            floor,
        )
    else:
        found = nearest(state, query.vector, depth, codes, unwanted, plan.budget, floor)
    if floor is not None and len(found) and float(found.scores[-1]) < floor:
        found = _head(found, int(np.count_nonzero(found.scores >= floor)))
        found.exhausted = True
    return found


def _only(found: Neighbours, allowed: np.ndarray) -> Neighbours:
    """The candidates whose key is in ``allowed`` (sorted keys), in their order."""
    keep = np.isin(found.video_keys, allowed, assume_unique=False)
    return Neighbours(
        video_keys=found.video_keys[keep],
        positions=found.positions[keep],
        scores=found.scores[keep],
        searched=found.searched,
        exhausted=found.exhausted,
        partial=found.partial,
        sources=[s for s, k in zip(found.sources, keep, strict=True) if k]
        if found.sources is not None
        else None,
        similarities=found.similarities[keep] if found.similarities is not None else None,
    )


def _head(found: Neighbours, count: int) -> Neighbours:
    return Neighbours(
        video_keys=found.video_keys[:count],
        positions=found.positions[:count],
        scores=found.scores[:count],
        searched=found.searched,
        exhausted=found.exhausted and count >= len(found),
        partial=found.partial,
        sources=found.sources[:count] if found.sources is not None else None,
        similarities=found.similarities[:count] if found.similarities is not None else None,
    )


def _for_rerank(
    state: ServingState, query: Resolved, source: SimilarSource, found: Neighbours
) -> Candidates:
    catalog = state.catalog
    positions = found.positions
    relevance = found.scores.astype(np.float64)
    if source == SimilarSource.COLLABORATIVE and relevance.size:
        relevance = relevance / max(float(relevance.max()), 1e-12)  # weights, not cosines
    return Candidates(
        relevance=relevance,
        content_keys=catalog.content_keys[positions],
        channels=catalog.channel_codes[positions],
        vectors=stored_vectors(state, found.video_keys),
        anchors=query.anchors,
        anchor_keys=query.anchor_keys,
    )


def _moments(
    state: ServingState,
    plan: QueryPlan,
    query: Resolved,
    found: Neighbours,
    rows: np.ndarray,
    inline: bool,
) -> list[dict[str, Any]]:
    """The matched moment of each result on the page (only those: features are read)."""
    query_key = int(query.keys[0]) if isinstance(plan.query, ByVideo) else None
    keys = [int(k) for k in found.video_keys[rows].tolist()]
    return page_moments(state.segments, query_key, keys, inline=inline)


def _explanations(
    state: ServingState, plan: QueryPlan, query: Resolved, found: Neighbours, rows: np.ndarray
) -> list[dict[str, float | None]]:
    """Per-modality similarity of the query and each result."""
    keys = found.video_keys[rows]
    if isinstance(plan.query, ByVector):
        return explain(state, {n: m.reshape(-1) for n, m in plan.query.modalities.items()}, keys)
    if isinstance(plan.query, ByVideo):
        return explain_video(state, query.keys[0], keys)
    positive = modality_vectors_of(state, query.keys)
    negative = modality_vectors_of(state, query.negative_keys)
    combined: dict[str, np.ndarray | None] = {}
    for name in state.modalities:
        p = [m[name] for m in positive if name in m]
        n = [m[name] for m in negative if name in m]
        combined[name] = combine(p, n, plan.query.negative_weight) if p else None
    return explain(state, combined, keys)


__all__ = ["filter_codes", "resolve_query", "run", "served_source"]

"""The three ways to ask for recommendations (a catalog video, examples, a new vector), turned
into one nearest-neighbour query each; the routes only translate HTTP to these calls. Failures
are domain errors (:mod:`api.errors`), answered by the handler table.

Each app has its :class:`SearchLimits` (the work budget of one query, and how many searches may
run in threads at once in this worker); the request middleware binds them to the request
(:func:`bind_limits`), so every query below runs under the limits of the app that serves it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

import numpy as np
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.config import ApiOptions
from api.errors import InvalidQuery, NoCowatchGraph, Overloaded, VideoNotFound, VideoNotServed
from api.schemas import FilteredQuery
from api.search import (
    DEFAULT_BUDGET,
    Filters,
    Neighbours,
    SearchBudget,
    co_watched,
    combine,
    explain,
    modality_vectors_of,
    nearest,
    resolve,
    to_response,
    video_keys,
)
from api.serving_state import ServingState
from recsys.choices import SimilarSource
from recsys.db import Database
from recsys.db.models import Video
from recsys.events.hybrid import DEFAULT_PRIOR, blend
from recsys.ids import VideoKey


class SearchLimits:
    """The search bounds of one app (so of one worker process).

    ``budget`` bounds the work of one query (:class:`api.search.SearchBudget`); at most
    ``max_deep`` searches run in threads at once, and one more is refused at once
    (:class:`Overloaded`, 503 with Retry-After) instead of queueing for the shared thread pool
    until everything else waits too. ``in_flight`` is only touched on the event loop.
    """

    __slots__ = ("budget", "in_flight", "max_deep")

    def __init__(
        self,
        budget: SearchBudget = DEFAULT_BUDGET,
        max_deep: int = ApiOptions.model_fields["max_deep_searches"].default,
    ) -> None:
        self.budget = budget
        self.max_deep = max(1, max_deep)
        self.in_flight = 0

    @classmethod
    def from_options(cls, options: ApiOptions) -> SearchLimits:
        return cls(SearchBudget.from_options(options), options.max_deep_searches)


_LIMITS: ContextVar[SearchLimits | None] = ContextVar("recsys_search_limits", default=None)


def bind_limits(limits: SearchLimits) -> Token[SearchLimits | None]:
    """Make ``limits`` those of the current request (and of the threads it starts)."""
    return _LIMITS.set(limits)


def unbind_limits(token: Token[SearchLimits | None]) -> None:
    _LIMITS.reset(token)


def current_budget() -> SearchBudget:
    """The work budget of the request being answered (the default outside a request)."""
    limits = _LIMITS.get()
    return DEFAULT_BUDGET if limits is None else limits.budget


def filters_for(state: ServingState, query: FilteredQuery) -> Filters:
    """The search filters of a query, its excluded video ids resolved to video keys."""
    return Filters(
        category=query.category,
        exclude=video_keys(state, query.exclude),
        min_duration=query.min_duration,
        max_duration=query.max_duration,
    )


def served_source(state: ServingState, asked: SimilarSource | None) -> SimilarSource:
    """The source a ``/similar/{id}`` query uses: the one asked for, else hybrid when the
    served index has a co-watch graph, else content."""
    if asked is None:
        return SimilarSource.HYBRID if state.cowatch is not None else SimilarSource.CONTENT
    if asked != SimilarSource.CONTENT and state.cowatch is None:
        raise NoCowatchGraph(
            f"index {state.index_version} was published without a co-watch graph, so it has no "
            f"{asked} neighbours: ingest related pairs or watch events (recsys ingest --related "
            "/ --events), then rebuild the index; or ask for source=content"
        )
    return asked


def by_video(
    state: ServingState,
    video_id: str,
    k: int,
    filters: Filters,
    *,
    with_explain: bool,
    budget: SearchBudget | None = None,
    source: SimilarSource | None = None,
    prior: float = DEFAULT_PRIOR,
) -> dict[str, Any]:
    """Neighbours of a catalog video (never the video itself) from the content index, the
    co-watch graph of the served snapshot, or both blended (:func:`recsys.events.hybrid.blend`:
    by the video's co-watch evidence; a cold video gets content only)."""
    position = resolve(state, video_id)
    video_key = state.catalog.video_key(position)
    chosen = served_source(state, source)
    skip = frozenset((video_key,))
    if chosen == SimilarSource.COLLABORATIVE:
        found = co_watched(state, video_key, filters, skip)
        found.video_keys, found.positions, found.scores = (
            found.video_keys[:k],
            found.positions[:k],
            found.scores[:k],
        )
        found.exhausted = found.video_keys.size < k
        if with_explain:
            found.sources = [str(SimilarSource.COLLABORATIVE)] * int(found.video_keys.size)
        return _explained(state, video_id, video_key, k, found, with_explain, chosen)
    vector = state.vector(video_key)
    if vector is None:
        raise VideoNotServed(
            f"index {state.index_version} cannot return the vector of {video_id!r}",
            video_id=video_id,
            status=state.catalog.info(position).status,
            reason="vector not reconstructible from the index",
        )
    found = nearest(state, vector, k, filters, skip, budget or current_budget())
    if chosen == SimilarSource.HYBRID:
        found = _blended(state, video_key, k, filters, skip, found, prior)
    elif with_explain:
        found.sources = [str(SimilarSource.CONTENT)] * int(found.video_keys.size)
    return _explained(state, video_id, video_key, k, found, with_explain, chosen)


def _blended(
    state: ServingState,
    video_key: VideoKey,
    k: int,
    filters: Filters,
    skip: frozenset[VideoKey],
    content: Neighbours,
    prior: float,
) -> Neighbours:
    """The k best of the content neighbours and the co-watch partners, blended."""
    partners = co_watched(state, video_key, filters, skip)
    graph = state.cowatch
    evidence = graph.evidence(int(video_key)) if graph is not None else 0
    mixed = blend(
        content.video_keys,
        content.scores,
        partners.video_keys,
        partners.scores,
        k,
        evidence=evidence,
        prior=prior,
    )
    return Neighbours(
        video_keys=mixed.keys,
        positions=state.catalog.positions_of(mixed.keys),
        scores=mixed.scores,
        searched=content.searched + partners.searched,
        exhausted=content.exhausted and mixed.keys.size < k,
        partial=content.partial and mixed.keys.size < k,
        sources=mixed.sources,
    )


def _explained(
    state: ServingState,
    video_id: str,
    video_key: VideoKey,
    k: int,
    found: Neighbours,
    with_explain: bool,
    source: SimilarSource,
) -> dict[str, Any]:
    if with_explain:
        query_modalities = modality_vectors_of(state, [video_key])[0]
        found.modalities = explain(state, dict(query_modalities), found.video_keys)
    else:
        found.sources = None
    return to_response(state, [video_id], k, found, source=str(source))


def by_examples(
    state: ServingState,
    positive: list[str],
    negative: list[str],
    negative_weight: float,
    k: int,
    filters: Filters,
    *,
    with_explain: bool,
    budget: SearchBudget | None = None,
) -> dict[str, Any]:
    """Neighbours of mean(positive) - w * mean(negative), excluding every example."""
    keys = [state.catalog.video_key(resolve(state, v)) for v in positive]
    negative_keys = [state.catalog.video_key(resolve(state, v)) for v in negative]
    vectors = [state.vector(key) for key in keys]
    negative_vectors = [state.vector(key) for key in negative_keys]
    if any(v is None for v in vectors) or any(v is None for v in negative_vectors):
        raise InvalidQuery("an example's vector cannot be read from the served index")
    query = combine(
        [v for v in vectors if v is not None],
        [v for v in negative_vectors if v is not None],
        negative_weight,
    )
    if query is None:
        raise InvalidQuery(
            "the positive and negative examples cancel out; use fewer or different negatives "
            "or a smaller negative_weight"
        )
    found = nearest(
        state,
        query,
        k,
        filters,
        frozenset(keys) | frozenset(negative_keys),
        budget or current_budget(),
    )
    if with_explain:
        query_modalities = _combined_modalities(state, keys, negative_keys, negative_weight)
        found.modalities = explain(state, query_modalities, found.video_keys)
    return to_response(state, list(positive), k, found)


def _combined_modalities(
    state: ServingState,
    keys: list[VideoKey],
    negative_keys: list[VideoKey],
    negative_weight: float,
) -> dict[str, np.ndarray | None]:
    pos = modality_vectors_of(state, keys)
    neg = modality_vectors_of(state, negative_keys)
    out: dict[str, np.ndarray | None] = {}
    for name in state.modalities:
        p = [m[name] for m in pos if name in m]
        n = [m[name] for m in neg if name in m]
        out[name] = combine(p, n, negative_weight) if p else None
    return out


def by_vector(
    state: ServingState,
    vector: np.ndarray,
    modalities: dict[str, np.ndarray],
    k: int,
    filters: Filters,
    *,
    with_explain: bool,
    budget: SearchBudget | None = None,
) -> dict[str, Any]:
    """Neighbours of a vector computed on the fly (an uploaded video)."""
    found = nearest(state, vector, k, filters, frozenset(), budget or current_budget())
    if with_explain:
        found.modalities = explain(
            state, {name: m.reshape(-1) for name, m in modalities.items()}, found.video_keys
        )
    return to_response(state, [], k, found)


def missing_video_error(
    database: Database, state: ServingState | None, video_id: str
) -> VideoNotFound | VideoNotServed:
    """Not found or not served, for a video the served snapshot does not know (added after the
    index was built): the database tells which."""
    with database.session() as session:
        row = session.execute(
            select(Video.status, Video.status_reason).where(Video.video_id == video_id)
        ).first()
    if row is None:
        return VideoNotFound(f"video {video_id!r} is not in the catalog", video_id=video_id)
    model = state.model_version if state is not None else "the served model"
    return VideoNotServed(
        f"video {video_id!r} is in the catalog but not embedded in {model}; it is served after "
        "the next refresh and index build",
        video_id=video_id,
        status=row.status,
        reason=row.status_reason or f"not embedded in model {model}",
    )


async def answer(
    database: Database,
    state: ServingState,
    query: Callable[..., dict[str, Any]],
    *args: Any,
    in_thread: bool = True,
    **kwargs: Any,
) -> dict[str, Any]:
    """``query(state, *args, **kwargs)`` (in a thread unless told), with a video unknown to the
    served snapshot looked up in the database (in a thread) to tell not found from not served.

    A search in a thread counts against the request's :class:`SearchLimits`: past its
    ``max_deep`` it is refused at once (:class:`Overloaded`). Inline searches never wait.
    """
    limits = _LIMITS.get() if in_thread else None
    if limits is not None:
        if limits.in_flight >= limits.max_deep:
            raise Overloaded(
                f"this worker is already running {limits.in_flight} deep searches "
                f"(RECSYS_API_MAX_DEEP_SEARCHES={limits.max_deep}); retry in a moment"
            )
        limits.in_flight += 1
    try:
        if in_thread:
            return await run_in_threadpool(query, state, *args, **kwargs)
        return query(state, *args, **kwargs)
    except VideoNotFound as error:
        raise await run_in_threadpool(
            missing_video_error, database, state, error.video_id or ""
        ) from None
    finally:
        if limits is not None:
            limits.in_flight -= 1

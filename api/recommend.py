"""From HTTP to a query plan and back: the routes turn their parameters into one
:class:`~serving.plan.QueryPlan` (:func:`plan_of`) and :func:`answer` runs it with the serving
pipeline, inline or in a thread, within this worker's :class:`SearchLimits`. Failures are
domain errors (:mod:`serving.errors`, :mod:`api.errors`), answered by the handler table.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from api.config import ApiOptions
from api.errors import Overloaded, VideoNotFound, VideoNotServed
from api.schemas import FilteredQuery, SimilarQuery
from recsys.db import Database
from recsys.db.models import Video
from recsys.tags import predicted_category_keys
from serving import pipeline
from serving.errors import WouldBlock
from serving.plan import Filters, Query, QueryPlan, Rerank, SearchBudget
from serving.state import ServingState


class SearchLimits:
    """The search bounds of one app (so of one worker process).

    ``budget`` bounds the work of one query (:class:`serving.plan.SearchBudget`, passed in
    every plan); at most ``max_deep`` searches run in threads at once, and one more is refused
    at once (:class:`Overloaded`, 503 with Retry-After) instead of queueing for the shared
    thread pool until everything else waits too. ``in_flight`` is only touched on the event
    loop.
    """

    __slots__ = ("budget", "in_flight", "max_deep", "options")

    def __init__(self, options: ApiOptions) -> None:
        self.options = options
        self.budget = SearchBudget(
            max_depth=options.search_max_depth, max_effort=options.search_max_effort
        )
        self.max_deep = max(1, options.max_deep_searches)
        self.in_flight = 0


def plan_of(
    query: Query, params: FilteredQuery, limits: SearchLimits, *, explain: bool | None = None
) -> QueryPlan:
    """The plan of one request: its query and parameters, this worker's budget and knobs."""
    options = limits.options
    return QueryPlan(
        query=query,
        k=params.k,
        filters=Filters(
            category=params.category,
            channel=params.channel,
            exclude_channels=tuple(params.exclude_channel),
            exclude=tuple(params.exclude),
            min_duration=params.min_duration,
            max_duration=params.max_duration,
            min_score=params.min_score,
            predicted_category=params.predicted_category,
            min_confidence=params.min_confidence,
        ),
        source=params.source if isinstance(params, SimilarQuery) else None,
        budget=limits.budget,
        rerank=Rerank(
            dedup=params.dedup,
            diversity=params.diversity,
            max_per_channel=params.max_per_channel,
            pool=options.rerank_pool,
            duplicate_similarity=options.duplicate_similarity,
        ),
        offset=params.offset,
        page_token=params.page_token,
        explain=bool(params.explain) if explain is None else explain,
        moments=params.explain == "moments",
        blend=options.blend,
    )


def is_deep(state: ServingState, plan: QueryPlan, limits: SearchLimits) -> bool:
    """Whether a plan may search deep (so it runs in a thread, the event loop stays free): a
    filter whose selector is not built yet, a diversity pool, or a deep page. (Matched
    moments run inline while their features are in memory: see :func:`answer`.)"""
    filters = plan.filters
    codes = pipeline.filter_codes(state, filters).codes
    narrowing = codes.narrowing and not state.catalog.selectors.is_cached(state.catalog, codes)
    pool = plan.rerank.pool if plan.rerank.diversity > 0 else 0
    depth = max(plan.offset + plan.k, pool) + len(filters.exclude)
    return (
        narrowing
        or filters.predicted_category is not None  # keeps only part of what it finds
        or plan.page_token is not None
        or depth > limits.options.inline_search_limit
    )


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


def with_predicted_category(database: Database, plan: QueryPlan) -> QueryPlan:
    """``plan`` with the keys of its predicted category (one query, recsys.tags)."""
    filters = plan.filters
    with database.session() as session:
        keys = predicted_category_keys(
            session, filters.predicted_category or "", filters.min_confidence
        )
    allowed = np.asarray(keys, dtype=np.int64)
    return replace(plan, filters=replace(filters, allowed=allowed))


async def answer(
    database: Database,
    state: ServingState,
    plan: QueryPlan,
    limits: SearchLimits,
    *,
    in_thread: bool = True,
) -> dict[str, Any]:
    """The plan run by the serving pipeline (in a thread unless told), with a video unknown to
    the served snapshot looked up in the database (in a thread) to tell not found from not
    served. An inline run that needs data not in memory (:class:`WouldBlock`) runs again in a
    thread.

    A search in a thread counts against ``limits``: past its ``max_deep`` it is refused at once
    (:class:`Overloaded`). Inline searches never wait.
    """
    if not in_thread and plan.filters.predicted_category is None:  # that one reads the DB
        try:
            return pipeline.run(state, plan, inline=True)
        except WouldBlock:
            pass  # on to a thread
        except VideoNotFound as error:
            raise await _not_found_or_not_served(database, state, error) from None
    if limits.in_flight >= limits.max_deep:
        raise Overloaded(
            f"this worker is already running {limits.in_flight} deep searches "
            f"(RECSYS_API_MAX_DEEP_SEARCHES={limits.max_deep}); retry in a moment"
        )
    limits.in_flight += 1
    try:
        if plan.filters.predicted_category is not None:
            plan = await run_in_threadpool(with_predicted_category, database, plan)
        return await run_in_threadpool(pipeline.run, state, plan)
    except VideoNotFound as error:
        raise await _not_found_or_not_served(database, state, error) from None
    finally:
        limits.in_flight -= 1


async def _not_found_or_not_served(
    database: Database, state: ServingState, error: VideoNotFound
) -> VideoNotFound | VideoNotServed:
    return await run_in_threadpool(missing_video_error, database, state, error.video_id or "")

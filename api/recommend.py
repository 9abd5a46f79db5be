"""The three ways to ask for recommendations (a catalog video, examples, a new vector), turned
into one nearest-neighbour query each; the routes only translate HTTP to these calls."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select

from api.errors import ApiError, InvalidQuery, NotServed, VideoNotFound
from api.schemas import FilteredQuery
from api.search import (
    Filters,
    combine,
    explain,
    internal_ids,
    modality_vectors_of,
    nearest,
    resolve,
    to_response,
)
from api.serving import ServingState
from recsys.db import Database
from recsys.db.models import Video


def filters_for(state: ServingState, query: FilteredQuery) -> Filters:
    """The search filters of a query, its excluded external ids resolved to internal ones."""
    return Filters(
        category=query.category,
        exclude=internal_ids(state, query.exclude),
        min_duration=query.min_duration,
        max_duration=query.max_duration,
    )


def by_video(
    state: ServingState, video_id: str, k: int, filters: Filters, *, with_explain: bool
) -> dict[str, Any]:
    """Neighbours of a catalog video (never the video itself)."""
    position = resolve(state, video_id)
    internal = int(state.catalog.ids[position])
    vector = state.vector(internal)
    if vector is None:
        raise NotServed(
            f"index {state.index_version} cannot return the vector of {video_id!r}",
            video_id=video_id,
            status=state.catalog.info(position).status,
            reason="vector not reconstructible from the index",
        )
    found = nearest(state, vector, k, filters, frozenset((internal,)))
    if with_explain:
        query_modalities = modality_vectors_of(state, [internal])[0]
        found.modalities = explain(state, dict(query_modalities), found.ids)
    return to_response(state, [video_id], k, found)


def by_examples(
    state: ServingState,
    positive: list[str],
    negative: list[str],
    negative_weight: float,
    k: int,
    filters: Filters,
    *,
    with_explain: bool,
) -> dict[str, Any]:
    """Neighbours of mean(positive) - w * mean(negative), excluding every example."""
    positions = [resolve(state, v) for v in positive]
    negative_positions = [resolve(state, v) for v in negative]
    ids = [int(state.catalog.ids[p]) for p in positions]
    negative_ids = [int(state.catalog.ids[p]) for p in negative_positions]
    vectors = [state.vector(i) for i in ids]
    negative_vectors = [state.vector(i) for i in negative_ids]
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
    found = nearest(state, query, k, filters, frozenset(ids) | frozenset(negative_ids))
    if with_explain:
        found.modalities = explain(
            state, _combined_modalities(state, ids, negative_ids, negative_weight), found.ids
        )
    return to_response(state, list(positive), k, found)


def _combined_modalities(
    state: ServingState, ids: list[int], negative_ids: list[int], negative_weight: float
) -> dict[str, np.ndarray | None]:
    pos = modality_vectors_of(state, ids)
    neg = modality_vectors_of(state, negative_ids)
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
) -> dict[str, Any]:
    """Neighbours of a vector computed on the fly (an uploaded video)."""
    found = nearest(state, vector, k, filters, frozenset())
    if with_explain:
        found.modalities = explain(
            state, {name: m.reshape(-1) for name, m in modalities.items()}, found.ids
        )
    return to_response(state, [], k, found)


def missing_video_error(database: Database, state: ServingState | None, video_id: str) -> ApiError:
    """404 or 409 for a video the served snapshot does not know (added after the index)."""
    with database.session() as session:
        row = session.execute(
            select(Video.status, Video.status_reason).where(Video.video_id == video_id)
        ).first()
    if row is None:
        return VideoNotFound(f"video {video_id!r} is not in the catalog", video_id=video_id)
    model = state.model_version if state is not None else "the served model"
    return NotServed(
        f"video {video_id!r} is in the catalog but not embedded in {model}; it is served after "
        "the next refresh and index build",
        video_id=video_id,
        status=row.status,
        reason=row.status_reason or f"not embedded in model {model}",
    )

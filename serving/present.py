"""A page of results as plain data, shaped like the API's ``SimilarResponse`` (which FastAPI
validates and serialises in one pass in pydantic-core), with each video's catalog metadata
from the snapshot (no SQL)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.ids import video_id_path
from serving.plan import QueryPlan
from serving.search import Neighbours
from serving.state import ServingState


@dataclass(frozen=True)
class Page:
    """One page of a final list: rows into the candidates, and what the pipeline saw."""

    found: Neighbours
    rows: np.ndarray  # indices into ``found``, in list order
    offset: int
    searched: int
    exhausted: bool
    partial: bool
    duplicates: int
    capped: int
    pool: int | None
    next_page_token: str | None
    unknown_category: bool
    unknown_channel: bool


MOMENT_FIELDS = ("query_start_s", "query_end_s", "start_s", "end_s", "similarity", "missing")
"""A matched moment's fields in the response's order (``api.schemas.MomentMatch``): each one
is written, null when unknown, since the API serialises these dicts without a model pass."""


def moment_of(found: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A matched moment (:mod:`serving.moments`) in the response's shape: every field, seconds
    and similarity as floats, the reason as text."""
    if found is None:
        return None
    out: dict[str, Any] = {}
    for name in MOMENT_FIELDS:
        value = found.get(name)
        if value is not None:
            value = str(value) if name == "missing" else float(value)
        out[name] = value
    return out


def thumbnail_url(video_id: str) -> str:
    return f"/thumbnails/{video_id_path(video_id)}.jpg"


def media_url(video_id: str) -> str:
    """``/`` stays literal: some proxies refuse ``%2F`` in paths."""
    return f"/media/{video_id_path(video_id)}"


def present(
    state: ServingState,
    plan: QueryPlan,
    query: list[str],
    page: Page,
    *,
    source: str | None,
    modalities: list[dict[str, float | None]] | None,
    moments: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    catalog = state.catalog
    found = page.found
    rows = page.rows
    positions = found.positions[rows]
    position_list = positions.tolist()
    scores = found.scores[rows].tolist()
    categories = catalog.category_codes[positions].tolist()
    channels = catalog.channel_codes[positions].tolist()
    durations = catalog.durations[positions].tolist()
    thumbs = catalog.has_thumbnail[positions].tolist()
    video_ids = _values(catalog.video_ids, positions, position_list)
    titles = _values(catalog.titles, positions, position_list)
    sources = found.sources if plan.explain else None
    if plan.explain and sources is None and source is not None:
        sources = [source] * len(found)  # one source for all
    category_names = catalog.category_names
    channel_names = catalog.channel_names
    row_list = rows.tolist()
    items = []
    for i, video_id in enumerate(video_ids):
        duration = durations[i]
        score = scores[i]
        items.append(
            {
                "video_id": video_id,
                "score": score if math.isfinite(score) else 0.0,
                "title": titles[i],
                "category": category_names[categories[i]] if categories[i] >= 0 else None,
                "channel": channel_names[channels[i]] if channels[i] >= 0 else None,
                "duration": None if math.isnan(duration) else duration,
                "thumbnail_url": thumbnail_url(video_id) if thumbs[i] else None,
                "modalities": modalities[i] if modalities is not None else None,
                "source": sources[row_list[i]] if sources is not None else None,
                "moment": moment_of(moments[i]) if moments is not None else None,
            }
        )
    return {
        "query": query,
        "model_version": state.model_version,
        "index_version": state.index_version,
        "k": plan.k,
        "offset": page.offset,
        "results": items,
        "searched": page.searched,
        "exhausted": page.exhausted,
        "partial": page.partial,
        "source": source,
        "duplicates_removed": page.duplicates,
        "channel_capped": page.capped,
        "pool": page.pool,
        "next_page_token": page.next_page_token,
        "unknown_category": page.unknown_category,
        "unknown_channel": page.unknown_channel,
    }


def _values(column: Any, positions: np.ndarray, position_list: list[int]) -> list[Any]:
    """A column's values at ``positions``: in one call from a mapped column, else one by one."""
    many = getattr(column, "many", None)
    if many is not None:
        return list(many(positions))
    return [column[p] for p in position_list]


__all__ = ["MOMENT_FIELDS", "Page", "media_url", "moment_of", "present", "thumbnail_url"]

"""A page of results as plain data, shaped like the API's ``SimilarResponse`` (which FastAPI
validates and serialises in one pass in pydantic-core), with each video's catalog metadata
from the snapshot (no SQL)."""

from __future__ import annotations

import math
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
    sources = found.sources if plan.explain else None
    if plan.explain and sources is None and source is not None:
        sources = [source] * len(found)  # one source for all
    category_names = catalog.category_names
    channel_names = catalog.channel_names
    items = []
    for i, position in enumerate(position_list):
        video_id = catalog.video_ids[position]
        duration = durations[i]
        score = scores[i]
        items.append(
            {
                "video_id": video_id,
                "score": score if math.isfinite(score) else 0.0,
                "title": catalog.titles[position],
                "category": category_names[categories[i]] if categories[i] >= 0 else None,
                "channel": channel_names[channels[i]] if channels[i] >= 0 else None,
                "duration": None if math.isnan(duration) else duration,
                "thumbnail_url": thumbnail_url(video_id) if thumbs[i] else None,
                "modalities": modalities[i] if modalities is not None else None,
                "source": sources[int(rows[i])] if sources is not None else None,
                "moment": moments[i] if moments is not None else None,
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


__all__ = ["Page", "media_url", "present", "thumbnail_url"]

"""Catalog rows with human labels and no file behind them: enough for what stores and serves
tags (no decoding, no embedding)."""

from __future__ import annotations

from recsys.db import Database
from recsys.db.models import Video
from recsys.ids import VideoKey


def add_labelled_videos(
    database: Database, labels: dict[str, tuple[str | None, list[str]]]
) -> dict[str, VideoKey]:
    """One row per id with its (category, tags); their keys by id."""
    with database.session() as session:
        rows = [
            Video(
                video_id=video_id,
                uri=f"/nowhere/labelled-{i}.mp4",
                content_hash=f"hash-labelled-{i}",
                title=video_id,
                category=category,
                tags=tags,
            )
            for i, (video_id, (category, tags)) in enumerate(labels.items())
        ]
        session.add_all(rows)
        session.flush()
        return {row.video_id: VideoKey(row.id) for row in rows}

"""Selecting what a refresh embeds: the plain-row query selects what the ORM query selects."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.catalog import get_model, rows_to_embed, videos_to_embed
from recsys.db import Database
from recsys.db.models import Video, VideoStatus
from recsys.ids import VideoKey
from recsys.settings import Settings
from recsys.store import EmbeddingStore
from tests.store.helpers import add_model_row

STATUSES = [
    VideoStatus.READY,
    VideoStatus.STALE,
    VideoStatus.FAILED,
    VideoStatus.DELETED,
    VideoStatus.READY,
    VideoStatus.READY,
    VideoStatus.READY,
    VideoStatus.FAILED,
]


@pytest.mark.parametrize(
    ("retry_failed", "video_ids"), [(False, None), (True, None), (True, ["v1", "v2", "v6"])]
)
def test_rows_to_embed_are_the_videos_to_embed(
    settings: Settings, database: Database, retry_failed: bool, video_ids: list[str] | None
) -> None:
    with database.session() as session:
        videos = [
            Video(video_id=f"v{i}", uri=f"/v{i}.mp4", content_hash=f"h{i}", status=status.value)
            for i, status in enumerate(STATUSES)
        ]
        session.add_all(videos[::-1])  # keys not in video order
        add_model_row(session, "m1", dim=2)
        session.flush()
        keys = [VideoKey(v.id) for v in videos]
        # v4 is current; v5 has older content, v6 another extractor version, v7 failed
        EmbeddingStore(settings).write_batch(
            session, "m1", [keys[4], keys[5]], ["h4", "old"], "1", np.eye(2, dtype=np.float32)
        )
        EmbeddingStore(settings).write_batch(
            session, "m1", [keys[6], keys[7]], ["h6", "h7"], "0", np.eye(2, dtype=np.float32)
        )
    with database.session() as session:
        model = get_model(session, "m1")
        assert model is not None
        expected = [
            (v.id, v.video_id, v.uri, v.content_hash)
            for v in videos_to_embed(session, model, retry_failed=retry_failed, video_ids=video_ids)
        ]
        rows = rows_to_embed(session, model, retry_failed=retry_failed, video_ids=video_ids)
    assert rows == expected
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    wanted = {"v0", "v1", "v5", "v6"} | ({"v2", "v7"} if retry_failed else set())
    if video_ids is not None:
        wanted &= set(video_ids)
    assert {r[1] for r in rows} == wanted

"""The refresh writer's bulk path writes what its ORM path writes (rows, statuses, vectors)."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest
from sqlalchemy import select

import recsys.refresh.writer as writer_module
from recsys.db import Database, open_database
from recsys.db.models import Embedding, Video, VideoStatus
from recsys.ids import VideoKey
from recsys.refresh.embed import EmbeddedBatch
from recsys.refresh.writer import BatchWriter
from recsys.settings import Settings
from recsys.stage_a import VideoTask
from recsys.store import EmbeddingStore
from tests.store.helpers import add_model_row

MODEL = "m1"


def _catalog(database: Database) -> list[VideoTask]:
    """Six videos; the third and the sixth failed."""
    with database.session() as session:
        videos = [
            Video(
                video_id=f"v{i}",
                uri=f"/v{i}.mp4",
                content_hash=f"h{i}",
                status=VideoStatus.FAILED.value if i in (2, 5) else VideoStatus.READY.value,
                status_reason="broken" if i in (2, 5) else None,
            )
            for i in range(6)
        ]
        session.add_all(videos)
        add_model_row(session, MODEL)
        session.flush()
        return [VideoTask(VideoKey(v.id), v.video_id, v.uri, f"h{i}") for i, v in enumerate(videos)]


def _batch(tasks: list[VideoTask], seed: int) -> EmbeddedBatch:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(tasks), 4)).astype(np.float32)
    return EmbeddedBatch(tasks, vectors, {"visual": vectors[:, :2], "audio": vectors[:, 2:]}, 0.0)


@pytest.mark.parametrize("bulk", [True, False])
def test_units_replace_rows_and_revive_only_their_own_failed_videos(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch, bulk: bool
) -> None:
    monkeypatch.setattr(writer_module, "BULK_ROWS", 1 if bulk else 10**9)
    database = open_database(sqlite_settings)
    try:
        tasks = _catalog(database)
        store = EmbeddingStore(sqlite_settings)
        writer = BatchWriter(database, store, MODEL, "1")
        first = _batch(tasks[:5], seed=0)
        writer.write(first)  # a first embed: no row to replace; the third video revives
        again = _batch([tasks[1], tasks[3]], seed=1)
        writer.write(again)  # replaces two rows
        with database.session() as session:
            statuses = {
                v.video_id: (v.status, v.status_reason) for v in session.scalars(select(Video))
            }
            rows = session.scalars(
                select(Embedding)
                .where(Embedding.model_version == MODEL)
                .order_by(Embedding.video_key)
            ).all()
            assert [r.video_key for r in rows] == [t.video_key for t in tasks[:5]]
            assert all(isinstance(r.created_at, datetime) for r in rows)
            assert [r.content_hash for r in rows] == [t.content_hash for t in tasks[:5]]
            matrix = store.load(session, MODEL, servable_only=False, with_modalities=True)
        assert statuses["v2"] == (VideoStatus.READY.value, None)
        assert statuses["v5"] == (VideoStatus.FAILED.value, "broken")  # not in any unit
        expected = first.vectors.copy()
        expected[[1, 3]] = again.vectors
        np.testing.assert_array_equal(matrix.vectors, expected)
        np.testing.assert_allclose(matrix.modalities["visual"], expected[:, :2], atol=1e-3)
    finally:
        database.dispose()

"""The only place a refresh writes to the database and the embedding store.

Each committed unit is small and self-contained: one batch of vectors (shard file + its
``embeddings`` rows + the videos' status) or one failure. A run killed between two units loses
at most the batch in flight; its shard file, if already renamed into place, is unreferenced and
removed by :meth:`EmbeddingStore.collect_garbage` at the next start.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import update

from recsys.db import Database
from recsys.db.models import Video, VideoStatus
from recsys.refresh.embed import EmbeddedBatch
from recsys.stage_a import VideoTask
from recsys.store import EmbeddingStore

logger = logging.getLogger(__name__)


class BatchWriter:
    """Commits embedded batches and failures for one model version."""

    def __init__(
        self,
        database: Database,
        store: EmbeddingStore,
        model_version: str,
        extractor_version: str,
    ) -> None:
        self.database = database
        self.store = store
        self.model_version = model_version
        self.extractor_version = extractor_version

    def write(self, batch: EmbeddedBatch) -> float:
        """Persist one batch in one transaction; returns the seconds it took."""
        start = time.perf_counter()
        video_keys = [task.video_key for task in batch.tasks]
        with self.database.session() as session:
            self.store.write_batch(
                session,
                self.model_version,
                video_keys,
                [task.content_hash for task in batch.tasks],
                self.extractor_version,
                batch.vectors,
                batch.modalities or None,
            )
            # A retried failure (or a re-embedded changed file) is servable again.
            session.execute(
                update(Video)
                .where(
                    Video.id.in_(video_keys),
                    Video.status.in_([VideoStatus.FAILED.value, VideoStatus.STALE.value]),
                )
                .values(status=VideoStatus.READY.value, status_reason=None)
            )
        return time.perf_counter() - start

    def fail(self, task: VideoTask, reason: str) -> None:
        """Mark one video failed with its reason; it stays out of indexes until retried."""
        logger.warning("video %s (%s) failed: %s", task.video_id, task.uri, reason)
        with self.database.session() as session:
            session.execute(
                update(Video)
                .where(Video.id == task.video_key, Video.status != VideoStatus.DELETED.value)
                .values(status=VideoStatus.FAILED.value, status_reason=reason[:2000])
            )

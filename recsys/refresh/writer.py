"""The only place a refresh writes to the database and the embedding store.

Each committed unit is small and self-contained: one batch of vectors (shard file + its
``embeddings`` rows + the videos' status) or one failure. A run killed between two units loses
at most the batch in flight; its shard file, if already renamed into place, is unreferenced and
removed by :meth:`EmbeddingStore.collect_garbage` at the next start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session

from recsys.db import Database
from recsys.db.clock import database_now
from recsys.db.models import Embedding, Video, VideoStatus, utcnow
from recsys.refresh.embed import EmbeddedBatch
from recsys.stage_a import VideoTask
from recsys.store import EmbeddingStore

logger = logging.getLogger(__name__)

#: Units of at least this many rows take the plain DB-API path (:meth:`BatchWriter._write_bulk`).
BULK_ROWS = 1024
#: Keys per ``IN (...)`` list: under SQLite's and PostgreSQL's parameter limits.
IN_CHUNK = 5000
#: Placeholder of each DB-API parameter style the bulk path writes: SQLite only. On
#: PostgreSQL the plain path gains nothing over SQLAlchemy's batched INSERT (measured with
#: `bench/reembed.py --database-url`), so it keeps the latter.
_MARKS = {"qmark": "?"}


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
            connection = session.connection()
            if connection.dialect.paramstyle in _MARKS and len(video_keys) >= BULK_ROWS:
                self._write_bulk(session, batch, video_keys)
                return time.perf_counter() - start
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

    def _write_bulk(
        self, session: Session, batch: EmbeddedBatch, video_keys: Sequence[int]
    ) -> None:
        """What :meth:`EmbeddingStore.write_batch` and the status update do, with plain DB-API
        statements: a re-embed from the cache writes tens of thousands of rows per unit, and
        SQLAlchemy's per-row and per-parameter work cost more than the database's own."""
        vectors = np.ascontiguousarray(batch.vectors, dtype=np.float32)
        keys = np.asarray(video_keys, dtype=np.int64)
        if vectors.ndim != 2 or vectors.shape[0] != keys.shape[0]:
            raise ValueError(f"{keys.shape[0]} video keys but vectors of shape {vectors.shape}")
        shard = self.store.write_shard(
            session, self.model_version, keys, vectors, batch.modalities or None
        )
        connection = session.connection()
        dialect = connection.dialect
        mark = _MARKS[dialect.paramstyle]
        # The column's own bind processor, once for the unit (not one adapter call per row):
        # the rows hold the same text as those the ORM path writes.
        column_type = Embedding.__table__.c.created_at.type
        stamp = column_type.dialect_impl(dialect).bind_processor(dialect)
        created = stamp(utcnow()) if stamp is not None else utcnow()
        database_clock = database_now().compile(dialect=dialect)  # videos.updated_at's clock
        low, high = int(keys.min()), int(keys.max())
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            # A first embed of a model replaces nothing and revives no video: two index probes
            # over the unit's key range say so, instead of one look-up per key. The unary ``+``
            # keeps SQLite on the (video, model) index's key range.
            cursor.execute(
                f"SELECT 1 FROM embeddings WHERE video_id BETWEEN {mark} AND {mark} "
                f"AND +model_version = {mark} LIMIT 1",
                (low, high, self.model_version),
            )
            replaces = cursor.fetchone() is not None
            cursor.execute(
                f"SELECT 1 FROM videos WHERE status IN ({mark}, {mark}) "
                f"AND id BETWEEN {mark} AND {mark} LIMIT 1",
                (VideoStatus.FAILED.value, VideoStatus.STALE.value, low, high),
            )
            revives = cursor.fetchone() is not None
            for start in range(0, len(video_keys), IN_CHUNK) if replaces or revives else ():
                chunk = video_keys[start : start + IN_CHUNK]
                marks = ", ".join([mark] * len(chunk))
                if replaces:
                    cursor.execute(
                        f"DELETE FROM embeddings WHERE model_version = {mark} "
                        f"AND video_id IN ({marks})",
                        (self.model_version, *chunk),
                    )
                if revives:  # a retried failure (or a re-embedded changed file) is servable
                    cursor.execute(
                        f"UPDATE videos SET status = {mark}, status_reason = NULL, "
                        f"updated_at = {database_clock} WHERE id IN ({marks}) "
                        f"AND status IN ({mark}, {mark})",
                        (
                            VideoStatus.READY.value,
                            *chunk,
                            VideoStatus.FAILED.value,
                            VideoStatus.STALE.value,
                        ),
                    )
            cursor.executemany(
                "INSERT INTO embeddings (video_id, model_version, content_hash, "
                f'extractor_version, shard, "row", created_at) VALUES '
                f"({', '.join([mark] * 7)})",
                [
                    (
                        key,
                        self.model_version,
                        task.content_hash,
                        self.extractor_version,
                        shard,
                        i,
                        created,
                    )
                    for i, (key, task) in enumerate(zip(keys.tolist(), batch.tasks, strict=True))
                ],
            )
        finally:
            cursor.close()

    def fail(self, task: VideoTask, reason: str) -> None:
        """Mark one video failed with its reason; it stays out of indexes until retried."""
        logger.warning("video %s (%s) failed: %s", task.video_id, task.uri, reason)
        with self.database.session() as session:
            session.execute(
                update(Video)
                .where(Video.id == task.video_key, Video.status != VideoStatus.DELETED.value)
                .values(status=VideoStatus.FAILED.value, status_reason=reason[:2000])
            )

"""Seeded synthetic catalogs for index tests: videos, a model version and its embeddings,
registered through the real database and EmbeddingStore."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from recsys.db import Database, ModelVersion, Video, VideoStatus
from recsys.settings import Settings
from recsys.store import EmbeddingStore
from recsys.synth.vectors import SyntheticVectors
from tests.store.helpers import add_model_row


def clustered_vectors(count: int, dim: int, *, seed: int = 0, clusters: int = 20) -> np.ndarray:
    """A normalised Gaussian mixture (clustered like real embeddings), float32."""
    return SyntheticVectors(dim, count, clusters=clusters, seed=seed).database()


def register_model(database: Database, version: str = "m1", dim: int = 32) -> None:
    with database.session() as session:
        add_model_row(session, version, dim, active=True)
        for other in session.scalars(select(ModelVersion).where(ModelVersion.version != version)):
            other.is_active = False


def add_videos(
    settings: Settings,
    database: Database,
    vectors: np.ndarray,
    *,
    model_version: str = "m1",
    prefix: str = "v",
    start: int = 0,
) -> np.ndarray:
    """Register one video per vector, store the embeddings; returns their internal ids."""
    names = [f"{prefix}{start + i}" for i in range(vectors.shape[0])]
    hashes = [f"h{name}" for name in names]
    with database.session() as session:
        videos = [
            Video(video_id=name, uri=f"/v/{name}.mp4", content_hash=content_hash)
            for name, content_hash in zip(names, hashes, strict=True)
        ]
        session.add_all(videos)
        session.flush()
        ids = np.array([v.id for v in videos], dtype=np.int64)
        EmbeddingStore(settings).write_batch(
            session, model_version, ids.tolist(), hashes, "1", vectors
        )
    return ids


def set_status(database: Database, ids: np.ndarray, status: VideoStatus) -> None:
    with database.session() as session:
        for video in session.scalars(select(Video).where(Video.id.in_([int(i) for i in ids]))):
            video.status = status.value
            video.status_reason = "test"


def make_catalog(
    settings: Settings,
    database: Database,
    count: int = 2000,
    dim: int = 32,
    *,
    model_version: str = "m1",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A model plus ``count`` embedded videos; returns (ids, vectors)."""
    register_model(database, model_version, dim)
    vectors = clustered_vectors(count, dim, seed=seed)
    ids = add_videos(settings, database, vectors, model_version=model_version)
    return ids, vectors

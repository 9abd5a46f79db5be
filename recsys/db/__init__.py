"""Metadata database: SQLAlchemy 2 models, Alembic migrations, engine and sessions."""

from recsys.db.models import (
    Base,
    Embedding,
    EmbeddingShard,
    FeatureCacheEntry,
    IndexBuild,
    ModelVersion,
    RelatedPair,
    Video,
    VideoStatus,
)
from recsys.db.session import Database, open_database

__all__ = [
    "Base",
    "Database",
    "Embedding",
    "EmbeddingShard",
    "FeatureCacheEntry",
    "IndexBuild",
    "ModelVersion",
    "RelatedPair",
    "Video",
    "VideoStatus",
    "open_database",
]

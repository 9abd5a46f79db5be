"""Typed SQLAlchemy 2 models.

``videos.id`` (int64) is the internal video key (:data:`recsys.ids.VideoKey`): the id every
FAISS index and embedding shard stores. ``videos.video_id`` is the external string id. Columns
that point at a video (``embeddings.video_id``, ``related_pairs.video_a``/``video_b``) hold
the key; in Python the embedding's is mapped as ``Embedding.video_key``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from recsys.db.clock import database_now
from recsys.ids import VideoKey

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a real BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class VideoStatus(enum.StrEnum):
    """Lifecycle of a catalog entry (per-model embedding state lives in ``embeddings``)."""

    READY = "ready"  # probed fine, can be embedded
    # The file's content changed since ingest last saw it (new hash): its embeddings are
    # outdated until the refresh re-embeds it. Per-model freshness is "outdated", never "stale".
    STALE = "stale"
    FAILED = "failed"  # probe or decode failed; ``status_reason`` says why
    DELETED = "deleted"  # removed from the catalog; never served


class ModelStatus(enum.StrEnum):
    """What the model gate (``training.gate``) said about a trained model version."""

    READY = "ready"  # passed the gate (or trained before the gate existed): may be activated
    UNGATED = "ungated"  # validation too small to tell; activated only when forced
    REJECTED = "rejected"  # worse than the content baseline: never activated unless forced


class MediaRootKind(enum.StrEnum):
    """Where a media root came from (see :mod:`recsys.media_roots`)."""

    DIRECTORY = "directory"  # a folder ingest scanned
    MANIFEST = "manifest"  # the folder of a manifest ingest read
    FILE = "file"  # a file named on ingest's command line (the root is the file itself)


class MediaRoot(Base):
    """A folder (or single file) whose videos may be served: recorded by ingest, used when
    ``RECSYS_MEDIA_ROOTS`` is unset. ``path`` is a real path (symlinks resolved)."""

    __tablename__ = "media_roots"
    __table_args__ = (UniqueConstraint("path", name="uq_media_roots_path"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Video(Base):
    """A catalog entry. ``id`` is the internal :data:`~recsys.ids.VideoKey` (the FAISS id);
    ``video_id`` the external string id users and URLs use."""

    __tablename__ = "videos"

    id: Mapped[VideoKey] = mapped_column(BigId, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(String(255), unique=True, index=True)
    uri: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    duration_s: Mapped[float | None] = mapped_column(Float)
    fps: Mapped[float | None] = mapped_column(Float)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    rotation: Mapped[int | None] = mapped_column(Integer)
    video_codec: Mapped[str | None] = mapped_column(String(64))
    audio_codec: Mapped[str | None] = mapped_column(String(64))
    has_audio: Mapped[bool | None] = mapped_column(Boolean)
    title: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(255), index=True)
    channel: Mapped[str | None] = mapped_column(String(255), index=True)  # the uploader
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    thumbnail_path: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=VideoStatus.READY.value, index=True)
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The database's clock, not the writer's: the API reads the rows changed since its last
    # look by this column (recsys.db.clock).
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=database_now(), onupdate=database_now(), index=True
    )


class VideoAlias(Base):
    """Another file with the content of a video (a copy found under another path): recorded
    instead of a second video, so one content is one video (``recsys ingest --allow-copies``
    registers copies as videos of their own)."""

    __tablename__ = "video_aliases"
    __table_args__ = (UniqueConstraint("uri", name="uq_video_aliases_uri"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    video: Mapped[VideoKey] = mapped_column(
        BigInteger, ForeignKey("videos.id", ondelete="CASCADE"), index=True
    )
    uri: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RelatedPair(Base):
    """An edge of the related graph (co-watch or curated), the training signal of stage B."""

    __tablename__ = "related_pairs"
    __table_args__ = (UniqueConstraint("video_a", "video_b", "source", name="uq_related_pair"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Both ends are video keys (videos.id), not external ids.
    video_a: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("videos.id", ondelete="CASCADE"), index=True
    )
    video_b: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("videos.id", ondelete="CASCADE"), index=True
    )
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    source: Mapped[str] = mapped_column(String(64), default="cowatch")


class FeatureCacheEntry(Base):
    """Stage-A features of one content hash by one extractor version (a file under features/).

    ``row`` is the entry's index in the pack file at ``path`` (``recsys.features.cache.packs``);
    None for an entry cached one file per entry by an older release.
    """

    __tablename__ = "feature_cache"
    __table_args__ = (
        UniqueConstraint("content_hash", "extractor", "extractor_version", name="uq_feature_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    extractor: Mapped[str] = mapped_column(String(128))
    extractor_version: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    row: Mapped[int | None] = mapped_column(Integer, nullable=True)
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ModelVersion(Base):
    """A trained stage-B model: id = hash of config + weights; files under models/<version>/."""

    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    fusion: Mapped[str] = mapped_column(String(32))
    extractor: Mapped[str] = mapped_column(String(128))
    extractor_version: Mapped[str] = mapped_column(String(64))
    dim: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default=ModelStatus.READY.value)
    status_reason: Mapped[str | None] = mapped_column(Text)


class EmbeddingShard(Base):
    """One append-only file of (video keys, vectors) for one model version, with its checksum."""

    __tablename__ = "embedding_shards"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[str] = mapped_column(
        ForeignKey("model_versions.version", ondelete="CASCADE"), index=True
    )
    path: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer)
    dim: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Embedding(Base):
    """Bookkeeping: where the one embedding of (video, model version) lives in the store."""

    __tablename__ = "embeddings"
    __table_args__ = (
        UniqueConstraint("video_id", "model_version", name="uq_embedding_video_model"),
        Index("ix_embeddings_model", "model_version"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # The video's key (videos.id); the column keeps its historical name ``video_id``.
    video_key: Mapped[VideoKey] = mapped_column(
        "video_id", BigInteger, ForeignKey("videos.id", ondelete="CASCADE")
    )
    model_version: Mapped[str] = mapped_column(
        ForeignKey("model_versions.version", ondelete="CASCADE")
    )
    content_hash: Mapped[str] = mapped_column(String(64))
    extractor_version: Mapped[str] = mapped_column(String(64))
    shard: Mapped[str] = mapped_column(ForeignKey("embedding_shards.name", ondelete="CASCADE"))
    row: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class IndexBuild(Base):
    """A built FAISS index directory (indexes/<version>/) and whether it is the served one."""

    __tablename__ = "index_builds"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version: Mapped[str] = mapped_column(String(64), index=True)
    factory: Mapped[str] = mapped_column(String(255))
    count: Mapped[int] = mapped_column(BigInteger)
    dim: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    recall_at_10: Mapped[float | None] = mapped_column(Float)
    search_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    build_seconds: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(
        String(16), default="built"
    )  # built|published|rejected|superseded|removed
    status_reason: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TagPredictionState(Base):
    """What the tags model last said about one video as a whole (``recsys.tags``): which model
    version predicted from which content, whether it abstained and whether the video's segments
    disagree (more than one category holds a large part of it). Human labels stay in
    ``videos.category``/``videos.tags``; predictions never touch them."""

    __tablename__ = "tag_prediction_state"

    video_key: Mapped[VideoKey] = mapped_column(
        "video_id", BigInteger, ForeignKey("videos.id", ondelete="CASCADE"), primary_key=True
    )
    tags_model: Mapped[str] = mapped_column(String(64), index=True)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    abstained: Mapped[bool] = mapped_column(Boolean, default=False)
    segments_disagree: Mapped[bool] = mapped_column(Boolean, default=False)
    segment_labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PredictedTag(Base):
    """One predicted category or tag of a video, with its calibrated confidence and the spans
    (``[{"start_s", "end_s"}, ...]``) of the video where it applies."""

    __tablename__ = "predicted_tags"
    __table_args__ = (
        UniqueConstraint("video_id", "kind", "tag", name="uq_predicted_tag"),
        Index("ix_predicted_tags_kind_tag", "kind", "tag"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    video_key: Mapped[VideoKey] = mapped_column(
        "video_id", BigInteger, ForeignKey("videos.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))  # recsys.tags.TagKind: category | tag
    tag: Mapped[str] = mapped_column(String(255))
    confidence: Mapped[float] = mapped_column(Float)
    spans: Mapped[list[dict[str, float]]] = mapped_column(JSON, default=list)
    tags_model: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

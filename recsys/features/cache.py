"""The feature cache: stage-A output per (content hash, extractor name + version).

Files live under ``features/<extractor>/<version>/<hash[:2]>/<hash>.npz`` and each has a
``feature_cache`` row. A row whose file vanished counts as a miss (and is dropped), so deleting
files by hand is always safe. Retraining and re-embedding read from here and never re-decode.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from recsys.db import Database
from recsys.db.models import FeatureCacheEntry, Video
from recsys.features.base import FeatureError, FeatureExtractor, VideoFeatures
from recsys.settings import Settings

log = logging.getLogger(__name__)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


class FeatureCache:
    """Reads and writes cached :class:`VideoFeatures` for one home."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.root = settings.features_dir
        self.database = database

    def relative_path(self, content_hash: str, extractor: FeatureExtractor) -> Path:
        return (
            Path(_slug(extractor.name))
            / _slug(extractor.version)
            / content_hash[:2]
            / f"{content_hash}.npz"
        )

    def get(self, content_hash: str, extractor: FeatureExtractor) -> VideoFeatures | None:
        """Cached features, or None on a miss (including a row whose file is gone)."""
        with self.database.session() as session:
            entry = session.scalars(
                select(FeatureCacheEntry).where(
                    FeatureCacheEntry.content_hash == content_hash,
                    FeatureCacheEntry.extractor == extractor.name,
                    FeatureCacheEntry.extractor_version == extractor.version,
                )
            ).first()
            if entry is None:
                return None
            path = self.root / entry.path
            if not path.is_file():
                log.warning("feature file %s is missing; recomputing", path)
                session.delete(entry)
                return None
        try:
            return VideoFeatures.from_npz(path)
        except FeatureError as error:
            log.warning("%s; recomputing", error)
            return None

    def put(
        self,
        content_hash: str,
        extractor: FeatureExtractor,
        features: VideoFeatures,
        info: dict[str, Any] | None = None,
    ) -> Path:
        """Store features (file first, then the row); idempotent for the same key."""
        if features.extractor_version != extractor.version:
            raise FeatureError(
                f"features of {features.extractor_version} cannot be cached as {extractor.version}"
            )
        relative = self.relative_path(content_hash, extractor)
        path = self.root / relative
        features.to_npz(path)
        values = {
            "content_hash": content_hash,
            "extractor": extractor.name,
            "extractor_version": extractor.version,
        }
        try:
            with self.database.session() as session:
                session.execute(
                    delete(FeatureCacheEntry).where(
                        *(getattr(FeatureCacheEntry, k) == v for k, v in values.items())
                    )
                )
                session.add(FeatureCacheEntry(**values, path=str(relative), info=info or {}))
        except IntegrityError:  # another worker cached the same key at the same moment
            log.debug("feature cache row for %s already written", content_hash)
        return path


def extract_cached(
    settings: Settings,
    database: Database,
    video: Video,
    extractor: FeatureExtractor,
    cache: FeatureCache | None = None,
) -> VideoFeatures:
    """Features of a catalog video, decoding it only when the cache has no entry.

    Raises ``recsys.media.MediaError`` subclasses when decoding fails, naming the file.
    """
    from recsys import media

    cache = cache or FeatureCache(settings, database)
    content_hash = video.content_hash or media.content_hash(video.uri)
    hit = cache.get(content_hash, extractor)
    if hit is not None:
        return hit
    decoded = media.decode_video(
        video.uri,
        num_frames=settings.frames_per_video,
        size=settings.frame_size,
        sample_rate=settings.audio_sample_rate,
        timeout_s=settings.decode_timeout_s,
    )
    features = extractor.extract(decoded)
    cache.put(content_hash, extractor, features, info={"video_id": video.video_id})
    return features

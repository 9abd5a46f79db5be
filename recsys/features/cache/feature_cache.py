"""The feature cache of one home: its reader, writer and compaction as one object."""

from __future__ import annotations

from recsys.db import Database
from recsys.features.base import FeatureExtractor
from recsys.features.cache.compaction import (
    MIN_SMALL_PACKS,
    ORPHAN_AGE_S,
    PACK_BYTES,
    CacheCompaction,
    CacheCompactor,
)
from recsys.features.cache.reader import CacheReader
from recsys.features.cache.writer import CacheWriter
from recsys.settings import Settings


class FeatureCache(CacheReader, CacheWriter):
    """Reads and writes cached :class:`~recsys.features.VideoFeatures` for one home (its
    ``features_dir`` and the ``feature_cache`` rows of its database)."""

    def __init__(self, settings: Settings, database: Database) -> None:
        CacheReader.__init__(
            self, settings.features_dir, database, settings.feature_cache_memory_mb * 2**20
        )
        CacheWriter.__init__(self, settings.features_dir, database)

    def compact(
        self,
        extractor: FeatureExtractor,
        *,
        pack_bytes: int = PACK_BYTES,
        min_small: int = MIN_SMALL_PACKS,
        orphan_age_s: float = ORPHAN_AGE_S,
    ) -> list[CacheCompaction]:
        """Compact each key of ``extractor`` (see :mod:`.compaction`)."""
        return CacheCompactor(self).compact(
            extractor, pack_bytes=pack_bytes, min_small=min_small, orphan_age_s=orphan_age_s
        )

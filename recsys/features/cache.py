"""The feature cache: stage-A output per (content hash, extractor name + version).

Files live under ``features/<extractor>/<version>/<hash[:2]>/<hash>.safetensors`` and each has a
``feature_cache`` row. A row whose file vanished counts as a miss (and is dropped), so deleting
files by hand is always safe. Retraining and re-embedding read from here and never re-decode.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from recsys.db import Database
from recsys.db.models import FeatureCacheEntry
from recsys.durable import ensure_dir, fsync_dir, fsync_file
from recsys.features.base import ExtractorMismatch, FeatureError, FeatureExtractor, VideoFeatures
from recsys.settings import Settings

log = logging.getLogger(__name__)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


#: Content hashes per ``IN (...)`` query: well under every backend's parameter limit.
QUERY_CHUNK = 500


@dataclass(frozen=True)
class CacheRecord:
    """A feature file written to the cache whose row is still to be recorded."""

    content_hash: str
    relative_path: str
    info: dict[str, Any] = field(default_factory=dict)


class FeatureCache:
    """Reads and writes cached :class:`VideoFeatures` for one home.

    Writing is two steps so that callers with many videos pay one transaction per batch:
    :meth:`write` puts the file in place, :meth:`record` commits the rows of many files. A file
    without a row (a run killed in between) is simply rewritten next time.
    """

    def __init__(self, settings: Settings, database: Database) -> None:
        self.root = settings.features_dir
        self.database = database

    def relative_path(self, content_hash: str, extractor: FeatureExtractor) -> Path:
        return (
            Path(_slug(extractor.name))
            / _slug(extractor.version)
            / content_hash[:2]
            / f"{content_hash}.safetensors"
        )

    def get(self, content_hash: str, extractor: FeatureExtractor) -> VideoFeatures | None:
        """Cached features, or None on a miss (including a row whose file is gone)."""
        return self.get_many([content_hash], extractor).get(content_hash)

    def get_many(
        self, content_hashes: Iterable[str], extractor: FeatureExtractor
    ) -> dict[str, VideoFeatures]:
        """Cached features by content hash, one query per :data:`QUERY_CHUNK` hashes.

        Misses are absent from the result; rows whose file vanished are dropped, unreadable
        files are logged and count as misses (the caller recomputes and overwrites them).
        """
        wanted = sorted(set(content_hashes))
        found: dict[str, VideoFeatures] = {}
        for start in range(0, len(wanted), QUERY_CHUNK):
            chunk = wanted[start : start + QUERY_CHUNK]
            vanished: list[int] = []
            with self.database.session() as session:
                rows = session.execute(
                    select(
                        FeatureCacheEntry.id, FeatureCacheEntry.content_hash, FeatureCacheEntry.path
                    ).where(
                        FeatureCacheEntry.extractor == extractor.name,
                        FeatureCacheEntry.extractor_version == str(extractor.version),
                        FeatureCacheEntry.content_hash.in_(chunk),
                    )
                ).all()
                for row_id, content_hash, relative in rows:
                    path = self.root / relative
                    try:
                        found[content_hash] = VideoFeatures.load(path)
                    except FeatureError as error:
                        if path.exists():
                            log.warning("%s; recomputing", error)
                        else:
                            log.warning("feature file %s is missing; recomputing", path)
                            vanished.append(row_id)
                if vanished:
                    session.execute(
                        delete(FeatureCacheEntry).where(FeatureCacheEntry.id.in_(vanished))
                    )
        return found

    def write(
        self,
        content_hash: str,
        extractor: FeatureExtractor,
        features: VideoFeatures,
        info: dict[str, Any] | None = None,
    ) -> CacheRecord:
        """Put the feature file in place (atomically); its row waits for :meth:`record`."""
        if features.extractor_version != extractor.version:
            raise ExtractorMismatch(
                f"features of {features.extractor_version} cannot be cached as {extractor.version}"
            )
        relative = self.relative_path(content_hash, extractor)
        final = self.root / relative
        directory = ensure_dir(final.parent)
        # Durable before its row is committed: written aside, fsynced, renamed, dir fsynced.
        tmp = directory / f".{final.stem}.{uuid.uuid4().hex}.tmp{final.suffix}"
        try:
            features.save(tmp)
            fsync_file(tmp)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(directory)
        return CacheRecord(content_hash, str(relative), info or {})

    def record(self, extractor: FeatureExtractor, records: Sequence[CacheRecord]) -> None:
        """Commit the rows of written files in one transaction (replacing older rows)."""
        if not records:
            return
        latest = {record.content_hash: record for record in records}
        key = (
            FeatureCacheEntry.extractor == extractor.name,
            FeatureCacheEntry.extractor_version == str(extractor.version),
        )
        rows = [
            {
                "content_hash": record.content_hash,
                "extractor": extractor.name,
                "extractor_version": str(extractor.version),
                "path": record.relative_path,
                "info": record.info,
            }
            for record in latest.values()
        ]
        try:
            with self.database.session() as session:
                for start in range(0, len(rows), QUERY_CHUNK):
                    chunk = rows[start : start + QUERY_CHUNK]
                    hashes = [row["content_hash"] for row in chunk]
                    session.execute(
                        delete(FeatureCacheEntry).where(
                            *key, FeatureCacheEntry.content_hash.in_(hashes)
                        )
                    )
                    session.execute(insert(FeatureCacheEntry), chunk)
        except IntegrityError:  # another process cached some of them at the same moment
            if len(records) == 1:
                log.debug("feature cache row for %s already written", records[0].content_hash)
                return
            for record in latest.values():
                self.record(extractor, [record])

    def put(
        self,
        content_hash: str,
        extractor: FeatureExtractor,
        features: VideoFeatures,
        info: dict[str, Any] | None = None,
    ) -> Path:
        """Store features (file first, then the row); idempotent for the same key."""
        record = self.write(content_hash, extractor, features, info)
        self.record(extractor, [record])
        return self.root / record.relative_path


class CacheBatch:
    """Feature files written as they come, their rows committed together.

    Rows are recorded every ``size`` files (None: only on :meth:`flush`), so a long extraction
    costs one transaction per batch. Caching is an optimisation: a file or row that cannot be
    written is logged and skipped (the video is simply recomputed next time).
    """

    def __init__(
        self, cache: FeatureCache, extractor: FeatureExtractor, size: int | None = None
    ) -> None:
        self.cache = cache
        self.extractor = extractor
        self.size = size
        self.pending: list[CacheRecord] = []

    def add(self, content_hash: str, features: VideoFeatures) -> None:
        try:
            self.pending.append(self.cache.write(content_hash, self.extractor, features))
        except (OSError, FeatureError) as error:
            log.warning("could not cache features of %s: %s", content_hash, error)
            return
        if self.size is not None and len(self.pending) >= self.size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        records, self.pending = self.pending, []
        try:
            self.cache.record(self.extractor, records)
        except Exception as error:  # noqa: BLE001 - the files are rewritten on the next miss
            log.warning("could not record %d feature-cache entries: %s", len(records), error)

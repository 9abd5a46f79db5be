"""The feature cache: stage-A output per (content hash, extractor name + version).

Files live under ``features/<extractor>/<version>/<hash[:2]>/<hash>.safetensors`` and each has a
``feature_cache`` row. A visual + audio spec (``recsys.features.composite``) is cached per
modality: one file and row keyed ``visual=<encoder>`` and one keyed ``audio=<encoder>``, each
with that encoder's version, combined on read; so a new audio encoder finds every visual part
already there (no schema change: the part keys live in the ``extractor`` column).

A row whose file vanished counts as a miss (and is dropped), so deleting
files by hand is always safe. Retraining and re-embedding read from here and never re-decode.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError

from recsys.db import Database
from recsys.db.models import FeatureCacheEntry
from recsys.durable import ensure_dir, fsync_dir, fsync_file
from recsys.features.base import ExtractorMismatch, FeatureError, FeatureExtractor, VideoFeatures
from recsys.features.composite import CompositeExtractor, Part
from recsys.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


#: Content hashes per ``IN (...)`` query: well under every backend's parameter limit.
QUERY_CHUNK = 500


def entry_path(content_hash: str, name: str, version: str) -> Path:
    """Path of one cache entry relative to the features folder."""
    return Path(_slug(name)) / _slug(version) / content_hash[:2] / f"{content_hash}.safetensors"


@dataclass(frozen=True)
class CacheRecord:
    """A feature file written to the cache whose row is still to be recorded.

    ``key`` is the row's (extractor, version) when it is not the extractor's own (the parts of
    a visual + audio spec); ``parts`` holds those part records.
    """

    content_hash: str
    relative_path: str
    info: dict[str, Any] = field(default_factory=dict)
    key: tuple[str, str] | None = None
    parts: tuple[CacheRecord, ...] = ()


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
        return entry_path(content_hash, extractor.name, str(extractor.version))

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
        if isinstance(extractor, CompositeExtractor):
            return self._get_parts(wanted, extractor)
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
                    features = self._read_entry(row_id, relative, VideoFeatures.load, vanished)
                    if features is not None:
                        found[content_hash] = features
                if vanished:
                    session.execute(
                        delete(FeatureCacheEntry).where(FeatureCacheEntry.id.in_(vanished))
                    )
        return found

    def _read_entry(
        self, row_id: int, relative: str, load: Callable[[Path], T], vanished: list[int]
    ) -> T | None:
        """One cached entry, or None (recomputed later): a damaged file is logged, a missing
        one also has its row queued in ``vanished`` for deletion."""
        path = self.root / relative
        try:
            return load(path)
        except FeatureError as error:
            if path.exists():
                log.warning("%s; recomputing", error)
            else:
                log.warning("feature file %s is missing; recomputing", path)
                vanished.append(row_id)
            return None

    def _get_parts(
        self, wanted: list[str], extractor: CompositeExtractor
    ) -> dict[str, VideoFeatures]:
        """Both parts of each hash, combined; a hash with only one part cached is a miss."""
        keys = list(extractor.keys.items())
        found: dict[str, VideoFeatures] = {}
        for start in range(0, len(wanted), QUERY_CHUNK):
            chunk = wanted[start : start + QUERY_CHUNK]
            parts: dict[str, dict[str, Part]] = {}
            vanished: list[int] = []
            with self.database.session() as session:
                for modality, (name, version) in keys:
                    rows = session.execute(
                        select(
                            FeatureCacheEntry.id,
                            FeatureCacheEntry.content_hash,
                            FeatureCacheEntry.path,
                        ).where(
                            FeatureCacheEntry.extractor == name,
                            FeatureCacheEntry.extractor_version == version,
                            FeatureCacheEntry.content_hash.in_(chunk),
                        )
                    ).all()
                    for row_id, content_hash, relative in rows:
                        part = self._read_entry(row_id, relative, Part.load, vanished)
                        if part is not None:
                            parts.setdefault(content_hash, {})[modality] = part
                if vanished:
                    session.execute(
                        delete(FeatureCacheEntry).where(FeatureCacheEntry.id.in_(vanished))
                    )
            for content_hash, found_parts in parts.items():
                if len(found_parts) == len(keys):
                    try:
                        found[content_hash] = extractor.combine(found_parts)
                    except FeatureError as error:
                        log.warning("cached parts of %s: %s; recomputing", content_hash, error)
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
        if isinstance(extractor, CompositeExtractor):
            return self._write_parts(content_hash, extractor, features, info or {})
        relative = self.relative_path(content_hash, extractor)
        self._save_durably(features, self.root / relative)
        return CacheRecord(content_hash, str(relative), info or {})

    @staticmethod
    def _save_durably(features: VideoFeatures | Part, final: Path) -> None:
        """Durable before its row is committed: written aside, fsynced, renamed, dir fsynced."""
        directory = ensure_dir(final.parent)
        tmp = directory / f".{final.stem}.{uuid.uuid4().hex}.tmp{final.suffix}"
        try:
            features.save(tmp)
            fsync_file(tmp)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_dir(directory)

    def _write_parts(
        self,
        content_hash: str,
        extractor: CompositeExtractor,
        features: VideoFeatures,
        info: dict[str, Any],
    ) -> CacheRecord:
        records = []
        for modality, part in extractor.split(features).items():
            name, version = extractor.keys[modality]
            relative = entry_path(content_hash, name, version)
            self._save_durably(part, self.root / relative)
            records.append(CacheRecord(content_hash, str(relative), info, key=(name, version)))
        return CacheRecord(content_hash, "", info, parts=tuple(records))

    def record(self, extractor: FeatureExtractor, records: Sequence[CacheRecord]) -> None:
        """Commit the rows of written files in one transaction (replacing older rows)."""
        flat = [part for record in records for part in (record.parts or (record,))]
        if not flat:
            return
        own = (extractor.name, str(extractor.version))
        by_key: dict[tuple[str, str], dict[str, CacheRecord]] = {}
        for record in flat:
            by_key.setdefault(record.key or own, {})[record.content_hash] = record
        try:
            with self.database.session() as session:
                for (name, version), latest in by_key.items():
                    rows = [
                        {
                            "content_hash": record.content_hash,
                            "extractor": name,
                            "extractor_version": version,
                            "path": record.relative_path,
                            "info": record.info,
                        }
                        for record in latest.values()
                    ]
                    for start in range(0, len(rows), QUERY_CHUNK):
                        chunk = rows[start : start + QUERY_CHUNK]
                        hashes = [row["content_hash"] for row in chunk]
                        session.execute(
                            delete(FeatureCacheEntry).where(
                                FeatureCacheEntry.extractor == name,
                                FeatureCacheEntry.extractor_version == version,
                                FeatureCacheEntry.content_hash.in_(hashes),
                            )
                        )
                        session.execute(insert(FeatureCacheEntry), chunk)
        except IntegrityError:  # another process cached some of them at the same moment
            if len(flat) == 1:
                log.debug("feature cache row for %s already written", flat[0].content_hash)
                return
            for record in flat:
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
        return self.root / (record.parts[0] if record.parts else record).relative_path


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

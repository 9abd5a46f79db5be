"""Writing the feature cache: a pack durably in place first, then its rows in one transaction.

Each write batch becomes one immutable pack (:mod:`.packs`) and each entry a ``feature_cache``
row naming that pack and its ``row`` in it. A visual + audio spec is cached per modality: one
entry keyed ``visual=<encoder>`` and one keyed ``audio=<encoder>``, each with that encoder's
version, so a new audio encoder finds every visual part already there (the part keys live in
the ``extractor`` column).

Crash safety: a pack is durable (fsynced, renamed, directory fsynced) before the transaction
that adds its rows, so no row ever names a partial file; a pack whose rows never committed is an
orphan, which compaction removes once it is old enough (a younger one may belong to a writer
about to commit).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from recsys.db import Database
from recsys.db.models import FeatureCacheEntry
from recsys.features.base import ExtractorMismatch, FeatureError, FeatureExtractor, VideoFeatures
from recsys.features.cache.layout import pack_dir
from recsys.features.cache.packs import PART, VIDEO, Entry, write_pack
from recsys.features.cache.reader import QUERY_CHUNK
from recsys.features.composite import MODALITIES, CompositeExtractor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheRecord:
    """A cache entry written to a file whose row is still to be recorded.

    ``row`` is the entry's index in the pack at ``relative_path`` (None: a one-file entry).
    ``key`` is the row's (extractor, version) when it is not the extractor's own (the parts of
    a visual + audio spec); ``parts`` holds those part records.
    """

    content_hash: str
    relative_path: str
    info: dict[str, Any] = field(default_factory=dict)
    key: tuple[str, str] | None = None
    parts: tuple[CacheRecord, ...] = ()
    row: int | None = None


def write_pack_records(
    root: Path,
    name: str,
    version: str,
    kind: str,
    hashes: list[str],
    entries: list[Entry],
    info: dict[str, Any],
) -> list[CacheRecord]:
    """Write ``entries`` as one durable pack of the key (name, version) under ``root``; the
    records of its rows, still to be recorded."""
    path = write_pack(root / pack_dir(name, version), kind, hashes, entries)
    relative = str(path.relative_to(root))
    return [
        CacheRecord(h, relative, info, key=(name, version), row=i) for i, h in enumerate(hashes)
    ]


class CacheWriter:
    """Writes cached :class:`VideoFeatures` into the features folder ``root`` and its rows.

    Writing is two steps so that callers with many videos pay one transaction per batch:
    :meth:`write_many` puts one pack in place, :meth:`record` commits the rows of many entries.
    A pack without rows (a run killed in between) is simply rewritten next time.
    """

    def __init__(self, root: Path, database: Database) -> None:
        self.root = root
        self.database = database

    def write(
        self,
        content_hash: str,
        extractor: FeatureExtractor,
        features: VideoFeatures,
        info: dict[str, Any] | None = None,
    ) -> CacheRecord:
        """Put one entry in place (a pack of one, durably); its row waits for :meth:`record`."""
        return self.write_many(extractor, [(content_hash, features)], info)[0]

    def write_many(
        self,
        extractor: FeatureExtractor,
        items: Sequence[tuple[str, VideoFeatures]],
        info: dict[str, Any] | None = None,
    ) -> list[CacheRecord]:
        """Put many entries in place as one pack (one per modality for a visual + audio spec),
        durably; their rows wait for :meth:`record`. The last entry of a repeated hash wins."""
        latest = dict(items)
        for features in latest.values():
            if features.extractor_version != extractor.version:
                raise ExtractorMismatch(
                    f"features of {features.extractor_version} cannot be cached as "
                    f"{extractor.version}"
                )
        if not latest:
            return []
        hashes = list(latest)
        info = info or {}
        if isinstance(extractor, CompositeExtractor):
            split = [extractor.split(latest[h]) for h in hashes]
            per_modality: list[list[CacheRecord]] = []
            for modality in MODALITIES:
                name, version = extractor.keys[modality]
                parts: list[Entry] = [s[modality] for s in split]
                per_modality.append(
                    write_pack_records(self.root, name, version, PART, hashes, parts, info)
                )
            return [
                CacheRecord(h, "", info, parts=tuple(records))
                for h, *records in zip(hashes, *per_modality, strict=True)
            ]
        entries: list[Entry] = [latest[h] for h in hashes]
        return write_pack_records(
            self.root, extractor.name, str(extractor.version), VIDEO, hashes, entries, info
        )

    def record(self, extractor: FeatureExtractor, records: Sequence[CacheRecord]) -> None:
        """Commit the rows of written entries in one transaction (replacing older rows)."""
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
                            "row": record.row,
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
    """Features gathered as they come, packed and recorded together.

    Every ``size`` entries (None: only on :meth:`flush`) the gathered ones are written as one
    pack and their rows committed, so a long extraction costs one file and one transaction per
    batch. Caching is an optimisation: an entry that cannot be written is logged and skipped
    (the video is simply recomputed next time).
    """

    def __init__(
        self, cache: CacheWriter, extractor: FeatureExtractor, size: int | None = None
    ) -> None:
        self.cache = cache
        self.extractor = extractor
        self.size = size
        self.pending: list[tuple[str, VideoFeatures]] = []

    def add(self, content_hash: str, features: VideoFeatures) -> None:
        if features.extractor_version != self.extractor.version:
            log.warning(
                "could not cache features of %s: features of %s cannot be cached as %s",
                content_hash,
                features.extractor_version,
                self.extractor.version,
            )
            return
        self.pending.append((content_hash, features))
        if self.size is not None and len(self.pending) >= self.size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        items, self.pending = self.pending, []
        try:
            records = self.cache.write_many(self.extractor, items)
        except (OSError, FeatureError) as error:
            log.warning("could not cache features of %d videos: %s", len(items), error)
            return
        try:
            self.cache.record(self.extractor, records)
        except Exception as error:  # noqa: BLE001 - the entries are rewritten on the next miss
            log.warning("could not record %d feature-cache entries: %s", len(records), error)

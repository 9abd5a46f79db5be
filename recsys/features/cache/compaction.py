"""Compacting the feature cache: many small packs of one key rewritten into a few large ones.

A refresh writes one pack per batch; a key with many small packs (or with one-file entries of
older caches) is rewritten once :data:`MIN_SMALL_PACKS` of them exist, so reads stay one file
per many videos. The same pass removes orphans: packs and temporary files no row names, older
than :data:`ORPHAN_AGE_S` (a younger one may belong to a writer about to commit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, func, select, update

from recsys.db.models import FeatureCacheEntry
from recsys.features.base import FeatureError, FeatureExtractor, VideoFeatures
from recsys.features.cache.layout import key_dir, pack_dir
from recsys.features.cache.packs import PART, SUFFIX, VIDEO, Entry, pack_hashes
from recsys.features.cache.reader import CacheReader
from recsys.features.cache.writer import write_pack_records
from recsys.features.composite import MODALITIES, CompositeExtractor
from recsys.features.part import Part
from recsys.file_lock import exclusive

log = logging.getLogger(__name__)

#: Compaction fills packs up to this many bytes; a pack under half of it (or with half of its
#: entries replaced) is "small".
PACK_BYTES = 64 * 1024 * 1024
#: Compaction runs once a key has this many small packs (or one-file entries of older caches).
MIN_SMALL_PACKS = 16
#: Packs (and temporary files) without rows older than this are orphans of a killed write.
ORPHAN_AGE_S = 3600.0


@dataclass
class CacheCompaction:
    """What one compaction of one key did."""

    key: str
    packs_before: int = 0
    files_written: int = 0
    entries_moved: int = 0
    files_removed: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class CacheCompactor:
    """Compacts the keys of one cache, reading through ``reader`` (whose packs held in memory
    it drops once it replaced them)."""

    def __init__(self, reader: CacheReader) -> None:
        self.reader = reader
        self.root = reader.root
        self.database = reader.database

    def compact(
        self,
        extractor: FeatureExtractor,
        *,
        pack_bytes: int = PACK_BYTES,
        min_small: int = MIN_SMALL_PACKS,
        orphan_age_s: float = ORPHAN_AGE_S,
    ) -> list[CacheCompaction]:
        """Compact each key of ``extractor`` (both parts of a visual + audio spec)."""
        keys: list[tuple[tuple[str, str], str, Callable[[Path], Entry]]]
        if isinstance(extractor, CompositeExtractor):
            keys = [(extractor.keys[m], PART, Part.load) for m in MODALITIES]
        else:
            keys = [((extractor.name, str(extractor.version)), VIDEO, VideoFeatures.load)]
        return [
            self.compact_key(
                name,
                version,
                kind,
                load,
                pack_bytes=pack_bytes,
                min_small=min_small,
                orphan_age_s=orphan_age_s,
            )
            for (name, version), kind, load in keys
        ]

    def compact_key(
        self,
        name: str,
        version: str,
        kind: str,
        load_file: Callable[[Path], Entry],
        *,
        pack_bytes: int = PACK_BYTES,
        min_small: int = MIN_SMALL_PACKS,
        orphan_age_s: float = ORPHAN_AGE_S,
    ) -> CacheCompaction:
        """Rewrite the live entries of the small packs (and one-file entries of older caches)
        of one key into packs of up to ``pack_bytes``, once ``min_small`` of them exist.

        Same order of steps as the embedding store's compaction: each new pack is durable
        before the one transaction that repoints its rows (only rows still naming the old
        file); old files are deleted only once no row names them. Killed at any point, the rows
        name either the old files or the new pack, never neither. One compaction per key at a
        time (a file lock); a second one returns at once.
        """
        started = time.perf_counter()
        result = CacheCompaction(f"{name}/{version}")
        directory = self.root / key_dir(name, version)
        if not directory.is_dir():
            return result
        with exclusive(directory / ".compact.lock", blocking=False, optional=False) as locked:
            if not locked:
                return result
            sources, result.packs_before = self._small_sources(name, version, pack_bytes)
            if len(sources) >= max(2, min_small):
                self._rewrite(name, version, kind, load_file, sources, pack_bytes, result)
            result.files_removed += self._collect(name, version, orphan_age_s)
        result.seconds = time.perf_counter() - started
        if result.files_written:
            log.info(
                "compacted feature cache %s: %d entries into %d packs (%d files removed)",
                result.key,
                result.entries_moved,
                result.files_written,
                result.files_removed,
            )
        return result

    def _small_sources(self, name: str, version: str, pack_bytes: int) -> tuple[list[str], int]:
        """(files worth rewriting: small or half-dead packs and one-file entries, packs)."""
        with self.database.session() as session:
            counts = session.execute(
                select(
                    FeatureCacheEntry.path,
                    func.count(),
                    func.max(FeatureCacheEntry.row),
                )
                .where(
                    FeatureCacheEntry.extractor == name,
                    FeatureCacheEntry.extractor_version == version,
                )
                .group_by(FeatureCacheEntry.path)
            ).all()
        small = []
        packs = 0
        for relative, live, top in counts:
            if top is None:  # a one-file entry of an older cache
                small.append(relative)
                continue
            packs += 1
            try:
                size = (self.root / relative).stat().st_size
            except FileNotFoundError:
                continue  # readers drop its rows
            if size < pack_bytes // 2:
                small.append(relative)
                continue
            try:
                total = len(pack_hashes(self.root / relative))
            except (OSError, ValueError, KeyError):
                continue  # a damaged pack: its entries are misses, rewritten elsewhere
            if live * 2 <= total:
                small.append(relative)
        return sorted(small), packs

    def _rewrite(
        self,
        name: str,
        version: str,
        kind: str,
        load_file: Callable[[Path], Entry],
        sources: list[str],
        pack_bytes: int,
        result: CacheCompaction,
    ) -> None:
        wanted = set(sources)
        with self.database.session() as session:
            rows = [
                (int(row_id), content_hash, relative, row)
                for row_id, content_hash, relative, row in session.execute(
                    select(
                        FeatureCacheEntry.id,
                        FeatureCacheEntry.content_hash,
                        FeatureCacheEntry.path,
                        FeatureCacheEntry.row,
                    )
                    .where(
                        FeatureCacheEntry.extractor == name,
                        FeatureCacheEntry.extractor_version == version,
                    )
                    .order_by(FeatureCacheEntry.path, FeatureCacheEntry.row)
                )
                if relative in wanted
            ]
        batch: list[tuple[int, str, str, Entry]] = []
        size = 0
        for row_id, content_hash, relative, row in rows:
            entry = self._source_entry(relative, row, content_hash, load_file)
            if entry is None:
                continue
            batch.append((row_id, content_hash, relative, entry))
            size += _nbytes(entry)
            if size >= pack_bytes:
                self._move(name, version, kind, batch, result)
                batch, size = [], 0
        if batch:
            self._move(name, version, kind, batch, result)
        self.reader.forget_packs()
        # The sources no row names any more are deleted now (a killed compaction leaves them
        # to the next one: they are still named, or orphans).
        with self.database.session() as session:
            named = set(
                session.scalars(
                    select(FeatureCacheEntry.path)
                    .where(
                        FeatureCacheEntry.extractor == name,
                        FeatureCacheEntry.extractor_version == version,
                    )
                    .distinct()
                )
            )
        for relative in sources:
            if relative not in named:
                (self.root / relative).unlink(missing_ok=True)
                result.files_removed += 1

    def _source_entry(
        self, relative: str, row: int | None, content_hash: str, load_file: Callable[[Path], Entry]
    ) -> Entry | None:
        try:
            if row is None:
                return load_file(self.root / relative)
            return self.reader.pack(relative).entry(row, content_hash)
        except (FileNotFoundError, FeatureError) as error:
            log.warning("compaction skips %s of %s: %s", content_hash, relative, error)
            return None

    def _move(
        self,
        name: str,
        version: str,
        kind: str,
        batch: list[tuple[int, str, str, Entry]],
        result: CacheCompaction,
    ) -> None:
        records = write_pack_records(
            self.root, name, version, kind, [b[1] for b in batch], [b[3] for b in batch], {}
        )
        statement = (
            update(FeatureCacheEntry)
            .where(
                FeatureCacheEntry.id == bindparam("b_id"),
                FeatureCacheEntry.path == bindparam("b_old"),
            )
            .values(path=bindparam("b_path"), row=bindparam("b_row"))
        )
        with self.database.session() as session:
            session.connection().execute(
                statement,
                [
                    {
                        "b_id": row_id,
                        "b_old": old,
                        "b_path": record.relative_path,
                        "b_row": record.row,
                    }
                    for (row_id, _, old, _), record in zip(batch, records, strict=True)
                ],
            )
        result.files_written += 1
        result.entries_moved += len(batch)

    def _collect(self, name: str, version: str, orphan_age_s: float) -> int:
        """Delete packs and temporary files no row names, older than ``orphan_age_s``."""
        directory = self.root / pack_dir(name, version)
        if not directory.is_dir():
            return 0
        with self.database.session() as session:
            named = {
                Path(p).name
                for p in session.scalars(
                    select(FeatureCacheEntry.path)
                    .where(
                        FeatureCacheEntry.extractor == name,
                        FeatureCacheEntry.extractor_version == version,
                        FeatureCacheEntry.row.is_not(None),
                    )
                    .distinct()
                )
            }
        removed = 0
        now = time.time()
        for path in directory.iterdir():
            if path.name in named or not (path.suffix == SUFFIX or path.name.endswith(".tmp")):
                continue
            try:
                if now - path.stat().st_mtime < orphan_age_s:
                    continue
            except FileNotFoundError:
                continue
            path.unlink(missing_ok=True)
            removed += 1
        return removed


def _nbytes(entry: Entry) -> int:
    if isinstance(entry, Part):
        return 0 if entry.seq is None else int(entry.seq.nbytes)
    return sum(
        int(a.nbytes)
        for a in (entry.visual, entry.visual_seq, entry.audio, entry.audio_seq)
        if a is not None
    )

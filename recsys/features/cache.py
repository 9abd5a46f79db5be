"""The feature cache: stage-A output per (content hash, extractor name + version).

Entries are packed (:mod:`recsys.features.packs`): each write batch becomes one immutable file
``features/<extractor>/<version>/packs/<uuid>.safetensors`` and each entry a ``feature_cache``
row naming that file and its ``row`` in it. Caches written by older releases, one file per entry
at ``features/<extractor>/<version>/<hash[:2]>/<hash>.safetensors`` (``row`` NULL), still read,
and compaction moves them into packs. A visual + audio spec (``recsys.features.composite``) is
cached per modality: one entry keyed ``visual=<encoder>`` and one keyed ``audio=<encoder>``,
each with that encoder's version, combined on read; so a new audio encoder finds every visual
part already there (the part keys live in the ``extractor`` column).

Reads are batched: one query per :data:`QUERY_CHUNK` hashes, each pack read and checksummed once
(and kept in a small in-memory cache across calls, so a refresh streaming its lookups reads each
pack once). A row whose file vanished counts as a miss (and is dropped), a damaged file is logged
and counts as a miss, so deleting files by hand is always safe. Retraining and re-embedding read
from here and never re-decode.

Crash safety: a pack is durable (fsynced, renamed, directory fsynced) before the transaction
that adds its rows, so no row ever names a partial file; a pack whose rows never committed is an
orphan, removed by :meth:`FeatureCache.compact` once it is older than :data:`ORPHAN_AGE_S` (a
younger one may belong to a writer about to commit).
"""

from __future__ import annotations

import fcntl
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from recsys.db import Database
from recsys.db.models import FeatureCacheEntry
from recsys.features.base import ExtractorMismatch, FeatureError, FeatureExtractor, VideoFeatures
from recsys.features.composite import MODALITIES, CompositeExtractor, Part
from recsys.features.packs import (
    PACK_DIR,
    PART,
    SUFFIX,
    VIDEO,
    Entry,
    Pack,
    pack_hashes,
    read_pack,
    write_pack,
)
from recsys.settings import Settings

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Content hashes per ``IN (...)`` query: well under every backend's parameter limit.
QUERY_CHUNK = 500
#: Compaction fills packs up to this many bytes; a pack under half of it (or with half of its
#: entries replaced) is "small".
PACK_BYTES = 64 * 1024 * 1024
#: Compaction runs once a key has this many small packs (or one-file entries of older caches).
MIN_SMALL_PACKS = 16
#: Packs (and temporary files) without rows older than this are orphans of a killed write.
ORPHAN_AGE_S = 3600.0
#: Verified packs kept in memory per cache object, so streamed lookups read each pack once.
OPEN_PACKS = 4


_ROWS_OF_KEY = select(
    FeatureCacheEntry.id,
    FeatureCacheEntry.content_hash,
    FeatureCacheEntry.path,
    FeatureCacheEntry.row,
).where(
    FeatureCacheEntry.extractor == bindparam("name"),
    FeatureCacheEntry.extractor_version == bindparam("version"),
    FeatureCacheEntry.content_hash.in_(bindparam("hashes", expanding=True)),
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def key_dir(name: str, version: str) -> Path:
    """Folder of one (extractor, version) key relative to the features folder."""
    return Path(_slug(name)) / _slug(version)


def entry_path(content_hash: str, name: str, version: str) -> Path:
    """Path of a one-file entry (the layout of older caches) relative to the features folder."""
    return key_dir(name, version) / content_hash[:2] / f"{content_hash}.safetensors"


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


class FeatureCache:
    """Reads and writes cached :class:`VideoFeatures` for one home.

    Writing is two steps so that callers with many videos pay one transaction per batch:
    :meth:`write_many` puts one pack in place, :meth:`record` commits the rows of many entries.
    A pack without rows (a run killed in between) is simply rewritten next time.
    """

    def __init__(self, settings: Settings, database: Database) -> None:
        self.root = settings.features_dir
        self.database = database
        self._packs: OrderedDict[str, tuple[tuple[int, int, int], Pack]] = OrderedDict()
        self._lock = threading.Lock()

    def relative_path(self, content_hash: str, extractor: FeatureExtractor) -> Path:
        """Where an older release cached this entry (one file per entry)."""
        return entry_path(content_hash, extractor.name, str(extractor.version))

    # -- reading ----------------------------------------------------------------------------
    def get(self, content_hash: str, extractor: FeatureExtractor) -> VideoFeatures | None:
        """Cached features, or None on a miss (including a row whose file is gone)."""
        return self.get_many([content_hash], extractor).get(content_hash)

    def get_many(
        self,
        content_hashes: Iterable[str],
        extractor: FeatureExtractor,
        *,
        sequences: bool = True,
    ) -> dict[str, VideoFeatures]:
        """Cached features by content hash, one query per :data:`QUERY_CHUNK` hashes.

        Misses are absent from the result; rows whose file vanished are dropped, unreadable
        files are logged and count as misses (the caller recomputes and overwrites them).
        ``sequences=False`` is for callers that use only the pooled vectors (stage B of a
        vector model): packed per-segment sequences are then read only if touched, and a
        damaged one raises FeatureError there instead of being a miss here.
        """
        wanted = sorted(set(content_hashes))
        if isinstance(extractor, CompositeExtractor):
            return self._get_parts(wanted, extractor)
        entries = self._read_key(
            extractor.name, str(extractor.version), wanted, VideoFeatures.load, lazy=not sequences
        )
        return cast(dict[str, VideoFeatures], dict(entries))  # a whole-video key

    def _get_parts(
        self, wanted: list[str], extractor: CompositeExtractor
    ) -> dict[str, VideoFeatures]:
        """Both parts of each hash, combined; a hash with only one part cached is a miss."""
        keys = list(extractor.keys.items())
        parts: dict[str, dict[str, Part]] = {}
        for modality, (name, version) in keys:
            for content_hash, entry in self._read_key(name, version, wanted, Part.load):
                assert isinstance(entry, Part)
                parts.setdefault(content_hash, {})[modality] = entry
        found: dict[str, VideoFeatures] = {}
        for content_hash, found_parts in parts.items():
            if len(found_parts) == len(keys):
                try:
                    found[content_hash] = extractor.combine(found_parts)
                except FeatureError as error:
                    log.warning("cached parts of %s: %s; recomputing", content_hash, error)
        return found

    def _read_key(
        self,
        name: str,
        version: str,
        wanted: list[str],
        load_file: Callable[[Path], Entry],
        *,
        lazy: bool = False,
    ) -> Iterator[tuple[str, Entry]]:
        """(hash, entry) of the cached ``wanted`` hashes of one key, chunk by chunk."""
        for start in range(0, len(wanted), QUERY_CHUNK):
            chunk = wanted[start : start + QUERY_CHUNK]
            rows = self._rows_of_key(name, version, chunk)
            vanished: list[tuple[int, str]] = []
            by_pack: dict[str, list[tuple[int, str]]] = {}  # pack -> (row, hash) of its entries
            for row_id, content_hash, relative, row in rows:
                if row is None:
                    entry = self._read_file(row_id, relative, load_file, vanished)
                    if entry is not None:
                        yield content_hash, entry
                    continue
                members = by_pack.get(relative)
                if members is None:
                    members = by_pack[relative] = []
                members.append((row, content_hash))
            for relative, members in by_pack.items():
                try:
                    pack = self._pack(relative)
                except FileNotFoundError:
                    log.warning("feature pack %s is missing; recomputing", self.root / relative)
                    vanished.extend((r[0], relative) for r in rows if r[2] == relative)
                    continue
                except FeatureError as error:
                    log.warning("%s", error)
                    continue
                entries, failure = pack.entries(members, lazy=lazy)
                if failure is not None:  # one line per pack, not one per entry
                    log.warning("%s", failure)
                yield from entries
            if vanished:
                self._drop(vanished)

    def _rows_of_key(
        self, name: str, version: str, chunk: list[str]
    ) -> list[tuple[int, str, str, int | None]]:
        """(id, hash, path, row) of the cached ``chunk`` of one key: one plain DB-API query.

        A refresh asks this for every video; SQLAlchemy's per-parameter and per-row work cost
        more than the query itself."""
        with self.database.engine.connect() as connection:
            dialect = connection.dialect
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            if dialect.paramstyle not in ("qmark", "format", "pyformat"):
                return [
                    tuple(row)  # type: ignore[misc]
                    for row in connection.execute(
                        _ROWS_OF_KEY, {"name": name, "version": version, "hashes": chunk}
                    )
                ]
            sql = (
                'SELECT id, content_hash, path, "row" FROM feature_cache '
                f"WHERE extractor = {mark} AND extractor_version = {mark} "
                f"AND content_hash IN ({', '.join([mark] * len(chunk))})"
            )
            cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, (name, version, *chunk))
                return [tuple(row) for row in cursor.fetchall()]
            finally:
                cursor.close()

    def _read_file(
        self,
        row_id: int,
        relative: str,
        load: Callable[[Path], Entry],
        vanished: list[tuple[int, str]],
    ) -> Entry | None:
        """A one-file entry, or None (recomputed later): a damaged file is logged, a missing
        one also has its row queued in ``vanished`` for deletion."""
        path = self.root / relative
        try:
            return load(path)
        except FeatureError as error:
            if path.exists():
                log.warning("%s; recomputing", error)
            else:
                log.warning("feature file %s is missing; recomputing", path)
                vanished.append((row_id, relative))
            return None

    def _drop(self, vanished: list[tuple[int, str]]) -> None:
        """Delete rows whose file is gone, unless a compaction repointed them meanwhile."""
        with self.database.session() as session:
            by_path: dict[str, list[int]] = {}
            for row_id, relative in vanished:
                by_path.setdefault(relative, []).append(row_id)
            for relative, ids in by_path.items():
                for start in range(0, len(ids), QUERY_CHUNK):
                    session.execute(
                        delete(FeatureCacheEntry).where(
                            FeatureCacheEntry.id.in_(ids[start : start + QUERY_CHUNK]),
                            FeatureCacheEntry.path == relative,
                        )
                    )

    def _pack(self, relative: str) -> Pack:
        """A verified pack, read once while it stays among the :data:`OPEN_PACKS` latest."""
        path = self.root / relative
        stat = path.stat()  # FileNotFoundError: deleted (by hand, or by a compaction)
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            held = self._packs.get(relative)
            if held is not None and held[0] == identity:
                self._packs.move_to_end(relative)
                return held[1]
        pack = read_pack(path, lazy=True)
        with self._lock:
            self._packs[relative] = (identity, pack)
            self._packs.move_to_end(relative)
            while len(self._packs) > OPEN_PACKS:
                self._packs.popitem(last=False)
        return pack

    # -- writing ----------------------------------------------------------------------------
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
                per_modality.append(self._write_pack(name, version, PART, hashes, parts, info))
            return [
                CacheRecord(h, "", info, parts=tuple(records))
                for h, *records in zip(hashes, *per_modality, strict=True)
            ]
        entries: list[Entry] = [latest[h] for h in hashes]
        return self._write_pack(
            extractor.name, str(extractor.version), VIDEO, hashes, entries, info
        )

    def _write_pack(
        self,
        name: str,
        version: str,
        kind: str,
        hashes: list[str],
        entries: list[Entry],
        info: dict[str, Any],
    ) -> list[CacheRecord]:
        path = write_pack(self.root / key_dir(name, version) / PACK_DIR, kind, hashes, entries)
        relative = str(path.relative_to(self.root))
        return [
            CacheRecord(h, relative, info, key=(name, version), row=i) for i, h in enumerate(hashes)
        ]

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

    # -- compaction -------------------------------------------------------------------------
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
        with _try_lock(directory / ".compact.lock") as locked:
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
        self._packs.clear()
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
            return self._pack(relative).entry(row, content_hash)
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
        records = self._write_pack(
            name, version, kind, [b[1] for b in batch], [b[3] for b in batch], {}
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
        directory = self.root / key_dir(name, version) / PACK_DIR
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


@contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    """A non-blocking exclusive file lock (dies with its process, even on SIGKILL)."""
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# -- reading without the database (stage-A workers) ------------------------------------------
class _DiskIndex:
    """Where each hash of one key lies on disk (pack and row), from the packs' headers.

    Stage-A workers have no database: to reuse a cached part (the visual part when only the
    audio encoder changed) they look for it on disk, as they did with one-file entries. The
    headers of packs seen once are remembered; new packs are read as they appear.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.seen: dict[str, list[str]] = {}
        self.where: dict[str, tuple[str, int]] = {}

    def find(self, content_hash: str) -> tuple[Path, int] | None:
        try:
            names = {p.name for p in self.directory.iterdir() if p.suffix == SUFFIX}
        except FileNotFoundError:
            return None
        if names != set(self.seen):
            for gone in set(self.seen) - names:
                del self.seen[gone]
            for name in sorted(names - set(self.seen)):
                try:
                    self.seen[name] = pack_hashes(self.directory / name)
                except (OSError, ValueError, KeyError):
                    self.seen[name] = []
            self.where = {
                h: (n, i) for n, hashes in self.seen.items() for i, h in enumerate(hashes)
            }
        found = self.where.get(content_hash)
        return None if found is None else (self.directory / found[0], found[1])


_DISK_INDEXES: dict[Path, _DiskIndex] = {}


def find_part_on_disk(root: Path, name: str, version: str, content_hash: str) -> Part | None:
    """A cached part of one key found on disk (rows or not: files are written atomically),
    in a one-file entry or a pack; None when absent or unreadable."""
    path = root / entry_path(content_hash, name, version)
    if path.is_file():
        try:
            return Part.load(path)
        except FeatureError:
            pass
    directory = root / key_dir(name, version) / PACK_DIR
    index = _DISK_INDEXES.setdefault(directory, _DiskIndex(directory))
    found = index.find(content_hash)
    if found is None:
        return None
    try:
        entry = read_pack(found[0]).entry(found[1], content_hash)
    except (OSError, FeatureError):
        return None
    return entry if isinstance(entry, Part) else None


class CacheBatch:
    """Features gathered as they come, packed and recorded together.

    Every ``size`` entries (None: only on :meth:`flush`) the gathered ones are written as one
    pack and their rows committed, so a long extraction costs one file and one transaction per
    batch. Caching is an optimisation: an entry that cannot be written is logged and skipped
    (the video is simply recomputed next time).
    """

    def __init__(
        self, cache: FeatureCache, extractor: FeatureExtractor, size: int | None = None
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

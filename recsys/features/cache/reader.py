"""Reading the feature cache: the cached features of many videos in one pass.

Reads are batched: one query per :data:`QUERY_CHUNK` hashes, each pack opened once (its header
and index kept in memory across calls, least recently used out first past a memory budget, so a
refresh streaming its lookups reads each pack once). A few entries of a pack are read alone and
checked against their own sha256 (``explain=moments`` reads ~10 entries of as many packs per
request); most of a pack is read as whole verified columns (:mod:`.packs`). A row whose file
vanished counts as a miss (and is dropped), a damaged file or entry is logged and counts as a
miss, so deleting files by hand is always safe. A visual + audio spec is read
per modality and combined; a video with only one part cached is a miss.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import cast

from sqlalchemy import bindparam, delete, select

from recsys.db import Database
from recsys.db.models import FeatureCacheEntry
from recsys.features.base import FeatureError, FeatureExtractor, VideoFeatures
from recsys.features.cache.packs import Entry, Pack, read_pack
from recsys.features.composite import CompositeExtractor
from recsys.features.part import Part
from recsys.settings import Settings

log = logging.getLogger(__name__)

#: Content hashes per ``IN (...)`` query: well under every backend's parameter limit.
QUERY_CHUNK = 500
#: Packs kept in memory per cache object whatever their size, so streamed lookups read each
#: pack once; more are kept while they fit in the reader's memory budget.
OPEN_PACKS = 4
#: The memory budget of a reader built without one: the default of the setting.
MEMORY_BYTES = int(Settings.model_fields["feature_cache_memory_mb"].default) * 2**20


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


class CacheReader:
    """Reads cached :class:`VideoFeatures` from the features folder ``root`` and its rows."""

    def __init__(self, root: Path, database: Database, memory_bytes: int = MEMORY_BYTES) -> None:
        self.root = root
        self._root = os.fspath(root)
        self.database = database
        self.memory_bytes = memory_bytes
        # relative path -> (file identity, pack, bytes it held when last used)
        self._packs: OrderedDict[str, tuple[tuple[int, int, int, int], Pack, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

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
        ``sequences=False`` is for callers that use only some fields (stage B of a vector model
        uses the pooled vectors, matched moments the sequences): packed per-segment sequences
        (and the pooled vectors of a few entries of a pack) are then read only if touched, and
        a damaged one raises FeatureError there instead of being a miss here.
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
        """(hash, entry) of the cached ``wanted`` hashes of one key: their rows one query per
        :data:`QUERY_CHUNK` hashes, then each pack read once for all of its members (so a pack
        most of whose entries are wanted is read as whole columns, :mod:`.packs`)."""
        rows = [
            row
            for start in range(0, len(wanted), QUERY_CHUNK)
            for row in self._rows_of_key(name, version, wanted[start : start + QUERY_CHUNK])
        ]
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
                pack = self.pack(relative)
            except FileNotFoundError:
                log.warning("feature pack %s is missing; recomputing", self.root / relative)
                vanished.extend((r[0], relative) for r in rows if r[2] == relative)
                continue
            except FeatureError as error:
                log.warning("%s", error)
                continue
            entries, failure = pack.entries(members, lazy=lazy)
            self._keep(relative, pack)  # it may hold more columns now
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

    def pack(self, relative: str) -> Pack:
        """An opened pack (header and verified index), kept in memory while it is among the
        :data:`OPEN_PACKS` latest or fits in ``memory_bytes``; opened again once its file's
        identity (inode, size, mtime, ctime) changes."""
        # a plain string path: pathlib costs more than the stat on this per-request path
        stat = os.stat(os.path.join(self._root, relative))  # FileNotFoundError: deleted
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
        with self._lock:
            held = self._packs.get(relative)
            if held is not None and held[0] == identity:
                self._packs.move_to_end(relative)
                return held[1]
        pack = read_pack(self.root / relative, lazy=True)
        with self._lock:
            self._forget(relative)
            self._packs[relative] = (identity, pack, 0)
        self._keep(relative, pack)
        return pack

    def _keep(self, relative: str, pack: Pack) -> None:
        """Count what ``pack`` holds now; drop the least recently used packs over budget."""
        size = pack.nbytes
        with self._lock:
            held = self._packs.get(relative)
            if held is None or held[1] is not pack:
                return
            self._held += size - held[2]
            self._packs[relative] = (held[0], pack, size)
            self._packs.move_to_end(relative)
            while len(self._packs) > OPEN_PACKS and self._held > self.memory_bytes:
                self._forget(next(iter(self._packs)))

    def _forget(self, relative: str) -> None:
        held = self._packs.pop(relative, None)
        if held is not None:
            self._held -= held[2]

    def forget_packs(self) -> None:
        """Drop the packs held in memory (a compaction replaced some of them)."""
        with self._lock:
            self._packs.clear()
            self._held = 0

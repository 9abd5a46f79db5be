"""The catalog snapshot's columns, read in bulk and held as numpy buffers, not Python objects.

At ten million videos a list of ``video_id`` strings, a list of titles and a ``dict`` from id
to position cost ~300 bytes per video in each API worker (3 GB per worker), and building them
row by row took minutes. Here one query streams the columns in chunks of
:data:`CHUNK_ROWS` rows; each chunk becomes numpy arrays at once, so no per-row Python object
outlives its chunk:

- :class:`StringColumn`: strings by position as one UTF-8 buffer plus int64 offsets (titles:
  their length + 8 bytes each), with an overlay for the few values a metadata refresh changes;
- :class:`IdColumn`: the external ids as fixed-width bytes by position plus a sorted copy and
  its order, so ``id -> position`` is a binary search (~1 µs) instead of a ``dict`` entry.

With a ``shared_dir`` (:func:`read_columns`), the columns a refresh never writes in place (keys,
ids, titles: ~55 of the ~67 bytes per video) are written once to ``.npy`` files named by a
digest of their content and mapped read-only (:func:`share_columns`), so every API worker
serving the same catalog holds one copy in the page cache instead of one each (0.55 GB per
worker at 10M videos). Titles a refresh changes go to the column's private overlay. Each file's
sha256 is recorded in ``columns.json`` and checked once per file before it is mapped
(:mod:`serving.derived`): a damaged folder is rebuilt from the rows just read.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import math
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from index.verified import verified_sha256
from recsys.db.models import Video, VideoStatus
from recsys.durable import atomic_write
from recsys.store.embeddings import write_npz
from serving.derived import DamagedFile, discard, map_verified, save_array

CHUNK_ROWS = 200_000
KEEP_SHARED = 3  # shared snapshots kept (workers may still map an older one)
# The columns a refresh changes in place, saved beside the shared ones (:func:`save_state`).
STATE_FILE = "state.json"
STATE_ARRAYS = "state.npz"
log = logging.getLogger(__name__)


class StringColumn:
    """Optional strings by position: one UTF-8 buffer and offsets, plus an overlay of edits."""

    __slots__ = ("_data", "_missing", "_offsets", "_overlay")

    def __init__(self, data: np.ndarray, offsets: np.ndarray, missing: np.ndarray) -> None:
        self._data = data  # uint8 (total bytes,)
        self._offsets = offsets  # int64 (n + 1,)
        self._missing = missing  # bool (n,): None at this position
        self._overlay: dict[int, str | None] = {}

    @staticmethod
    def encode(chunk: Sequence[str | None]) -> tuple[bytes, np.ndarray, np.ndarray]:
        """One chunk as (UTF-8 bytes, byte lengths, missing flags), for :meth:`join`."""
        encoded = [b"" if value is None else value.encode() for value in chunk]
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        missing = np.fromiter((v is None for v in chunk), dtype=bool, count=len(chunk))
        return b"".join(encoded), lengths, missing

    @classmethod
    def join(cls, parts: list[tuple[bytes, np.ndarray, np.ndarray]]) -> StringColumn:
        offsets = np.zeros(sum(part[1].size for part in parts) + 1, dtype=np.int64)
        if parts:
            np.cumsum(np.concatenate([part[1] for part in parts]), out=offsets[1:])
        data = np.frombuffer(b"".join(part[0] for part in parts), dtype=np.uint8)
        missing = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, dtype=bool)
        return cls(data, offsets, missing)

    @classmethod
    def build(cls, values: Sequence[str | None]) -> StringColumn:
        return cls.join([cls.encode(values)])

    def parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(UTF-8 buffer, offsets, missing flags): the base values, without the overlay."""
        return self._data, self._offsets, self._missing

    def __len__(self) -> int:
        return int(self._missing.shape[0])

    def __getitem__(self, position: int) -> str | None:
        position = int(position)
        if position < 0:
            position += len(self)
        if self._overlay and position in self._overlay:
            return self._overlay[position]
        if self._missing[position]:
            return None
        start, end = int(self._offsets[position]), int(self._offsets[position + 1])
        return self._data[start:end].tobytes().decode()

    def many(self, positions: np.ndarray) -> list[str | None]:
        """The values at ``positions`` (one page of results) with a few numpy calls."""
        overlay = self._overlay
        missing = self._missing[positions].tolist()
        starts = self._offsets[positions].tolist()
        ends = self._offsets[positions + 1].tolist()
        data = memoryview(self._data)  # type: ignore[arg-type]
        out: list[str | None] = [
            None if gone else str(data[start:end], "utf-8")
            for gone, start, end in zip(missing, starts, ends, strict=True)
        ]
        if overlay:
            for i, position in enumerate(positions.tolist()):
                if position in overlay:
                    out[i] = overlay[position]
        return out

    def __setitem__(self, position: int, value: str | None) -> None:
        if self[position] != value:  # a refresh rewrites unchanged rows too: keep no copy
            self._overlay[int(position)] = value  # one dict write: atomic for readers

    def __iter__(self) -> Iterator[str | None]:
        return (self[i] for i in range(len(self)))

    @property
    def nbytes(self) -> int:
        return int(self._data.nbytes + self._offsets.nbytes + self._missing.nbytes)


class IdColumn:
    """External video ids by position, and ``get(video_id) -> position`` by binary search."""

    __slots__ = ("_ids", "_order", "_sorted")

    def __init__(self, ids: np.ndarray) -> None:
        self._ids = ids  # fixed-width bytes (n,), by position
        if ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])):
            self._order: np.ndarray | None = None  # already sorted (keys follow the ids)
            self._sorted = ids
        else:
            self._order = np.argsort(ids, kind="stable")
            self._sorted = ids[self._order]

    @classmethod
    def of_parts(cls, ids: np.ndarray, order: np.ndarray | None, ordered: np.ndarray) -> IdColumn:
        """A column from its arrays as :meth:`parts` gave them (e.g. mapped from files)."""
        column = cls.__new__(cls)
        column._ids, column._order, column._sorted = ids, order, ordered
        return column

    def parts(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(ids by position, sort order or None when already sorted, sorted ids)."""
        return self._ids, self._order, self._sorted

    @staticmethod
    def encode(chunk: Sequence[str]) -> np.ndarray:
        return np.array([value.encode() for value in chunk], dtype=bytes)

    @classmethod
    def join(cls, parts: list[np.ndarray]) -> IdColumn:
        width = max((part.dtype.itemsize for part in parts), default=1)
        if not parts:
            return cls(np.zeros(0, dtype="S1"))
        return cls(np.concatenate([part.astype(f"S{width}") for part in parts]))

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def __getitem__(self, position: int) -> str:
        return bytes(self._ids[int(position)]).decode()

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))

    def many(self, positions: np.ndarray) -> list[str]:
        """The ids at ``positions`` (one page of results) in one gather."""
        return [value.decode() for value in self._ids[positions].tolist()]

    def get(self, video_id: str, default: int | None = None) -> int | None:
        """The position of ``video_id``, else ``default``."""
        try:
            key = video_id.encode()
        except UnicodeError:
            return default
        if not key or len(key) > self._ids.dtype.itemsize or key.endswith(b"\0"):
            return default
        at = int(self._sorted.searchsorted(key))
        if at >= self._sorted.shape[0] or bytes(self._sorted[at]) != key:
            return default
        return at if self._order is None else int(self._order[at])

    @property
    def nbytes(self) -> int:
        order = self._order.nbytes if self._order is not None else 0
        copy = self._sorted.nbytes if self._order is not None else 0
        return int(self._ids.nbytes + order + copy)


@dataclass
class CatalogColumns:
    """Every catalog row, column by column, in video-key order."""

    video_keys: np.ndarray  # int64
    video_ids: IdColumn
    titles: StringColumn
    categories: list[str]  # the distinct category names, by code
    category_codes: np.ndarray  # int32, -1 = none
    channels: list[str]  # the distinct channel names, by code
    channel_codes: np.ndarray  # int32, -1 = none
    content_keys: np.ndarray  # int64 fingerprint of the content hash (content_key), 0 = none
    durations: np.ndarray  # float64, nan = unknown
    has_thumbnail: np.ndarray  # bool
    status: np.ndarray  # int8
    reasons: dict[int, str]  # position -> status reason, only where set
    watermark: datetime | None
    shared_directory: Path | None = None  # where keys, ids and titles are mapped from


def code_of(names: list[str], index: dict[str, int], name: str | None) -> int:
    """The code of a category or channel name (-1 for none), a new one for a new name."""
    if name is None:
        return -1
    code = index.get(name)
    if code is None:
        code = index[name] = len(names)
        names.append(name)
    return code


def content_key(content_hash: str | None) -> int:
    """A 64-bit fingerprint of a content hash (0: none), so that "same bytes" is one integer
    comparison; the same in every process (a saved snapshot is shared by workers)."""
    if not content_hash:
        return 0
    digest = hashlib.blake2b(content_hash.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


def _raw_chunks(session: Session, query: Any) -> Iterator[list[tuple[Any, ...]]]:
    """The query's rows in chunks of plain tuples, straight from the DB-API cursor: the ORM's
    per-row result processing costs more than the database at millions of rows (every selected
    column here is a plain string, number or boolean)."""
    connection = session.connection()
    sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        while True:
            rows = cursor.fetchmany(CHUNK_ROWS)
            if not rows:
                return
            yield list(rows)
    finally:
        cursor.close()


def read_columns(
    session: Session, status_codes: dict[str, int], shared_dir: Path | None = None
) -> CatalogColumns:
    """One query over ``videos`` (ordered by key), streamed in chunks into columns; with
    ``shared_dir``, the read-only columns come back mapped from files there (shared by every
    process that read the same catalog, :func:`share_columns`)."""
    status = case(
        *((Video.status == name, code) for name, code in status_codes.items()),
        else_=status_codes.get(VideoStatus.READY.value, 0),
    )
    thumbnail = func.coalesce(func.length(Video.thumbnail_path), 0) > 0
    query = select(
        Video.id,
        Video.video_id,
        Video.title,
        Video.category,
        Video.duration_s,
        thumbnail,
        status,
        Video.status_reason,
        Video.channel,
        Video.content_hash,
    ).order_by(Video.id)
    keys: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    titles: list[tuple[bytes, np.ndarray, np.ndarray]] = []
    codes: list[np.ndarray] = []
    channel_codes: list[np.ndarray] = []
    content: list[np.ndarray] = []
    durations: list[np.ndarray] = []
    thumbs: list[np.ndarray] = []
    statuses: list[np.ndarray] = []
    reasons: dict[int, str] = {}
    names: list[str] = []
    index: dict[str, int] = {}
    channels: list[str] = []
    channel_index: dict[str, int] = {}

    offset = 0
    for part in _raw_chunks(session, query):
        columns = list(zip(*part, strict=True))
        n = len(part)
        keys.append(np.fromiter(columns[0], dtype=np.int64, count=n))
        ids.append(IdColumn.encode(columns[1]))
        titles.append(StringColumn.encode(columns[2]))
        codes.append(
            np.fromiter((code_of(names, index, c) for c in columns[3]), dtype=np.int32, count=n)
        )
        channel_codes.append(
            np.fromiter(
                (code_of(channels, channel_index, c) for c in columns[8]), dtype=np.int32, count=n
            )
        )
        content.append(np.fromiter(map(content_key, columns[9]), dtype=np.int64, count=n))
        durations.append(
            np.fromiter(
                (math.nan if d is None else d for d in columns[4]), dtype=np.float64, count=n
            )
        )
        thumbs.append(np.fromiter(columns[5], dtype=bool, count=n))
        statuses.append(np.fromiter(columns[6], dtype=np.int8, count=n))
        for i, reason in enumerate(columns[7]):
            if reason:
                reasons[offset + i] = reason
        offset += n
    watermark = session.execute(select(func.max(Video.updated_at))).scalar()

    def joined(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    result = CatalogColumns(
        video_keys=joined(keys, np.int64),
        video_ids=IdColumn.join(ids),
        titles=StringColumn.join(titles),
        categories=names,
        category_codes=joined(codes, np.int32),
        channels=channels,
        channel_codes=joined(channel_codes, np.int32),
        content_keys=joined(content, np.int64),
        durations=joined(durations, np.float64),
        has_thumbnail=joined(thumbs, bool),
        status=joined(statuses, np.int8),
        reasons=reasons,
        watermark=watermark,
    )
    del keys, ids, titles, codes, channel_codes, content, durations, thumbs, statuses
    if shared_dir is not None:
        try:
            result = share_columns(result, shared_dir)
        except (OSError, DamagedFile) as error:  # a read-only or full disk: private memory
            log.warning("catalog columns not shared (%s): each worker keeps its own", error)
    _return_freed_memory()
    return result


def _shared_arrays(columns: CatalogColumns) -> dict[str, np.ndarray]:
    ids, order, ordered = columns.video_ids.parts()
    data, offsets, missing = columns.titles.parts()
    arrays = {
        "video_keys": columns.video_keys,
        "ids": ids,
        "title_data": data,
        "title_offsets": offsets,
        "title_missing": missing,
    }
    if order is not None:  # else the ids are their own sorted copy
        arrays["id_order"] = order
        arrays["sorted_ids"] = ordered
    return arrays


def share_columns(columns: CatalogColumns, shared_dir: Path) -> CatalogColumns:
    """``columns`` with keys, ids and titles mapped read-only from ``shared_dir/<digest>/``,
    written there first unless a process with the same catalog already did (temporary
    directory, fsync, rename: a directory that exists is complete)."""
    arrays = _shared_arrays(columns)
    digest = hashlib.sha256()
    for name, array in arrays.items():
        digest.update(f"{name}:{array.dtype.str}:{array.shape}\n".encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))  # type: ignore[arg-type]
    directory = shared_dir / digest.hexdigest()[:24]
    if (directory / "columns.json").is_file():
        try:
            _map_shared(columns, directory)
        except DamagedFile as error:
            log.warning("%s; rebuilding the shared catalog columns from the database", error)
            discard(directory)
        else:
            os.utime(directory)  # the newest in use is kept by the clean-up of others
            return columns
    if not (directory / "columns.json").is_file():
        shared_dir.mkdir(parents=True, exist_ok=True)
        tmp = shared_dir / f".{directory.name}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            sums = {name: save_array(tmp / f"{name}.npy", array) for name, array in arrays.items()}
            (tmp / "columns.json").write_text(json.dumps({"sha256": sums}))
            try:
                os.rename(tmp, directory)
            except OSError:  # another process won the race with the same content
                if not (directory / "columns.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_old(shared_dir, keep=directory.name)
    os.utime(directory)  # the newest in use is kept by the clean-up of others
    _map_shared(columns, directory)
    return columns


def _map_shared(columns: CatalogColumns, directory: Path) -> None:
    """Point ``columns`` at the keys, ids and titles mapped from one shared directory, each
    file checked against its recorded sha256; :class:`DamagedFile` names one that fails."""
    described = directory / "columns.json"
    try:
        sums = json.loads(described.read_text())["sha256"]
        mapped = {name: map_verified(directory / f"{name}.npy", sums[name]) for name in sums}
        ids, keys = mapped["ids"], mapped["video_keys"]
        titles = (mapped["title_data"], mapped["title_offsets"], mapped["title_missing"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        if isinstance(error, DamagedFile):
            raise
        raise DamagedFile(described, f"does not describe the columns ({error!r})") from None
    order = mapped.get("id_order")
    columns.video_keys = keys
    columns.video_ids = IdColumn.of_parts(
        ids, order, mapped["sorted_ids"] if order is not None else ids
    )
    columns.titles = StringColumn(*titles)
    columns.shared_directory = directory


def save_state(columns: CatalogColumns, checked_at: datetime) -> None:
    """Store the columns a refresh changes in place (category codes, durations, thumbnails,
    statuses, reasons) beside the shared ones, with the watermark and the time they were read,
    so the next worker that starts on the same set of videos maps everything and reads only
    the rows changed since (:func:`saved_columns`) instead of the whole table."""
    directory = columns.shared_directory
    if directory is None:
        return
    state = {
        "count": int(columns.video_keys.shape[0]),
        "top": int(columns.video_keys[-1]) if columns.video_keys.size else None,
        "categories": columns.categories,
        "channels": columns.channels,
        "reasons": {str(k): v for k, v in columns.reasons.items()},
        "watermark": columns.watermark.isoformat() if columns.watermark else None,
        "checked_at": checked_at.isoformat(),
    }
    token = uuid.uuid4().hex
    arrays_tmp = directory / f".{STATE_ARRAYS}.{token}.tmp"
    try:
        # the arrays first, then the description naming their checksum: a reader that finds
        # the description finds the arrays it describes (or refuses a mismatch)
        state["arrays_sha256"] = write_npz(
            arrays_tmp,
            {
                "category_codes": columns.category_codes,
                "channel_codes": columns.channel_codes,
                "content_keys": columns.content_keys,
                "durations": columns.durations,
                "has_thumbnail": columns.has_thumbnail,
                "status": columns.status,
            },
        )
        os.replace(arrays_tmp, directory / f"{STATE_ARRAYS}.{token}")
        state["arrays"] = f"{STATE_ARRAYS}.{token}"
        atomic_write(directory / STATE_FILE, json.dumps(state).encode())
    except OSError as error:  # a read-only or full disk: the next worker reads the table
        log.warning("catalog state not saved in %s: %s", directory, error)
    finally:
        arrays_tmp.unlink(missing_ok=True)
    for stale in directory.glob(f"{STATE_ARRAYS}.*"):
        if stale.name != state.get("arrays"):
            stale.unlink(missing_ok=True)


def _moment(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def saved_columns(
    shared_dir: Path, count: int, top: int | None
) -> tuple[CatalogColumns, datetime] | None:
    """The newest saved catalog whose set of videos is ``count`` rows up to key ``top`` (the
    same test an in-process refresh uses), with the time it was read; None when there is none
    or it is damaged."""
    if not shared_dir.is_dir():
        return None
    found = [p for p in shared_dir.iterdir() if not p.name.startswith(".") and p.is_dir()]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for directory in found:
        try:
            state = json.loads((directory / STATE_FILE).read_text())
            if state["count"] != count or state["top"] != top:
                continue
            path = directory / state["arrays"]
            if verified_sha256(path, state["arrays_sha256"]) != state["arrays_sha256"]:
                log.warning("saved catalog state in %s fails its checksum; reading the table", path)
                continue
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: np.array(data[name]) for name in data.files}  # private, writable
            columns = CatalogColumns(
                video_keys=np.zeros(0, dtype=np.int64),
                video_ids=IdColumn(np.zeros(0, dtype="S1")),
                titles=StringColumn.build([]),
                categories=list(state["categories"]),
                category_codes=arrays["category_codes"],
                channels=list(state["channels"]),
                channel_codes=arrays["channel_codes"],
                content_keys=arrays["content_keys"],
                durations=arrays["durations"],
                has_thumbnail=arrays["has_thumbnail"],
                status=arrays["status"],
                reasons={int(k): v for k, v in state["reasons"].items()},
                watermark=datetime.fromisoformat(state["watermark"])
                if state["watermark"]
                else None,
            )
            _map_shared(columns, directory)
        except DamagedFile as error:
            log.warning("%s; the saved catalog is not used (the table is read)", error)
            continue
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.debug("no usable saved catalog in %s: %s", directory, error)
            continue
        if columns.video_keys.shape[0] != count or columns.category_codes.shape[0] != count:
            continue
        os.utime(directory)
        return columns, datetime.fromisoformat(state["checked_at"])
    return None


def _remove_old(shared_dir: Path, keep: str) -> None:
    """Drop all but the :data:`KEEP_SHARED` newest snapshots (a worker still mapping a
    removed one keeps its pages until it reloads)."""
    done = [p for p in shared_dir.iterdir() if not p.name.startswith(".") and p.is_dir()]
    done.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for path in done[KEEP_SHARED:]:
        if path.name != keep:
            shutil.rmtree(path, ignore_errors=True)


def _return_freed_memory() -> None:
    """Hand the chunks' freed heap back to the OS (glibc keeps it otherwise: measured at 1M
    videos, 144 bytes per video resident after a load, 82 after this)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


__all__ = [
    "CatalogColumns",
    "IdColumn",
    "StringColumn",
    "code_of",
    "content_key",
    "read_columns",
    "save_state",
    "saved_columns",
    "share_columns",
]

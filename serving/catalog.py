"""In-memory copy of the catalog columns a response needs, so ``/similar`` runs no SQL.

One snapshot is loaded with each index (off the request path) and kept current by a cheap
incremental query on ``videos.updated_at`` (stamped by the database's clock, which also times
each check): status changes (a video deleted or failed after the index was built) and edited
titles show up within one refresh interval. Arrays are indexed by
*position* (rank of the video key), which maps vectorised from FAISS ids with ``searchsorted``.
Each snapshot owns the faiss selectors of the filters asked of it (:mod:`serving.selectors`),
emptied by a refresh that changes a row.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from recsys.db.clock import database_time
from recsys.db.models import Video, VideoStatus
from recsys.file_lock import exclusive
from recsys.ids import VideoKey, dense_positions, positions_in
from serving.columns import (
    CatalogColumns,
    IdColumn,
    StringColumn,
    code_of,
    content_key,
    read_columns,
    save_state,
    saved_columns,
)
from serving.selectors import FilterSelectors

STATUS_CODES: dict[str, int] = {
    VideoStatus.READY.value: 0,
    VideoStatus.STALE.value: 1,
    VideoStatus.FAILED.value: 2,
    VideoStatus.DELETED.value: 3,
}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}
UNSERVABLE = (STATUS_CODES[VideoStatus.FAILED.value], STATUS_CODES[VideoStatus.DELETED.value])
# Rows changed within this margin before the last check are read again (transactions that
# committed after a later one). Rows are stamped and checks timed by the database's clock
# (recsys.db.clock), so the writers' clocks play no part.
REFRESH_OVERLAP = timedelta(seconds=2)
# Serialises full reads of the table by workers that start together (:func:`refreshed_or_loaded`).
LOAD_LOCK = ".load.lock"

_COLUMNS = (
    Video.id,
    Video.video_id,
    Video.title,
    Video.category,
    Video.duration_s,
    Video.thumbnail_path,
    Video.status,
    Video.status_reason,
    Video.channel,
    Video.content_hash,
    Video.updated_at,
)


@dataclass
class VideoInfo:
    """Metadata of one catalog video as the snapshot holds it."""

    video_key: VideoKey
    video_id: str
    title: str | None
    category: str | None
    channel: str | None
    duration: float | None
    has_thumbnail: bool
    status: str
    status_reason: str | None


@dataclass
class CatalogSnapshot:
    """Columnar metadata of every catalog video, by position in ``video_keys`` (sorted)."""

    video_keys: np.ndarray  # int64 (n,), sorted
    video_ids: IdColumn | list[str]  # by position
    titles: StringColumn | list[str | None]
    category_codes: np.ndarray  # int32 (n,), -1 = no category
    durations: np.ndarray  # float64 (n,), nan = unknown
    has_thumbnail: np.ndarray  # bool (n,)
    status: np.ndarray  # int8 (n,)
    reasons: dict[int, str]  # position -> status_reason (only where set)
    category_names: list[str] = field(default_factory=list)
    category_index: dict[str, int] = field(default_factory=dict)
    channel_codes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    channel_names: list[str] = field(default_factory=list)
    channel_index: dict[str, int] = field(default_factory=dict)
    # fingerprints of the content hashes (serving.columns.content_key): same bytes, same key
    content_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    positions_by_video_id: IdColumn | dict[str, int] = field(default_factory=dict)
    watermark: datetime | None = None
    generation: int = 0  # bumped by each refresh that changed a row (cached filters are stale)
    checked_at: datetime | None = None  # when the rows were last read (load or refresh)
    # Dense video key -> position (-1 = unknown) when keys are compact (autoincrement), so the
    # hot path maps FAISS ids with one gather instead of a binary search.
    dense: np.ndarray | None = None
    servable: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    selectors: FilterSelectors = field(default_factory=FilterSelectors)

    def __post_init__(self) -> None:
        self.servable = (self.status != UNSERVABLE[0]) & (self.status != UNSERVABLE[1])
        keys = self.video_keys
        n = int(keys.shape[0])
        if self.channel_codes.shape[0] != n:  # a snapshot built without channels
            self.channel_codes = np.full(n, -1, dtype=np.int32)
        if self.content_keys.shape[0] != n:
            self.content_keys = np.zeros(n, dtype=np.int64)
        self.dense = dense_positions(keys)

    def __len__(self) -> int:
        return int(self.video_keys.shape[0])

    # ----------------------------------------------------------------- lookups
    def position(self, video_id: str) -> int | None:
        return self.positions_by_video_id.get(video_id)

    def positions_of(self, video_keys: np.ndarray) -> np.ndarray:
        """Positions of video keys (vectorised); -1 where the key is not in the snapshot."""
        return positions_in(self.video_keys, self.dense, video_keys)

    def video_key(self, position: int) -> VideoKey:
        return VideoKey(int(self.video_keys[position]))

    def servable_mask(self, positions: np.ndarray) -> np.ndarray:
        """True where the position is known and the video is neither deleted nor failed."""
        known = positions >= 0
        return known & self.servable[np.where(known, positions, 0)]

    def is_servable(self, position: int) -> bool:
        return bool(self.servable[position])

    def info(self, position: int) -> VideoInfo:
        duration = float(self.durations[position])
        code = int(self.category_codes[position])
        channel = int(self.channel_codes[position])
        return VideoInfo(
            video_key=self.video_key(position),
            video_id=self.video_ids[position],
            title=self.titles[position],
            category=self.category_names[code] if code >= 0 else None,
            channel=self.channel_names[channel] if channel >= 0 else None,
            duration=None if math.isnan(duration) else duration,
            has_thumbnail=bool(self.has_thumbnail[position]),
            status=STATUS_NAMES.get(int(self.status[position]), "unknown"),
            status_reason=self.reasons.get(position),
        )

    def category_code(self, category: str) -> int | None:
        return self.category_index.get(category)

    def channel_code(self, channel: str) -> int | None:
        return self.channel_index.get(channel)

    def refresh(self, session: Session) -> int:
        """Apply rows changed since the watermark in place; returns how many were applied.

        Single-element writes are atomic under the GIL, so readers see either the old or the
        new value of a field. Videos created after the snapshot are left to the database
        fallback (they are not in the served index anyway).
        """
        started = _clock_like(self.watermark, database_time(session))
        query = select(*_COLUMNS)
        # Rows older than the last check (less the overlap) were seen already: without this
        # floor, a catalog written in one batch (all rows stamped alike) would be read again
        # in full by every refresh.
        since = self.watermark
        checked = self.checked_at
        if since is not None and checked is not None:
            since = max(since, _clock_like(since, checked))
        if since is not None:
            query = query.where(Video.updated_at > since - REFRESH_OVERLAP)
        applied = 0
        for row in session.execute(query):
            if self.watermark is None or (row.updated_at and row.updated_at > self.watermark):
                self.watermark = row.updated_at
            position = self.positions_by_video_id.get(row.video_id)
            if position is None or self.video_key(position) != int(row.id):
                continue
            self.titles[position] = row.title
            self.category_codes[position] = code_of(
                self.category_names, self.category_index, row.category
            )
            self.channel_codes[position] = code_of(
                self.channel_names, self.channel_index, row.channel
            )
            self.content_keys[position] = content_key(row.content_hash)
            self.durations[position] = math.nan if row.duration_s is None else row.duration_s
            self.has_thumbnail[position] = bool(row.thumbnail_path)
            code = STATUS_CODES.get(row.status, 0)
            self.status[position] = code
            self.servable[position] = code not in UNSERVABLE
            if row.status_reason:
                self.reasons[position] = row.status_reason
            else:
                self.reasons.pop(position, None)
            applied += 1
        if applied:
            self.generation += 1
        self.checked_at = started
        return applied


def load_catalog(session: Session, shared_dir: Path | None = None) -> CatalogSnapshot:
    """Read every catalog row once, in bulk, into columnar arrays (:mod:`serving.columns`:
    one streamed query, numpy buffers, no per-row Python objects kept); with ``shared_dir``
    the read-only columns are mapped from files there, one copy for every worker."""
    started = database_time(session)
    columns = read_columns(session, STATUS_CODES, shared_dir)
    snapshot = _snapshot_of(columns)
    snapshot.checked_at = _clock_like(columns.watermark, started)
    save_state(columns, snapshot.checked_at)
    return snapshot


def _snapshot_of(columns: CatalogColumns) -> CatalogSnapshot:
    return CatalogSnapshot(
        video_keys=columns.video_keys,
        video_ids=columns.video_ids,
        titles=columns.titles,
        category_codes=columns.category_codes,
        durations=columns.durations,
        has_thumbnail=columns.has_thumbnail,
        status=columns.status,
        reasons=columns.reasons,
        category_names=columns.categories,
        category_index={name: code for code, name in enumerate(columns.categories)},
        channel_codes=columns.channel_codes,
        channel_names=columns.channels,
        channel_index={name: code for code, name in enumerate(columns.channels)},
        content_keys=columns.content_keys,
        positions_by_video_id=columns.video_ids,
        watermark=columns.watermark,
    )


def _clock_like(reference: datetime | None, now: datetime | None = None) -> datetime:
    """``now`` (default: now, UTC) naive when the database hands back naive timestamps
    (SQLite), aware otherwise, so that the two compare."""
    now = now or datetime.now(UTC)
    if reference is not None and reference.tzinfo is None:
        return now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    return now if now.tzinfo else now.replace(tzinfo=UTC)


def refreshed_or_loaded(
    session: Session, previous: CatalogSnapshot | None, shared_dir: Path | None = None
) -> CatalogSnapshot:
    """The previous snapshot brought up to date in place when the set of videos is unchanged
    (same row count and highest key: only metadata changed); else, for a worker that starts,
    the snapshot another worker saved in ``shared_dir`` for the same set of videos, brought up
    to date the same way (at 10M videos: seconds instead of a minute-long read of the table);
    else a full bulk load."""
    if previous is None and shared_dir is None:
        return load_catalog(session, shared_dir)
    rows, highest = session.execute(select(func.count(Video.id), func.max(Video.id))).one()
    count, top = int(rows), (None if highest is None else int(highest))
    if previous is not None and len(previous):
        if count == len(previous) and top is not None and top == previous.video_keys[-1]:
            previous.refresh(session)
            return previous
    elif shared_dir is not None and count:
        started = _from_saved(session, shared_dir, count, top)
        if started is not None:
            return started
        # Workers that start together read the table one at a time: the first saves what it
        # read and the others map that (with 4 workers on 2 cores, four parallel reads of a
        # 10M-row table take about twice as long as one).
        with contextlib.suppress(OSError):  # read-only: no lock, nothing to share either
            shared_dir.mkdir(parents=True, exist_ok=True)
        with exclusive(shared_dir / LOAD_LOCK):
            started = _from_saved(session, shared_dir, count, top)
            if started is not None:
                return started
            return load_catalog(session, shared_dir)
    return load_catalog(session, shared_dir)


def _from_saved(
    session: Session, shared_dir: Path, count: int, top: int | None
) -> CatalogSnapshot | None:
    saved = saved_columns(shared_dir, count, top)
    if saved is None:
        return None
    columns, checked_at = saved
    snapshot = _snapshot_of(columns)
    snapshot.checked_at = _clock_like(columns.watermark, checked_at)
    snapshot.refresh(session)
    return snapshot


def snapshot_bytes(snapshot: CatalogSnapshot) -> int:
    """Memory the snapshot's columns hold (the per-video cost of serving metadata)."""
    arrays = (
        snapshot.video_keys,
        snapshot.category_codes,
        snapshot.channel_codes,
        snapshot.content_keys,
        snapshot.durations,
        snapshot.has_thumbnail,
        snapshot.status,
        snapshot.servable,
    )
    total = sum(int(a.nbytes) for a in arrays)
    total += int(snapshot.dense.nbytes) if snapshot.dense is not None else 0
    for column in (snapshot.video_ids, snapshot.titles):
        total += column.nbytes if isinstance(column, IdColumn | StringColumn) else 0
    return total

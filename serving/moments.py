"""Matched moments: which part of the query matches which part of each result.

``explain=moments`` reads the stage-A per-segment features (one row per sampled frame, with the
audio window at that time) of the query and of the results on the page from the feature cache
(no decoding per request), compares every query segment with every result segment, and names
the best pair as two spans in seconds. Similarity is the cosine of the rows after each feature
is standardised over both videos' segments, so no single large-valued descriptor decides, and
a pair scores by the mean of itself and its diagonal neighbours (the next and previous
segments of both), so that a moment is a stretch that matches, not one lucky frame.

A video whose features are not in the cache (another extractor version, a cache cleared since
the refresh) gets the reason instead of a moment.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import ModelVersion, Video
from recsys.features import FeatureError
from recsys.settings import Settings
from serving.errors import WouldBlock

log = logging.getLogger(__name__)

#: Segments on each side of a pair that count towards its score (see the module docstring).
CONTEXT = 1
#: Videos whose content hash and duration stay in memory once read (a few hundred bytes each);
#: their sequences stay within Settings.moments_memory_mb.
KEPT_VIDEOS = 16_384
#: Bytes a kept video costs besides its arrays (the entry, the hash, the objects).
KEPT_OVERHEAD = 400
#: Segments are compared in the precision they are stored in: float64 took a quarter longer
#: per page, for similarities that differ only below the 4 decimals an answer shows.
COMPARED = np.float32


@dataclass(frozen=True)
class Moment:
    """The best-matching spans of the query and of one result (seconds), and how well."""

    query_start_s: float
    query_end_s: float
    start_s: float
    end_s: float
    similarity: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "query_start_s": round(self.query_start_s, 3),
            "query_end_s": round(self.query_end_s, 3),
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "similarity": round(self.similarity, 4),
        }


class Segmented(Protocol):
    """What a moment is computed from: per-segment rows, and audio windows (or None)."""

    @property
    def visual_seq(self) -> np.ndarray: ...

    @property
    def audio_seq(self) -> np.ndarray | None: ...


@dataclass(frozen=True)
class SegmentSequences:
    """The sequences of one video, kept in memory without the rest of its features."""

    visual_seq: np.ndarray
    audio_seq: np.ndarray | None

    @property
    def nbytes(self) -> int:
        audio = 0 if self.audio_seq is None else self.audio_seq.nbytes
        return int(2 * (self.visual_seq.nbytes + audio) + KEPT_OVERHEAD)  # and `compared`

    @functools.cached_property
    def compared(self) -> Compared:
        """The rows as compared, made once while the video stays in memory."""
        return _compared_rows(self)


@dataclass(frozen=True)
class Compared:
    """A video's segments as compared: one row per segment, ``[frame | audio window at that
    time]`` in :data:`COMPARED` precision (the audio part empty when it has none)."""

    rows: np.ndarray
    visual_width: int
    audio_width: int


def best_moment(
    query: Segmented, query_duration: float, other: Segmented, duration: float
) -> Moment:
    """The best-matching pair of segments of two videos (module docstring)."""
    [moment] = best_moments(query, query_duration, [(other, duration)])
    if moment is None:
        raise ValueError("a video without segments has no moment")
    return moment


def _compared(video: Segmented) -> Compared:
    """A video's :class:`Compared` rows (kept ones: made once)."""
    if isinstance(video, SegmentSequences):
        return video.compared
    return _compared_rows(video)


def _compared_rows(video: Segmented) -> Compared:
    """Frames as rows, each followed by the audio window at its time (when there is audio)."""
    visual = np.asarray(video.visual_seq)
    visual = visual.reshape(visual.shape[0], -1)
    audio = video.audio_seq
    if audio is None or not audio.shape[0]:
        return Compared(visual.astype(COMPARED), int(visual.shape[1]), 0)
    windows = np.asarray(audio).reshape(audio.shape[0], -1)
    rows = np.empty((visual.shape[0], visual.shape[1] + windows.shape[1]), dtype=COMPARED)
    rows[:, : visual.shape[1]] = visual
    rows[:, visual.shape[1] :] = _at_segments(windows, visual.shape[0])
    return Compared(rows, int(visual.shape[1]), int(windows.shape[1]))


def _at_segments(windows: np.ndarray, count: int) -> np.ndarray:
    """The audio window at the centre of each of ``count`` segments (recsys.tags.inputs
    segment_rows: a video with one window per segment keeps them as they are)."""
    if windows.shape[0] == count:
        return windows
    centres = (np.arange(count) + 0.5) / count
    return windows[np.minimum((centres * windows.shape[0]).astype(np.int64), windows.shape[0] - 1)]


def best_moments(
    query: Segmented, query_duration: float, others: Sequence[tuple[Segmented, float]]
) -> list[Moment | None]:
    """:func:`best_moment` of the query and each of ``others`` (features, duration), computed
    together: a page's results are written into one padded array and compared in a few array
    operations, not a Python loop per result. Each row is ``[frame | audio window at that
    time]``, audio counting when both videos have it at the same width. None for a video
    without segments, or whose frames do not have the query's width."""
    out: list[Moment | None] = [None] * len(others)
    query_rows = _compared(query)
    n, visual_width = query_rows.rows.shape[0], query_rows.visual_width
    audio_width = query_rows.audio_width
    compared = [_compared(other) for other, _ in others]
    groups: dict[int, list[int]] = {}
    for i, other in enumerate(compared):
        if n and other.rows.shape[0] and other.visual_width == visual_width:
            both = audio_width > 0 and other.audio_width == audio_width
            groups.setdefault(audio_width if both else 0, []).append(i)
    for width, members in groups.items():
        columns = visual_width + width  # the frames, and the audio where both have it
        parts = [compared[i].rows[:, :columns] for i in members]
        counts = np.array([part.shape[0] for part in parts], dtype=np.int64)
        if int(counts.min()) == int(counts.max()):
            # the usual page, as many segments each: one copy (np.stack costs more in Python)
            padded = np.concatenate(parts).reshape(len(parts), parts[0].shape[0], columns)
        else:
            padded = np.zeros((len(members), int(counts.max()), columns), COMPARED)
            for b, part in enumerate(parts):
                padded[b, : part.shape[0]] = part
        rows = query_rows.rows[:, :columns]
        for i, m, (q, j, similarity) in zip(
            members, counts.tolist(), _best_pairs(rows, padded, counts), strict=True
        ):
            duration = others[i][1]
            out[i] = Moment(
                query_start_s=q / n * query_duration,
                query_end_s=(q + 1) / n * query_duration,
                start_s=j / m * duration,
                end_s=(j + 1) / m * duration,
                similarity=similarity,
            )
    return out


def _best_pairs(
    rows: np.ndarray, padded: np.ndarray, counts: np.ndarray
) -> list[tuple[int, int, float]]:
    """(query segment, other segment, similarity) of the best pair of the query's ``rows``
    (n, d) with each video of ``padded`` (B, M, d; its first ``counts`` rows are real): each
    feature standardised over both videos' segments, rows compared by cosine, a pair scored by
    the mean of itself and its diagonal neighbours (module docstring)."""
    n = rows.shape[0]
    videos, width, _ = padded.shape
    padding = int(counts.min()) < width
    # (B, M): real segments, not padding (all of them when every video has ``width``)
    valid = np.arange(width)[None, :] < counts[:, None] if padding else None
    both = (n + counts)[:, None].astype(rows.dtype)
    mean = (rows.sum(axis=0)[None, :] + padded.sum(axis=1)) / both  # over both videos' rows
    left = rows[None, :, :] - mean[:, None, :]  # (B, n, d)
    right = padded - mean[:, None, :]  # (B, M, d)
    if valid is not None:
        right *= valid[:, :, None]  # padding stays 0, so it adds nothing below
    squares = np.einsum("bnd,bnd->bd", left, left) + np.einsum("bmd,bmd->bd", right, right)
    scale = np.sqrt(squares / both)
    scale[scale < 1e-9] = 1.0
    left /= scale[:, None, :]
    right /= scale[:, None, :]
    left /= np.maximum(np.sqrt(np.einsum("bnd,bnd->bn", left, left)), 1e-12)[:, :, None]
    right /= np.maximum(np.sqrt(np.einsum("bmd,bmd->bm", right, right)), 1e-12)[:, :, None]
    similarity = left @ right.transpose(0, 2, 1)  # (B, n, M); 0 against padding
    # entry (i, j) adds (i + d, j + d) where both exist: shifted views of zero-framed grids
    framed = np.zeros((videos, n + 2 * CONTEXT, width + 2 * CONTEXT), dtype=similarity.dtype)
    framed[:, CONTEXT : CONTEXT + n, CONTEXT : CONTEXT + width] = similarity
    total = np.zeros_like(similarity)
    for d in range(2 * CONTEXT + 1):
        total += framed[:, d : d + n, d : d + width]
    if valid is None:  # how many pairs each score averages depends on the grid's shape alone
        score = total / _context_counts(n, width, similarity.dtype)
    else:
        exists = np.zeros_like(framed)
        exists[:, CONTEXT : CONTEXT + n, CONTEXT : CONTEXT + width] = valid[:, None, :]
        count = np.zeros_like(similarity)
        for d in range(2 * CONTEXT + 1):
            count += exists[:, d : d + n, d : d + width]
        score = np.where(valid[:, None, :], total / np.maximum(count, 1.0), -np.inf)
    out = []
    for b, flat in enumerate(score.reshape(len(counts), -1).argmax(axis=1).tolist()):
        i, j = divmod(int(flat), width)
        out.append((i, j, float(similarity[b, i, j])))
    return out


@functools.lru_cache(maxsize=64)
def _context_counts(n: int, width: int, dtype: np.dtype[Any]) -> np.ndarray:
    """Entry (i, j): how many of the pairs (i + d, j + d), d in [-CONTEXT, CONTEXT], exist in
    an n x width grid (counted as :func:`_best_pairs` counts them with padding)."""
    framed = np.zeros((n + 2 * CONTEXT, width + 2 * CONTEXT), dtype=dtype)
    framed[CONTEXT : CONTEXT + n, CONTEXT : CONTEXT + width] = 1
    count = np.zeros((n, width), dtype=dtype)
    for d in range(2 * CONTEXT + 1):
        count += framed[d : d + n, d : d + width]
    count.flags.writeable = False
    return count


def page_moments(
    segments: SegmentFeatures | None,
    query_key: int | None,
    video_keys: list[int],
    *,
    inline: bool = False,
) -> list[dict[str, Any]]:
    """The matched moment of each result on a page (:meth:`SegmentFeatures.moments`), or why
    there is none: a query that is not a catalog video (``query_key`` None), a snapshot
    without segment features."""
    if query_key is None or segments is None:
        reason = "moments need a catalog video as the query"
        return [{"missing": reason} for _ in video_keys]
    return segments.moments(query_key, video_keys, inline=inline)


class SegmentFeatures:
    """The served model's stage-A features, read from the feature cache on demand.

    The extractor (which names the cache entries) is built on first use, not with the state:
    most workers never answer ``explain=moments``."""

    def __init__(self, settings: Settings, database: Database, model_version: str) -> None:
        self.settings = settings
        self.database = database
        self.model_version = model_version
        self._lock = threading.Lock()
        self._reader: Any = None
        self._extractor: Any = None
        self._problem: str | None = None
        # sequences by content hash, least recently used first, within ``_budget`` bytes: a
        # video asked about again, or shown again as a result, is not read again
        self._kept: OrderedDict[str, SegmentSequences] = OrderedDict()
        self._kept_bytes = 0
        self._budget = settings.moments_memory_mb * 2**20
        self._hashes: OrderedDict[int, tuple[str | None, float | None]] = OrderedDict()

    def _ready(self) -> str | None:
        """None when the cache can be read, else why not."""
        with self._lock:
            if self._reader is not None or self._problem is not None:
                return self._problem
            from recsys.features import get_extractor
            from recsys.features.cache import FeatureCache

            with self.database.session() as session:
                model = session.get(ModelVersion, self.model_version)
                spec = model.extractor if model is not None else None
                version = model.extractor_version if model is not None else None
            if spec is None:
                self._problem = f"model {self.model_version} is not in the catalog database"
                return self._problem
            try:
                extractor = get_extractor(spec, settings=self.settings)
            except Exception as error:  # noqa: BLE001 - an extractor that cannot load: no moments
                self._problem = f"extractor {spec} cannot be loaded: {error}"
                return self._problem
            if str(extractor.version) != str(version):
                self._problem = (
                    f"model {self.model_version} was trained on {spec} version {version}, the "
                    f"feature cache now holds version {extractor.version}"
                )
                return self._problem
            self._extractor = extractor
            self._reader = FeatureCache(self.settings, self.database)
            return None

    def moments(
        self, query_key: int, video_keys: list[int], *, inline: bool = False
    ) -> list[dict[str, Any]]:
        """For each of ``video_keys``: its moment matching the query video, or the reason
        there is none (``{"missing": ...}``). ``inline``: from memory only, else
        :class:`~serving.errors.WouldBlock` (videos seen before, at most a few hundred per
        state, are answered on the event loop without a thread)."""
        if inline and self._reader is None and self._problem is None:
            raise WouldBlock("the feature cache is not open yet")
        problem = self._ready()
        if problem is not None:
            return [{"missing": problem} for _ in video_keys]
        known = self._videos([query_key, *video_keys], inline)
        hashes = {h for h, _ in known.values() if h}
        features = self._features(hashes, inline)
        query_hash, query_duration = known.get(query_key, (None, None))
        query = features.get(query_hash) if query_hash else None
        if query is None or not query_duration:
            reason = "the query video has no segment features in the feature cache"
            return [{"missing": reason} for _ in video_keys]
        missing = {"missing": "no segment features in the feature cache"}
        out: list[dict[str, Any]] = [missing] * len(video_keys)
        compared: list[int] = []
        others: list[tuple[Segmented, float]] = []
        for i, key in enumerate(video_keys):
            content_hash, duration = known.get(key, (None, None))
            found = features.get(content_hash) if content_hash else None
            if found is not None and duration:
                compared.append(i)
                others.append((found, float(duration)))
        moments = best_moments(query, float(query_duration), others)
        for i, moment in zip(compared, moments, strict=True):
            if moment is not None:
                out[i] = moment.as_dict()
        return out

    def _videos(
        self, video_keys: list[int], inline: bool = False
    ) -> dict[int, tuple[str | None, float | None]]:
        """(content hash, duration) by video key: kept ones, the others from the database (a
        re-ingested file comes with a new index, hence a new state and an empty memory)."""
        with self._lock:
            known = {k: self._hashes[k] for k in video_keys if k in self._hashes}
        missing = [k for k in video_keys if k not in known]
        if missing and inline:
            raise WouldBlock(f"{len(missing)} videos' content hashes are not in memory")
        if missing:
            with self.database.session() as session:
                rows = session.execute(
                    select(Video.id, Video.content_hash, Video.duration_s).where(
                        Video.id.in_(missing)
                    )
                ).all()
            read = {int(r.id): (r.content_hash, r.duration_s) for r in rows}
            known.update(read)
            with self._lock:
                self._hashes.update(read)
                while len(self._hashes) > KEPT_VIDEOS:
                    self._hashes.popitem(last=False)
        return known

    def _features(self, hashes: set[str], inline: bool = False) -> dict[str, SegmentSequences]:
        """Sequences by content hash: the kept ones, the others read from the cache (only the
        sequences of each entry: see CacheReader.get_many)."""
        with self._lock:
            found = {h: self._kept[h] for h in hashes if h in self._kept}
            for content_hash in found:
                self._kept.move_to_end(content_hash)
        missing = hashes - found.keys()
        if missing and inline:
            raise WouldBlock(f"{len(missing)} videos' segment features are not in memory")
        if missing:
            read: dict[str, SegmentSequences] = {}
            failure: FeatureError | None = None
            entries = self._reader.get_many(missing, self._extractor, sequences=False)
            for content_hash, features in entries.items():
                try:  # copies: a view would keep a whole column of its pack in memory
                    audio = features.audio_seq
                    read[content_hash] = SegmentSequences(
                        np.array(features.visual_seq), None if audio is None else np.array(audio)
                    )
                except FeatureError as error:  # a damaged entry: a miss, like a damaged pack
                    failure = failure or error
            if failure is not None:
                log.warning("%s", failure)
            found.update(read)
            with self._lock:
                for content_hash, sequences in read.items():
                    if content_hash not in self._kept:
                        self._kept[content_hash] = sequences
                        self._kept_bytes += sequences.nbytes
                while self._kept and self._kept_bytes > self._budget:
                    self._kept_bytes -= self._kept.popitem(last=False)[1].nbytes
        return found


__all__ = ["Moment", "SegmentFeatures", "best_moment", "best_moments", "page_moments"]

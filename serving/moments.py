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

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import ModelVersion, Video
from recsys.features import VideoFeatures
from recsys.settings import Settings
from recsys.tags.inputs import segment_rows

#: Segments on each side of a pair that count towards its score (see the module docstring).
CONTEXT = 1
#: Videos whose features stay in memory once read (a few KB each): a video asked about again,
#: or shown again as a result, is not read again.
KEPT_FEATURES = 512


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


def best_moment(
    query: VideoFeatures, query_duration: float, other: VideoFeatures, duration: float
) -> Moment:
    """The best-matching pair of segments of two videos (module docstring)."""
    [moment] = best_moments(query, query_duration, [(other, duration)])
    if moment is None:
        raise ValueError("a video without segments has no moment")
    return moment


def _audio_width(features: VideoFeatures) -> int:
    audio = features.audio_seq
    return int(np.prod(audio.shape[1:])) if audio is not None and audio.shape[0] else 0


def best_moments(
    query: VideoFeatures, query_duration: float, others: Sequence[tuple[VideoFeatures, float]]
) -> list[Moment | None]:
    """:func:`best_moment` of the query and each of ``others`` (features, duration), computed
    together (a page's results in a few array operations, not a Python loop per result); None
    for a video without segments."""
    out: list[Moment | None] = [None] * len(others)
    width = _audio_width(query)
    groups: dict[int, list[int]] = {}  # audio counts when both have it, at the same width
    for i, (other, _) in enumerate(others):
        groups.setdefault(width if _audio_width(other) == width else 0, []).append(i)
    for audio_width, members in groups.items():
        rows, _, bounds = segment_rows(query, audio_width)
        segments = [segment_rows(others[i][0], audio_width) for i in members]
        pairs = _best_pairs(rows, [s[0] for s in segments])
        for i, (_, _, other_bounds), pair in zip(members, segments, pairs, strict=True):
            if pair is None:
                continue
            q, j, similarity = pair
            duration = others[i][1]
            out[i] = Moment(
                query_start_s=float(bounds[q, 0]) * query_duration,
                query_end_s=float(bounds[q, 1]) * query_duration,
                start_s=float(other_bounds[j, 0]) * duration,
                end_s=float(other_bounds[j, 1]) * duration,
                similarity=similarity,
            )
    return out


def _best_pairs(rows: np.ndarray, others: list[np.ndarray]) -> list[tuple[int, int, float] | None]:
    """(query segment, other segment, similarity) of the best pair with each of ``others``
    (module docstring), the others padded to one length and masked; None for an empty one."""
    n, dim = rows.shape
    counts = np.array([o.shape[0] for o in others], dtype=np.int64)
    if n == 0 or not others or counts.max() == 0:
        return [None] * len(others)
    width = int(counts.max())
    other = np.zeros((len(others), width, dim), dtype=np.float64)
    for b, o in enumerate(others):
        other[b, : o.shape[0]] = o
    valid = np.arange(width)[None, :] < counts[:, None]  # (B, M): real segments, not padding
    query = rows.astype(np.float64)
    both = (n + counts)[:, None].astype(np.float64)
    mean = (query.sum(axis=0)[None, :] + other.sum(axis=1)) / both  # over both videos' rows
    left = query[None, :, :] - mean[:, None, :]  # (B, n, d)
    right = (other - mean[:, None, :]) * valid[:, :, None]  # (B, M, d), padding stays 0
    scale = np.sqrt((np.square(left).sum(axis=1) + np.square(right).sum(axis=1)) / both)
    scale[scale < 1e-9] = 1.0
    left /= scale[:, None, :]
    right /= scale[:, None, :]
    left /= np.maximum(np.linalg.norm(left, axis=2, keepdims=True), 1e-12)
    right /= np.maximum(np.linalg.norm(right, axis=2, keepdims=True), 1e-12)
    similarity = left @ right.transpose(0, 2, 1)  # (B, n, M)
    total = np.zeros_like(similarity)
    count = np.zeros_like(similarity)
    for d in range(-CONTEXT, CONTEXT + 1):  # entry (i, j) adds (i + d, j + d) where both exist
        rows_to, rows_from = slice(max(0, -d), n - max(0, d)), slice(max(0, d), n + min(0, d))
        cols_to = slice(max(0, -d), width - max(0, d))
        cols_from = slice(max(0, d), width + min(0, d))
        exists = valid[:, None, cols_from].astype(np.float64)
        total[:, rows_to, cols_to] += similarity[:, rows_from, cols_from] * exists
        count[:, rows_to, cols_to] += exists
    score = total / np.maximum(count, 1.0)
    score[~np.broadcast_to(valid[:, None, :], score.shape)] = -np.inf
    best = score.reshape(len(others), -1).argmax(axis=1)
    out: list[tuple[int, int, float] | None] = []
    for b, flat in enumerate(best.tolist()):
        i, j = divmod(int(flat), width)
        out.append((i, j, float(similarity[b, i, j])) if counts[b] else None)
    return out


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
        self._kept: OrderedDict[str, VideoFeatures] = OrderedDict()
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

    def moments(self, query_key: int, video_keys: list[int]) -> list[dict[str, Any]]:
        """For each of ``video_keys``: its moment matching the query video, or the reason
        there is none (``{"missing": ...}``)."""
        problem = self._ready()
        if problem is not None:
            return [{"missing": problem} for _ in video_keys]
        known = self._videos([query_key, *video_keys])
        hashes = {h for h, _ in known.values() if h}
        features = self._features(hashes)
        query_hash, query_duration = known.get(query_key, (None, None))
        query = features.get(query_hash) if query_hash else None
        if query is None or not query_duration:
            reason = "the query video has no segment features in the feature cache"
            return [{"missing": reason} for _ in video_keys]
        missing = {"missing": "no segment features in the feature cache"}
        out: list[dict[str, Any]] = [missing] * len(video_keys)
        compared: list[int] = []
        others: list[tuple[VideoFeatures, float]] = []
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

    def _videos(self, video_keys: list[int]) -> dict[int, tuple[str | None, float | None]]:
        """(content hash, duration) by video key: kept ones, the others from the database (a
        re-ingested file comes with a new index, hence a new state and an empty memory)."""
        with self._lock:
            known = {k: self._hashes[k] for k in video_keys if k in self._hashes}
        missing = [k for k in video_keys if k not in known]
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
                while len(self._hashes) > KEPT_FEATURES * 8:
                    self._hashes.popitem(last=False)
        return known

    def _features(self, hashes: set[str]) -> dict[str, VideoFeatures]:
        """Features by content hash: the kept ones, the others read from the cache."""
        with self._lock:
            found = {h: self._kept[h] for h in hashes if h in self._kept}
            for content_hash in found:
                self._kept.move_to_end(content_hash)
        missing = hashes - found.keys()
        if missing:
            read = self._reader.get_many(missing, self._extractor)
            found.update(read)
            with self._lock:
                self._kept.update(read)
                while len(self._kept) > KEPT_FEATURES:
                    self._kept.popitem(last=False)
        return found


__all__ = ["Moment", "SegmentFeatures", "best_moment", "best_moments"]

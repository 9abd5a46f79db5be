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
    widths = [
        int(np.prod(a.shape[1:])) if a is not None and a.shape[0] else 0
        for a in (query.audio_seq, other.audio_seq)
    ]
    width = widths[0] if widths[0] == widths[1] else 0  # audio counts when both have it
    rows, _, bounds = segment_rows(query, width)
    other_rows, _, other_bounds = segment_rows(other, width)
    both = np.concatenate([rows, other_rows]).astype(np.float64)
    scale = both.std(axis=0)
    scale[scale < 1e-9] = 1.0
    centred = (both - both.mean(axis=0)) / scale
    centred /= np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    left, right = centred[: rows.shape[0]], centred[rows.shape[0] :]
    similarity = left @ right.T
    n, m = similarity.shape
    total = np.zeros_like(similarity)
    count = np.zeros_like(similarity)
    for d in range(-CONTEXT, CONTEXT + 1):  # entry (i, j) adds (i + d, j + d) where both exist
        rows_to, cols_to = slice(max(0, -d), n - max(0, d)), slice(max(0, -d), m - max(0, d))
        total[rows_to, cols_to] += similarity[max(0, d) : n + min(0, d), max(0, d) : m + min(0, d)]
        count[rows_to, cols_to] += 1.0
    score = total / np.maximum(count, 1.0)
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    return Moment(
        query_start_s=float(bounds[i, 0]) * query_duration,
        query_end_s=float(bounds[i, 1]) * query_duration,
        start_s=float(other_bounds[j, 0]) * duration,
        end_s=float(other_bounds[j, 1]) * duration,
        similarity=float(similarity[i, j]),
    )


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
        out: list[dict[str, Any]] = []
        for key in video_keys:
            content_hash, duration = known.get(key, (None, None))
            found = features.get(content_hash) if content_hash else None
            if found is None or not duration:
                out.append({"missing": "no segment features in the feature cache"})
                continue
            out.append(best_moment(query, float(query_duration), found, float(duration)).as_dict())
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


__all__ = ["Moment", "SegmentFeatures", "best_moment"]

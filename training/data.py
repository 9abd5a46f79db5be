"""Training data: cached features of catalog videos with their categories and related pairs.

Features come from the feature cache; only videos with no cache entry are decoded (once, with a
progress bar), so retraining never re-decodes video.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from recsys.catalog import servable_videos_query
from recsys.db import Database
from recsys.db.models import RelatedPair, Video
from recsys.features import CacheBatch, FeatureCache, FeatureExtractor, VideoFeatures
from recsys.progress import track
from recsys.settings import Settings

log = logging.getLogger(__name__)
#: Feature-cache rows committed per transaction while extracting a new catalog.
CACHE_BATCH = 64


@dataclass
class TrainingData:
    """Features of a set of videos plus the supervision that exists for them.

    ``labels`` are category ids (-1 = unknown); ``pairs`` index into ``features``.
    """

    features: list[VideoFeatures]
    labels: np.ndarray
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    keys: list[str] = field(default_factory=list)  # external video ids, for reports
    content_hashes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.features)

    def subset(self, index: Sequence[int] | np.ndarray) -> TrainingData:
        """The videos at ``index`` with the pairs that have both ends among them."""
        index = np.asarray(index, dtype=np.int64)
        remap = np.full(len(self.features), -1, dtype=np.int64)
        remap[index] = np.arange(index.shape[0])
        keep = (
            (remap[self.pairs[:, 0]] >= 0) & (remap[self.pairs[:, 1]] >= 0)
            if len(self.pairs)
            else np.zeros(0, dtype=bool)
        )
        return TrainingData(
            features=[self.features[i] for i in index],
            labels=self.labels[index],
            pairs=remap[self.pairs[keep]] if len(self.pairs) else self.pairs,
            weights=self.weights[keep] if len(self.pairs) else self.weights,
            keys=[self.keys[i] for i in index] if self.keys else [],
            content_hashes=[self.content_hashes[i] for i in index] if self.content_hashes else [],
        )


def encode_labels(values: Sequence[str | None]) -> tuple[np.ndarray, list[str]]:
    """Category names to integer ids (-1 for None), with the sorted name list."""
    names = sorted({v for v in values if v})
    lookup = {name: i for i, name in enumerate(names)}
    return np.array([lookup.get(v, -1) if v else -1 for v in values], dtype=np.int64), names


def load_training_data(
    settings: Settings,
    database: Database,
    extractor: FeatureExtractor,
    *,
    video_ids: Sequence[str] | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> TrainingData:
    """Cached (or freshly extracted) features of every servable catalog video, with labels/pairs.

    Videos missing from the cache are decoded on the stage-A worker pool (``workers``
    processes, default one per core) and cached, so a first training run on a new catalog uses
    every core and later runs (and the refresh) decode nothing. A video whose features cannot be
    computed is skipped with a warning (the refresh marks it failed); training goes on.
    """
    cache = FeatureCache(settings, database)
    with database.session() as session:
        query = servable_videos_query(video_ids)
        videos = list(session.scalars(query))
        edges = session.execute(
            select(RelatedPair.video_a, RelatedPair.video_b, RelatedPair.weight)
        ).all()
    cached = features_of(
        settings, database, videos, extractor, workers=workers, progress=progress, cache=cache
    )
    features: list[VideoFeatures] = []
    kept: list[Video] = []
    for video in videos:
        hit = cached.get(video.content_hash) if video.content_hash else None
        if hit is not None:
            features.append(hit)
            kept.append(video)
    position_of: dict[int, int] = {video.id: i for i, video in enumerate(kept)}  # key -> row
    pairs = [  # edges join video keys; pairs join positions in ``features``
        (position_of[key_a], position_of[key_b], float(w))
        for key_a, key_b, w in edges
        if key_a in position_of and key_b in position_of and key_a != key_b
    ]
    labels, _ = encode_labels([video.category for video in kept])
    return TrainingData(
        features=features,
        labels=labels,
        pairs=np.array([(a, b) for a, b, _ in pairs], dtype=np.int64).reshape(-1, 2),
        weights=np.array([w for _, _, w in pairs], dtype=np.float64),
        keys=[video.video_id for video in kept],
        content_hashes=[video.content_hash or "" for video in kept],
    )


def features_of(
    settings: Settings,
    database: Database,
    videos: Sequence[Video],
    extractor: FeatureExtractor,
    *,
    workers: int | None = None,
    progress: bool = True,
    cache: FeatureCache | None = None,
) -> dict[str, VideoFeatures]:
    """Features of catalog videos by content hash: cache hits read in bulk, the rest extracted
    on the stage-A worker pool and cached. Videos that fail are absent (with a warning).

    A video without a content hash gets one computed (on the detached object only).
    """
    cache = cache or FeatureCache(settings, database)
    found = cache.get_many([v.content_hash for v in videos if v.content_hash], extractor)
    missing = [v for v in videos if not v.content_hash or v.content_hash not in found]
    if missing:
        log.info("extracting %s features of %d uncached videos", extractor.name, len(missing))
        found.update(_extract_missing(settings, cache, extractor, missing, workers, progress))
    return found


def _extract_missing(
    settings: Settings,
    cache: FeatureCache,
    extractor: FeatureExtractor,
    videos: list[Video],
    workers: int | None,
    progress: bool,
) -> dict[str, VideoFeatures]:
    """Stage A for videos without cached features, on the worker pool; cached in batches."""
    from recsys import media
    from recsys.stage_a import FeatureSpec, VideoTask, default_workers, stream_features

    tasks = []
    for video in videos:
        content_hash = video.content_hash
        if not content_hash:
            try:
                content_hash = media.content_hash(video.uri)
            except (OSError, media.MediaError) as error:  # MediaNotFound: gone since ingest
                log.warning("skipping video %s (%s): %s", video.video_id, video.uri, error)
                continue
            video.content_hash = content_hash
        tasks.append(VideoTask(video.id, video.video_id, video.uri, content_hash))
    spec = FeatureSpec.for_model(settings, extractor.name, str(extractor.version))
    computed: dict[str, VideoFeatures] = {}
    batch = CacheBatch(cache, extractor, size=CACHE_BATCH)
    stream = stream_features(tasks, spec, workers=workers or default_workers())
    for result in track(stream, len(tasks), "features", enabled=progress, logger=log):
        if result.features is None:
            task = result.task
            log.warning("skipping video %s (%s): %s", task.video_id, task.uri, result.error)
            continue
        computed[result.task.content_hash] = result.features
        batch.add(result.task.content_hash, result.features)
    batch.flush()
    # Each batch is one pack file: merge the small ones, as a refresh does after decoding.
    cache.compact(extractor)
    return computed

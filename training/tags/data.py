"""The labelled videos of the catalog a tags model trains on.

Labels are the catalog's human labels: ``videos.category`` (one per video) and ``videos.tags``
(any number). Only ready videos with computed features train (videos not through stage A yet
are decoded on the stage-A pool and cached); labels on failed or deleted videos are reported and
left out, so nothing trains on missing data. The label checks: ``recsys.tags.labels``.
"""

from __future__ import annotations

from recsys.db import Database
from recsys.db.models import Video
from recsys.features import FeatureExtractor, VideoFeatures
from recsys.settings import Settings
from recsys.tags import labels
from recsys.tags.labels import LabelledVideos
from training.data import features_of


def load_labelled(
    settings: Settings,
    database: Database,
    extractor: FeatureExtractor,
    *,
    model_version: str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> LabelledVideos:
    """:func:`recsys.tags.labels.load_labelled` with features extracted and cached for the
    labelled videos not through stage A yet."""

    def features(videos: list[Video]) -> dict[str, VideoFeatures]:
        return features_of(
            settings, database, videos, extractor, workers=workers, progress=progress
        )

    return labels.load_labelled(settings, database, features=features, model_version=model_version)

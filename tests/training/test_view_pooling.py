"""Segment views (training views, same-source windows) are pooled as their video was."""

from __future__ import annotations

import numpy as np

from recsys.features import VideoFeatures, pool_sequence
from recsys.models import ModelConfig, build_inputs
from training.protocol import split_windows


def _video(pooling: str | None) -> VideoFeatures:
    rows = np.arange(6 * 4, dtype=np.float32).reshape(6, 4)
    audio = np.ones((3, 2), dtype=np.float32)
    visual = rows.mean(axis=0) if pooling == "mean" else pool_sequence(rows)
    info = {"pooling": pooling} if pooling else {}
    return VideoFeatures("x", "x-1", visual, rows, pool_sequence(audio), audio, info=info)


def test_windows_and_views_of_a_mean_pooled_video_are_mean_pooled() -> None:
    video = _video("mean")
    windows = split_windows(video)
    assert [w.visual.tolist() for w in windows] == [
        [2, 3, 4, 5],
        [10, 11, 12, 13],
        [18, 19, 20, 21],
    ]
    config = ModelConfig(extractor="x", extractor_version="x-1", visual_dim=4, audio_dim=4)
    views = build_inputs(config, [video, video], rng=np.random.default_rng(0), view_fraction=0.5)
    assert views.visual.shape == (2, 4) and views.audio.shape == (2, 4)  # audio stays mean+std


def test_videos_without_a_recorded_pooling_keep_mean_and_std() -> None:
    assert all(w.visual.shape == (8,) for w in split_windows(_video(None)))

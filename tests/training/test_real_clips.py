"""Real clips: silent videos are still embedded (unit vectors, zero audio part) and ranked."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.features import get_extractor
from recsys.media import decode_video
from recsys.models import Embedder
from training import TrainConfig, TrainingData, fit


@pytest.mark.realdata
def test_silent_real_videos_are_embedded_and_ranked(real_av_dir: Path) -> None:
    with (real_av_dir / "manifest.csv").open(newline="") as handle:
        clips = [real_av_dir / row["file"] for row in list(csv.DictReader(handle))[:3]]
    silent = sorted((real_av_dir / "silent").glob("*.mp4"))
    assert len(silent) == 2
    extractor = get_extractor("content")
    features = [
        extractor.extract(decode_video(path, num_frames=6, size=64)) for path in clips + silent
    ]
    assert [f.audio is None for f in features] == [False, False, False, True, True]
    config = TrainConfig(pairs="self", epochs=2, dim=16, hidden=32, batch_size=10, progress=False)
    data = TrainingData(features=features, labels=np.full(5, -1))
    model = fit(config, data, None, device=torch.device("cpu")).model
    vectors, per = Embedder("test", model, torch.device("cpu")).embed(features)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert not per["audio"][3:].any() and np.linalg.norm(per["visual"][3:], axis=1).min() > 0.99
    scores = vectors[3] @ vectors.T  # a silent video is ranked against every clip
    scores[3] = -np.inf  # (itself excluded), each with a finite cosine in [-1, 1]
    assert np.isfinite(scores[:3]).all() and np.isfinite(scores[4])
    assert -1.0 - 1e-5 <= scores[[0, 1, 2, 4]].min() <= scores[[0, 1, 2, 4]].max() <= 1.0 + 1e-5

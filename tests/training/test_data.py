"""Training data on a new catalog: uncached videos are extracted on the worker pool and cached;
a broken file is skipped, never fatal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.db import Database
from recsys.features import FeatureCache, get_extractor
from recsys.ingest import ingest_paths
from recsys.media import decode_video
from recsys.settings import Settings
from recsys.synth import generate_corpus
from training import load_training_data


def test_uncached_videos_are_extracted_in_workers_cached_and_broken_ones_skipped(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    settings.frames_per_video, settings.frame_size = 6, 48
    corpus = generate_corpus(tmp_path / "c", 8, 2, 1.0, seed=3, width=64, height=48)
    assert ingest_paths(settings, database, [corpus.manifest]).ok
    broken = corpus.videos[2]
    (corpus.out_dir / broken.file).write_bytes(b"\x00" * 4096)  # damaged after ingest
    extractor = get_extractor("content")

    data = load_training_data(settings, database, extractor, progress=False, workers=2)

    assert sorted(data.keys) == sorted(v.video_id for v in corpus.videos if v is not broken)
    assert len(data.features) == len(data.labels) == 7
    first = corpus.videos[0]
    direct = extractor.extract(decode_video(corpus.out_dir / first.file, num_frames=6, size=48))
    np.testing.assert_array_equal(
        data.features[data.keys.index(first.video_id)].visual, direct.visual
    )
    cached = FeatureCache(settings, database).get_many(data.content_hashes, extractor)
    assert len(cached) == 7  # a second training run (or the refresh) decodes nothing

    for video in corpus.videos:  # ... as proven by removing every file
        (corpus.out_dir / video.file).unlink()
    again = load_training_data(settings, database, extractor, progress=False, workers=2)
    assert again.keys == data.keys

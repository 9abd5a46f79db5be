"""Training data on a new catalog: uncached videos are extracted on the worker pool and cached;
a broken file is skipped, never fatal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import Video
from recsys.errors import UserError
from recsys.features import FeatureCache, get_extractor
from recsys.ingest import ingest_paths
from recsys.media import decode_video
from recsys.settings import Settings
from recsys.synth import generate_corpus
from training import data as training_data
from training import load_training_data
from training.data import TrainingData
from training.errors import TrainingError
from training.protocol import read_categories
from training.samplers import CategoryBatches, PairBatches


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

    # A video without a content hash whose file is gone is skipped too (MediaNotFound while
    # hashing it), not fatal.
    with database.session() as session:
        gone = session.scalars(select(Video).where(Video.video_id == first.video_id)).one()
        gone.content_hash = None
    third = load_training_data(settings, database, extractor, progress=False, workers=2)
    assert third.keys == [key for key in data.keys if key != first.video_id]


def test_features_extracted_for_training_are_packed_into_few_files(
    settings: Settings, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.frames_per_video, settings.frame_size = 4, 32
    corpus = generate_corpus(tmp_path / "c", 20, 2, 0.5, seed=4, width=48, height=32)
    assert ingest_paths(settings, database, [corpus.manifest]).ok
    monkeypatch.setattr(training_data, "CACHE_BATCH", 1)  # one pack file per video written
    extractor = get_extractor("content")

    data = load_training_data(settings, database, extractor, progress=False, workers=2)

    packs = list((settings.home / "features").rglob("packs/*.safetensors"))
    assert len(packs) == 1, packs  # twenty one-entry packs compacted into one
    cached = FeatureCache(settings, database).get_many(data.content_hashes, extractor)
    assert len(cached) == 20
    for key, features in zip(data.content_hashes, data.features, strict=True):
        np.testing.assert_array_equal(cached[key].visual, features.visual)


def test_data_that_cannot_train_is_a_user_error_that_says_what_to_do(tmp_path: Path) -> None:
    """Still ValueErrors (for callers that catch those), and RecsysErrors the CLI prints."""
    no_pairs = TrainingData(features=[], labels=np.zeros(0, dtype=np.int64))
    with pytest.raises(TrainingError, match="recsys ingest") as caught:
        PairBatches(no_pairs, 8)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    with pytest.raises(TrainingError, match="at least 2 categories"):
        CategoryBatches(np.array([0, 0, -1], dtype=np.int64), 8)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("file,title\na.mp4,A\n")
    with pytest.raises(TrainingError, match="no 'category' column"):
        read_categories(manifest)
    with pytest.raises(TrainingError, match="cannot read manifest"):
        read_categories(tmp_path / "missing.csv")

"""The benchmarks' shared set-up: a home with its database, a cached synthetic corpus, real-av."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.synth.workspace import (
    cached_features,
    corpus_features,
    open_home,
    real_av_rows,
    synthetic_corpus,
)


def test_open_home_makes_the_folders_and_the_database(tmp_path: Path) -> None:
    settings, database = open_home(tmp_path / "home", frames_per_video=4)
    try:
        assert settings.frames_per_video == 4
        assert settings.features_dir.is_dir() and settings.indexes_dir.is_dir()
        with database.session() as session:
            assert session.connection() is not None
    finally:
        database.dispose()


def test_no_real_av_folder_means_no_rows(tmp_path: Path) -> None:
    assert real_av_rows(tmp_path / "absent") == []
    (tmp_path / "manifest.csv").write_text("file,category\nclips/a.mp4,music\n")
    assert real_av_rows(tmp_path) == [{"file": "clips/a.mp4", "category": "music"}]


def test_the_corpus_features_are_cached_and_read_back(tmp_path: Path) -> None:
    info = synthetic_corpus(tmp_path, videos=4, topics=2, seconds=0.5, series_per_topic=1)
    assert info.out_dir == tmp_path / "synthetic-4-2-0.5-s1" and len(info.videos) == 4
    first = corpus_features(info, tmp_path)
    cached = sorted((tmp_path / "features").rglob("*.npz"))
    assert len(cached) == 4
    again = cached_features(info.out_dir / info.videos[0].file, tmp_path)
    np.testing.assert_array_equal(again.visual, first[0].visual)
    assert sorted((tmp_path / "features").rglob("*.npz")) == cached

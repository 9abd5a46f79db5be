"""The ``content`` extractor on synthetic frames and audio, and the feature file format."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from recsys.features import (
    FeatureError,
    VideoFeatures,
    available_extractors,
    get_extractor,
    pool_sequence,
)
from recsys.features.content_audio import audio_descriptors, estimate_tempo
from recsys.features.content_visual import (
    HUE_BINS,
    ORIENT_BINS,
    SAT_BINS,
    VAL_BINS,
    hsv_bins,
    orientation_bins,
    rgb_to_hsv,
    visual_descriptors,
)
from tests.features.helpers import decoded, solid_frames, tone


def test_hsv_matches_colorsys() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 1, size=(50, 3)).astype(np.float32)
    ours = rgb_to_hsv(pixels)
    expected = np.array([colorsys.rgb_to_hsv(*p) for p in pixels])
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_integer_hsv_bins_match_float_hsv() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, size=(4000, 3), dtype=np.uint8)
    pixels[:10] = [[0, 0, 0], [255, 255, 255], [7, 7, 7], [255, 0, 0], [0, 255, 0]] * 2
    hue_bin, sat, sat_bin, val_bin = hsv_bins(pixels)
    hsv = rgb_to_hsv(pixels / 255.0)
    np.testing.assert_allclose(sat, hsv[:, 1], atol=1e-6)
    for ours, channel, bins in (
        (hue_bin, 0, HUE_BINS),
        (sat_bin, 1, SAT_BINS),
        (val_bin, 2, VAL_BINS),
    ):
        expected = np.minimum((hsv[:, channel] * bins).astype(int), bins - 1)
        assert np.mean(ours == expected) > 0.999  # only float ties at bin edges may differ


def test_orientation_bins_match_arctan2() -> None:
    rng = np.random.default_rng(2)
    gx, gy = rng.normal(size=(2, 5000)).astype(np.float32)
    angle = np.arctan2(gy, gx) % np.pi
    expected = np.minimum((angle / np.pi * ORIENT_BINS).astype(int), ORIENT_BINS - 1)
    assert np.mean(orientation_bins(gx, gy) == expected) > 0.999


def test_tempo_of_a_click_track_and_of_silence() -> None:
    frame_rate = 16000 / 256
    onset = np.zeros(int(6 * frame_rate), dtype=np.float32)
    onset[:: int(round(frame_rate * 60 / 100))] = 5.0  # a click every 0.6 s: 100 BPM
    assert abs(estimate_tempo(onset, frame_rate) - 100) < 5
    assert np.isfinite(estimate_tempo(np.zeros(50, dtype=np.float32), frame_rate))


def test_colour_descriptors_separate_colours_and_match_same_colour() -> None:
    red = visual_descriptors(solid_frames((220, 20, 20)))
    red2 = visual_descriptors(solid_frames((210, 30, 25)))
    blue = visual_descriptors(solid_frames((20, 20, 220)))
    assert red.shape == (8, red.shape[1]) and np.isfinite(red).all()
    assert np.linalg.norm(red[0] - red2[0]) < np.linalg.norm(red[0] - blue[0]) / 3


def test_motion_is_zero_for_still_frames_and_positive_for_moving_ones() -> None:
    still = solid_frames((100, 100, 100))
    moving = still.copy()
    for i in range(moving.shape[0]):
        moving[i, :, 4 * i : 4 * i + 4] = 255  # a bar sweeping right
    motion_column = -5  # the overall frame difference precedes the 2x2 grid
    assert np.allclose(visual_descriptors(still)[:, motion_column], 0.0)
    assert (visual_descriptors(moving)[:-1, motion_column] > 0.01).all()


def test_edges_orientation_histogram_tells_stripes_apart() -> None:
    size = 32
    vertical = np.zeros((2, size, size, 3), dtype=np.uint8)
    vertical[:, :, ::4] = 255
    horizontal = vertical.transpose(0, 2, 1, 3).copy()
    v, h = visual_descriptors(vertical), visual_descriptors(horizontal)
    assert np.linalg.norm(v[0] - h[0]) > 0.5


def test_audio_windows_follow_duration_and_separate_sounds() -> None:
    low = audio_descriptors(tone(220, seconds=3.0), 16000)
    low2 = audio_descriptors(tone(230, seconds=3.0), 16000)
    noise = audio_descriptors(
        np.random.default_rng(0).normal(0, 0.3, 48000).astype(np.float32), 16000
    )
    assert low.shape[0] == 3 and np.isfinite(low).all()
    assert audio_descriptors(tone(220, seconds=0.2), 16000).shape[0] == 1
    assert np.linalg.norm(low.mean(0) - low2.mean(0)) < np.linalg.norm(low.mean(0) - noise.mean(0))


def test_content_extractor_pools_sequences_and_handles_silence() -> None:
    extractor = get_extractor("content")
    frames, audio = solid_frames((50, 90, 200)), tone(440, 2.0)
    with_audio = extractor.extract(decoded(frames, audio))
    silent = extractor.extract(decoded(frames))
    # the extractor is exactly its visual half and its audio half side by side
    np.testing.assert_array_equal(with_audio.visual_seq, visual_descriptors(frames))
    np.testing.assert_array_equal(with_audio.audio_seq, audio_descriptors(audio, 16000))
    assert with_audio.extractor == "content" and with_audio.extractor_version == extractor.version
    np.testing.assert_allclose(with_audio.visual, pool_sequence(with_audio.visual_seq))
    assert with_audio.audio is not None and with_audio.audio_seq is not None
    assert with_audio.audio_seq.shape[0] == 2
    assert silent.audio is None and silent.audio_seq is None
    np.testing.assert_allclose(silent.visual, with_audio.visual)


def test_feature_files_round_trip_without_pickle(tmp_path) -> None:
    extractor = get_extractor("content")
    for features in (
        extractor.extract(decoded(solid_frames((1, 2, 3)), tone(300, 1.0))),
        extractor.extract(decoded(solid_frames((1, 2, 3)))),
    ):
        for name in ("f.safetensors", "f.npz"):
            path = tmp_path / name
            features.save(path)
            loaded = VideoFeatures.load(path)
            assert loaded.extractor_version == features.extractor_version
            assert loaded.info == features.info
            np.testing.assert_array_equal(loaded.visual_seq, features.visual_seq)
            assert (loaded.audio is None) == (features.audio is None)
        with np.load(tmp_path / "f.npz", allow_pickle=False) as data:
            assert all(data[key].dtype != object for key in data.files)
    for name in ("bad.npz", "bad.safetensors"):
        (tmp_path / name).write_bytes(b"not a feature file")
        with pytest.raises(FeatureError, match=name):
            VideoFeatures.load(tmp_path / name)


def test_cnn_extractor_keeps_raw_inputs() -> None:
    features = get_extractor("cnn").extract(decoded(solid_frames((9, 9, 9), size=112), tone(200)))
    assert features.visual_seq.shape == (8, 3, 32, 32) and features.visual_seq.dtype == np.uint8
    assert features.audio_seq is not None and features.audio_seq.shape[1:] == (64, 64)
    assert features.audio_seq.shape[0] == 3


def test_registry_names_and_unknown_extractor() -> None:
    names = available_extractors()
    assert "content" in names and "cnn" in names and "torchvision:resnet18" in names
    assert get_extractor("content") is get_extractor("content")
    with pytest.raises(FeatureError, match="unknown feature extractor 'nope'"):
        get_extractor("nope")

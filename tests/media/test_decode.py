"""recsys.media on tiny videos written by the tests themselves (known frames, known tones)."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest

from recsys import media
from recsys.errors import UserError
from recsys.media.limits import run_isolated
from recsys.synth import write_bad_inputs, write_test_video
from recsys.synth.badfiles import AWKWARD, BROKEN


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_bad_inputs(tmp_path_factory.mktemp("bad"))


def test_probe_reports_stream_facts(tmp_path: Path) -> None:
    path = write_test_video(tmp_path / "a.mp4", seconds=2.0, width=64, height=48, fps=12)
    info = media.probe(path)
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (64, 48)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    assert info.fps == pytest.approx(12.0)
    assert info.duration_s == pytest.approx(2.0, abs=0.1)
    assert info.rotation == 0
    assert info.size_bytes == path.stat().st_size


def test_uniform_samples_are_the_right_frames(tmp_path: Path) -> None:
    # Frame i has red = i * 16 (mod 256); 48 frames at 12 fps = 4 s; 4 samples hit the slice
    # centres 0.5, 1.5, 2.5, 3.5 s = frames 6, 18, 30, 42.
    path = write_test_video(tmp_path / "idx.mp4", seconds=4.0, fps=12, gop=12)
    sampled = media.sample_frames(path, num_frames=4, size=32)
    assert sampled.frames.shape == (4, 32, 32, 3) and sampled.frames.dtype == np.uint8
    red = sampled.frames[:, :, :, 0].astype(float).mean(axis=(1, 2))
    expected = [(i * 16) % 256 for i in (6, 18, 30, 42)]
    assert np.allclose(red, expected, atol=8), (red, expected)
    assert np.allclose(sampled.timestamps, [0.5, 1.5, 2.5, 3.5], atol=1 / 12 + 1e-6)
    assert sampled.timestamps.dtype == np.float64


def test_frames_are_resized_and_centre_cropped(tmp_path: Path) -> None:
    # Green grows left to right over the full width; a centre crop of a 2:1 frame keeps the
    # middle half, so green spans about 64..192 instead of 0..255.
    path = write_test_video(tmp_path / "wide.mp4", width=128, height=64, seconds=0.5)
    frames = media.sample_frames(path, num_frames=2, size=16).frames
    green = frames[0, 8, :, 1].astype(int)
    assert frames.shape == (2, 16, 16, 3)
    assert 50 < green[0] < 90 and 165 < green[-1] < 205
    assert np.all(np.diff(green) >= -3)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_honoured(tmp_path: Path, rotation: int) -> None:
    def left_half_red(_i: int, _t: float) -> np.ndarray:
        img = np.zeros((32, 32, 3), dtype=np.uint8)
        img[:, :16, 0] = 255
        return img

    path = write_test_video(
        tmp_path / "rot.mp4", width=32, height=32, rotation=rotation, frame_fn=left_half_red
    )
    assert media.probe(path).rotation == rotation
    frame = media.sample_frames(path, num_frames=1, size=32).frames[0, :, :, 0].astype(int)
    # Red starts on the left; rotating counter-clockwise by 90 moves it to the bottom.
    halves = {
        "left": frame[:, :16].mean(),
        "right": frame[:, 16:].mean(),
        "top": frame[:16].mean(),
        "bottom": frame[16:].mean(),
    }
    red_side = {90: "bottom", 180: "right", 270: "top"}[rotation]
    assert halves[red_side] > 200, halves
    opposite = {"bottom": "top", "right": "left", "top": "bottom"}[red_side]
    assert halves[opposite] < 60, halves


def _decoded_for(
    tmp_path: Path, seconds: float, name: str, exact: bool = True
) -> media.SampledFrames:
    path = tmp_path / name
    if not path.exists():
        write_test_video(path, seconds=seconds, width=32, height=24, fps=12, gop=24, audio=False)
    return media.sample_frames(path, num_frames=16, size=16, exact=exact)


def test_sampling_cost_does_not_grow_with_length(tmp_path: Path) -> None:
    short = _decoded_for(tmp_path, 20.0, "short.mp4")  # 240 frames
    long = _decoded_for(tmp_path, 200.0, "long.mp4")  # 2400 frames
    gop = 24
    # At most about one keyframe interval per sample, whatever the duration.
    assert short.decoded_frames <= 16 * (gop + 1)
    assert long.decoded_frames <= 16 * (gop + 1)
    assert long.decoded_frames < 2400 / 4
    assert long.seeks >= 8  # sparse samples are reached by seeking
    assert long.frames.shape == (16, 16, 16, 3)
    assert np.all(np.diff(long.timestamps) > 0)


@pytest.mark.parametrize("suffix", [".ts", ".mkv"])
def test_containers_without_a_full_index(tmp_path: Path, suffix: str) -> None:
    # MPEG-TS has no index and seeks imprecisely; Matroska builds its index while reading.
    path = write_test_video(
        tmp_path / f"long{suffix}", seconds=200.0, width=32, height=24, fps=12, gop=24
    )
    sampled = media.sample_frames(path, num_frames=16, size=16)
    assert sampled.strategy == "adaptive"
    assert sampled.decoded_frames <= 16 * (24 + 1)
    targets = (np.arange(16) + 0.5) * 200.0 / 16
    assert np.all(np.abs(sampled.timestamps - targets) <= 1 / 12 + 1e-6)


def test_keyframe_fast_path_for_sparse_samples(tmp_path: Path) -> None:
    # 200 s, keyframe every 2 s, samples every 12.5 s: each sample snaps to a keyframe.
    fast = _decoded_for(tmp_path, 200.0, "long.mp4", exact=False)
    exact = _decoded_for(tmp_path, 200.0, "long.mp4", exact=True)
    assert fast.decoded_frames <= 2 * 16 < exact.decoded_frames
    assert "keyframes" in fast.strategy
    targets = (np.arange(16) + 0.5) * 200.0 / 16
    assert np.all(np.abs(fast.timestamps - targets) <= 200.0 / 16 / 4 + 1e-6)
    assert np.all(np.abs(exact.timestamps - targets) <= 1 / 12 + 1e-6)
    assert len(set(fast.timestamps.tolist())) == 16


def test_dense_samples_decode_sequentially(tmp_path: Path) -> None:
    # One keyframe every 120 frames and 16 samples in 48 frames: seeking cannot help.
    path = write_test_video(tmp_path / "dense.mp4", seconds=4.0, fps=12, gop=120, audio=False)
    sampled = media.sample_frames(path, num_frames=16, size=16)
    assert sampled.seeks == 0
    assert sampled.decoded_frames <= 48


def test_variable_frame_rate_timestamps(tmp_path: Path) -> None:
    path = write_test_video(tmp_path / "vfr.mp4", seconds=3.0, variable_frame_rate=True, seed=3)
    sampled = media.sample_frames(path, num_frames=8, size=16)
    assert np.all(np.diff(sampled.timestamps) >= 0)
    assert 0.0 <= sampled.timestamps[0] < 0.6 and 2.4 < sampled.timestamps[-1] <= 3.0


def test_audio_is_mono_16k_float32(tmp_path: Path) -> None:
    def tone(t: np.ndarray) -> np.ndarray:
        return (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)

    path = write_test_video(tmp_path / "tone.mp4", seconds=2.0, sample_rate=44100, audio_fn=tone)
    audio = media.decode_audio(path, sample_rate=16000)
    assert audio is not None and audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 32000) < 2048  # AAC adds up to two frames of padding
    spectrum = np.abs(np.fft.rfft(audio[4000:20000]))
    peak_hz = np.argmax(spectrum) * 16000 / 16000
    assert abs(peak_hz - 1000.0) < 5


def test_audio_budget_reads_windows(tmp_path: Path) -> None:
    path = write_test_video(tmp_path / "long_audio.mp4", seconds=20.0, width=16, height=16, fps=2)
    audio = media.decode_audio(path, max_seconds=4.0)
    assert audio is not None
    assert abs(audio.size - 4 * 16000) < 1024


def test_no_audio_track_gives_none(tmp_path: Path) -> None:
    path = write_test_video(tmp_path / "silent.mp4", audio=False)
    assert media.decode_audio(path) is None
    decoded = media.decode_video(path, num_frames=4, size=16)
    assert decoded.audio is None and decoded.frames.shape == (4, 16, 16, 3)


def test_decode_video_bundles_everything(tmp_path: Path) -> None:
    path = write_test_video(tmp_path / "all.mp4", seconds=1.0)
    decoded = media.decode_video(path, num_frames=5, size=24, timeout_s=30)
    assert decoded.frames.shape == (5, 24, 24, 3)
    assert decoded.timestamps.shape == (5,)
    assert decoded.audio is not None and decoded.sample_rate == 16000
    assert decoded.probe.has_audio and decoded.probe.width == 64


def test_content_hash_is_sha256(tmp_path: Path) -> None:
    path = write_test_video(tmp_path / "h.mp4")
    assert media.content_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(media.MediaNotFound):
        media.content_hash(tmp_path / "nope.mp4")


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_raise_typed_errors(bad_inputs: dict[str, Path], name: str) -> None:
    path = bad_inputs[name]
    with pytest.raises(media.MediaError) as caught:
        media.decode_video(path, num_frames=4, size=16, timeout_s=30)
    error = caught.value
    assert BROKEN[name] in error.reason.lower()
    assert str(path) in str(error) and error.reason in str(error)
    assert isinstance(error, UserError)  # the fix is in the file: the CLI prints one line
    expected = {
        "zero_byte": media.CorruptMedia,
        "random_bytes": media.UnsupportedMedia,
        "truncated": media.CorruptMedia,
        "truncated_faststart": media.CorruptMedia,
        "audio_only": media.NoVideoStream,
    }[name]
    assert type(error) is expected


@pytest.mark.parametrize("name", AWKWARD)
def test_awkward_files_decode(bad_inputs: dict[str, Path], name: str) -> None:
    decoded = media.decode_video(bad_inputs[name], num_frames=16, size=32, timeout_s=30)
    assert decoded.frames.shape == (16, 32, 32, 3)
    assert np.all(np.isfinite(decoded.timestamps))


def test_audio_only_file_still_has_audio(bad_inputs: dict[str, Path]) -> None:
    info = media.probe(bad_inputs["audio_only"])
    assert not info.has_video and info.has_audio
    assert media.decode_audio(bad_inputs["audio_only"]) is not None
    with pytest.raises(media.NoVideoStream):
        media.sample_frames(bad_inputs["audio_only"])


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    with pytest.raises(media.MediaNotFound, match="file not found"):
        media.probe(tmp_path / "missing.mp4")
    with pytest.raises(media.MediaNotFound, match="directory"):
        media.decode_video(tmp_path)


def test_error_survives_pickling() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(media.CorruptMedia("/x.mp4", "broken")))
    assert isinstance(error, media.CorruptMedia) and str(error) == "/x.mp4: broken"


@pytest.mark.parametrize("isolate", [False, True])
def test_time_limit_stops_decoding(tmp_path: Path, isolate: bool) -> None:
    path = write_test_video(tmp_path / "slow.mp4", seconds=4.0, width=320, height=240)
    with pytest.raises(media.DecodeTimeout) as caught:
        media.decode_video(path, num_frames=16, size=32, timeout_s=1e-6, isolate=isolate)
    assert "time limit" in caught.value.reason and str(path) in str(caught.value)


def test_hard_limit_kills_a_stuck_worker(tmp_path: Path) -> None:
    # time.sleep stands in for a decoder stuck inside one C call: no deadline check can run.
    started = time.monotonic()
    with pytest.raises(media.DecodeTimeout, match="killed"):
        run_isolated(time.sleep, (60,), path=tmp_path / "stuck.mp4", timeout_s=0.1)
    assert time.monotonic() - started < 30
    # The pool replaces the killed worker: the next decode works.
    path = write_test_video(tmp_path / "ok.mp4")
    assert media.sample_frames(path, 2, 8, timeout_s=30).frames.shape == (2, 8, 8, 3)


def test_worker_crash_becomes_corrupt_media(tmp_path: Path) -> None:
    with pytest.raises(media.CorruptMedia, match="crashed"):
        run_isolated(os._exit, (3,), path=tmp_path / "crash.mp4", timeout_s=30)


@pytest.mark.parametrize("faststart", [False, True])
def test_damaged_files_fail_typed_or_decode(tmp_path: Path, faststart: bool) -> None:
    """Seeded random byte damage: every outcome is frames of the right shape or a MediaError."""
    original = write_test_video(
        tmp_path / "base.mp4", seconds=2.0, gop=6, faststart=faststart
    ).read_bytes()
    rng = np.random.default_rng(5)
    outcomes = {"ok": 0, "error": 0}
    for i in range(20):
        data = bytearray(original)
        for _ in range(int(rng.integers(1, 40))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        path = tmp_path / f"damaged{i}.mp4"
        path.write_bytes(bytes(data))
        try:
            decoded = media.decode_video(path, num_frames=4, size=16, isolate=False)
        except media.MediaError as error:
            assert str(path) in str(error) and error.reason
            outcomes["error"] += 1
        else:
            assert decoded.frames.shape == (4, 16, 16, 3)
            outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0

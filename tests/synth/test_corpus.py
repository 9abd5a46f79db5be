"""The synthetic corpus: determinism, topic structure, real files, the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys import media
from recsys.synth import generate_corpus
from recsys.synth.corpus import (
    SeriesMark,
    VisualStyle,
    _hsv,
    _mark_mask,
    _render_frames,
    audio_style_of,
    visual_style_of,
)

SMALL = {"width": 32, "height": 24, "fps": 6.0}


def _corpus(out: Path, seed: int, videos: int = 12, topics: int = 4):  # type: ignore[no-untyped-def]
    return generate_corpus(out, videos, topics, 1.0, seed, **SMALL)


def test_same_seed_same_metadata_bytes(tmp_path: Path) -> None:
    a = _corpus(tmp_path / "a", seed=7)
    b = _corpus(tmp_path / "b", seed=7)
    c = _corpus(tmp_path / "c", seed=8)
    assert a.manifest.read_bytes() == b.manifest.read_bytes()
    assert a.cowatch.read_bytes() == b.cowatch.read_bytes()
    assert a.topic_of == b.topic_of
    assert (a.manifest.read_bytes(), a.cowatch.read_bytes()) != (
        c.manifest.read_bytes(),
        c.cowatch.read_bytes(),
    )


def test_no_single_modality_identifies_a_topic() -> None:
    for topics in (2, 4, 5, 8):
        styles = [(visual_style_of(t, topics), audio_style_of(t, topics)) for t in range(topics)]
        assert len(set(styles)) == topics  # both together identify the topic
        for t in range(topics):
            visual_twins = [u for u in range(topics) if styles[u][0] == styles[t][0]]
            audio_twins = [u for u in range(topics) if styles[u][1] == styles[t][1]]
            # every topic shares at least one of its modalities with another topic
            assert len(visual_twins) > 1 or len(audio_twins) > 1


def test_manifest_and_files(tmp_path: Path) -> None:
    info = generate_corpus(tmp_path, 20, 4, 1.0, 3, silent_fraction=0.3, **SMALL)
    with info.manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", "video_id", "title", "category", "channel"]
    assert [r["video_id"] for r in rows] == [v.video_id for v in info.videos]
    assert {r["category"] for r in rows} == set(info.topics)
    counts = np.bincount([v.topic for v in info.videos], minlength=4)
    assert counts.min() == counts.max() == 5  # balanced topics
    silent = 0
    for video in info.videos:
        probe = media.probe(tmp_path / video.file)
        assert probe.video_codec == "h264" and (probe.width, probe.height) == (32, 24)
        assert probe.has_audio == video.has_audio
        if probe.has_audio:
            assert probe.audio_codec == "aac"
        silent += not video.has_audio
    assert 0 < silent < 20


def test_cowatch_follows_topics(tmp_path: Path) -> None:
    info = generate_corpus(tmp_path, 40, 4, 0.5, 5, width=16, height=16, fps=4.0)
    topic = info.topic_of
    with info.cowatch.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(float(r["weight"]) > 0 for r in rows)
    assert all(r["video_a"] < r["video_b"] for r in rows)
    same = sum(topic[r["video_a"]] == topic[r["video_b"]] for r in rows)
    assert same / len(rows) > 0.5  # mostly same-topic, with noise
    assert same < len(rows)


def test_topic_styles_show_in_pixels_and_sound(tmp_path: Path) -> None:
    info = generate_corpus(tmp_path, 16, 4, 1.0, 11, silent_fraction=0.0, **SMALL)
    colour: dict[int, list[np.ndarray]] = {}
    sound: dict[int, list[np.ndarray]] = {}
    for video in info.videos:
        decoded = media.decode_video(tmp_path / video.file, num_frames=4, size=16)
        colour.setdefault(info.visual_style[video.topic], []).append(
            decoded.frames.reshape(-1, 3).mean(0)
        )
        assert decoded.audio is not None
        # spectral profile: energy in 64 bands below 4 kHz, unit length
        spectrum = np.abs(np.fft.rfft(decoded.audio, n=16000))[:4096].reshape(64, -1).sum(1)
        sound.setdefault(info.audio_style[video.topic], []).append(
            spectrum / np.linalg.norm(spectrum)
        )
    # videos sharing a visual (audio) style look (sound) more alike than across styles
    for groups in (colour, sound):
        means = {s: np.mean(c, axis=0) for s, c in groups.items()}
        within = np.mean([np.linalg.norm(c - means[s]) for s, cs in groups.items() for c in cs])
        between = np.linalg.norm(means[0] - means[1])
        assert between > within


def test_cli_synth(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "synth",
            str(tmp_path / "out"),
            "--count",
            "6",
            "--topics",
            "3",
            "--seconds",
            "0.5",
            "--seed",
            "1",
            "--width",
            "32",
            "--height",
            "24",
            "--fps",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "manifest.csv").is_file()
    assert len(list((tmp_path / "out" / "videos").glob("*.mp4"))) == 6


def test_series_are_balanced_inside_topics(tmp_path: Path) -> None:
    info = generate_corpus(tmp_path, 24, 2, 0.5, 4, series_per_topic=3, **SMALL)
    assert info.series_per_topic == 3
    for video in info.videos:
        assert video.series // 3 == video.topic  # a series lies inside its topic
    counts = np.bincount([v.series for v in info.videos], minlength=6)
    assert counts.min() == counts.max() == 4


def test_a_watermark_changes_only_its_own_pixels() -> None:
    style = VisualStyle.draw(np.random.default_rng(0))
    mark = SeriesMark(corner=3, hue=0.3, size=0.1)
    plain = _render_frames(style, np.random.default_rng(1), 80, 60)
    marked = _render_frames(style, np.random.default_rng(1), 80, 60, mark)
    inside = _mark_mask(mark, 80, 60)
    assert inside[-20:, -25:].any() and not inside[:30].any()  # bottom right corner
    for k in range(3):
        a, b = plain(k / 6).astype(int), marked(k / 6).astype(int)
        assert np.array_equal(a[~inside], b[~inside])  # the same draws everywhere else
        assert np.abs(a[inside] - b[inside]).mean() > 10


def test_videos_of_a_series_carry_its_watermark(tmp_path: Path) -> None:
    info = generate_corpus(tmp_path, 12, 2, 0.5, 6, series_per_topic=2, width=96, height=72)
    for video in info.videos:
        mark = SeriesMark.draw(np.random.default_rng([6, 6, video.series]), 0.1)
        frames = media.decode_video(tmp_path / video.file, num_frames=2).frames.astype(float)
        inside = _mark_mask(mark, frames.shape[2], frames.shape[1])
        inside[1:-1, 1:-1] &= inside[:-2, 1:-1] & inside[2:, 1:-1]  # away from its top and
        inside[1:-1, 1:-1] &= inside[1:-1, :-2] & inside[1:-1, 2:]  # side edges (compression)
        colour = frames[:, inside].mean(axis=(0, 1))
        assert np.abs(colour - _hsv(mark.hue, 0.8, 0.9) * 255).max() < 40

"""Concatenating videos into one file: the test input of span localisation (which part of a
video shows what). Each part keeps its own duration; frames are resized to one size, audio is
resampled to mono at one rate, so the result plays like an edited upload."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from recsys.synth.writer import VideoWriter


@dataclass
class Part:
    """Where one input landed in the concatenation (seconds)."""

    source: Path
    start_s: float
    end_s: float


def _frames_and_audio(
    path: Path, width: int, height: int, sample_rate: int
) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Every frame (RGB, resized), the mono audio and the duration of the file at ``path``."""
    frames, times, chunks = [], [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(width=width, height=height, format="rgb24"))
            times.append(float(frame.time or 0.0))
    with av.open(str(path)) as container:
        if container.streams.audio:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for piece in container.decode(audio=0):
                chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(piece)]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    if not frames:
        raise ValueError(f"{path} has no video frames")
    order = np.argsort(times, kind="stable")
    step = float(np.median(np.diff(np.sort(times)))) if len(times) > 1 else 0.04
    duration = float(max(times) - min(times)) + step
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return [frames[i] for i in order], audio, duration


def concatenate_videos(
    paths: Sequence[Path | str],
    out: Path | str,
    *,
    width: int = 320,
    height: int = 180,
    fps: float = 12.0,
    sample_rate: int = 16000,
) -> list[Part]:
    """Write the videos at ``paths`` one after the other to ``out`` (H.264/AAC); returns where
    each one lies in the result. A part without audio is silence in the result."""
    parts: list[Part] = []
    tracks: list[np.ndarray] = []
    with VideoWriter(out, width=width, height=height, fps=fps, sample_rate=sample_rate) as writer:
        offset = 0.0
        for path in paths:
            frames, audio, duration = _frames_and_audio(Path(path), width, height, sample_rate)
            count = max(1, int(round(duration * fps)))
            picks = np.minimum((np.arange(count) * len(frames)) // count, len(frames) - 1)
            for i in picks:
                writer.add_frame(frames[int(i)])
            samples = int(round(count / fps * sample_rate))
            track = np.zeros(samples, np.float32)
            track[: min(samples, audio.size)] = audio[:samples]
            tracks.append(track)
            parts.append(Part(Path(path), offset, offset + count / fps))
            offset += count / fps
        writer.add_audio(np.concatenate(tracks))  # AAC wants whole frames until the last
    return parts

"""Synthetic decoded videos (numpy frames and audio) for extractor tests."""

from __future__ import annotations

import numpy as np

from recsys.media import DecodedVideo, ProbeResult


def decoded(
    frames: np.ndarray, audio: np.ndarray | None = None, sample_rate: int = 16000
) -> DecodedVideo:
    probe = ProbeResult(
        path="synthetic.mp4",
        size_bytes=0,
        duration_s=float(frames.shape[0]),
        fps=1.0,
        width=frames.shape[2],
        height=frames.shape[1],
        rotation=0,
        video_codec="h264",
        audio_codec="aac" if audio is not None else None,
        has_video=True,
        has_audio=audio is not None,
    )
    return DecodedVideo(
        frames=frames,
        timestamps=np.arange(frames.shape[0], dtype=np.float64),
        audio=audio,
        sample_rate=sample_rate,
        probe=probe,
    )


def solid_frames(rgb: tuple[int, int, int], n: int = 8, size: int = 32) -> np.ndarray:
    frames = np.zeros((n, size, size, 3), dtype=np.uint8)
    frames[...] = rgb
    return frames


def tone(freq: float, seconds: float = 3.0, sample_rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)

"""Writing real encoded test videos (H.264 video + AAC audio in MP4) with PyAV.

``write_test_video`` makes one small file with exactly the properties a test needs (duration,
size, frame rate, audio or not, rotation metadata, variable frame rate, keyframe interval);
``VideoWriter`` is the streaming writer underneath, also used by the corpus generator and the
decode benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FrameFn = Callable[[int, float], np.ndarray]
AudioFn = Callable[[np.ndarray], np.ndarray]

#: AAC encodes in frames of this many samples.
_AAC_FRAME = 1024


def _even(n: int) -> int:
    """yuv420p needs even sizes; 1x1 becomes 2x2."""
    return max(2, n + (n % 2))


class VideoWriter:
    """Streaming MP4 writer: ``add_frame`` RGB uint8 images, ``add_audio`` float samples."""

    def __init__(
        self,
        path: str | Path,
        *,
        width: int | None,
        height: int | None,
        fps: float = 12.0,
        sample_rate: int | None = 16000,
        rotation: int = 0,
        gop: int | None = None,
        crf: int = 28,
        preset: str = "ultrafast",
        millisecond_pts: bool = False,
        faststart: bool = False,
        threads: int = 1,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        muxer_options = {"movflags": "faststart"} if faststart else {}
        # The container format follows the suffix (.mp4, .mkv, .ts, ...); MP4 by default.
        muxer = None if self.path.suffix.lower() in {".mkv", ".ts", ".mov", ".webm"} else "mp4"
        self.container = av.open(str(self.path), mode="w", format=muxer, options=muxer_options)
        self.video = None
        self.audio = None
        self.fps = fps
        self.millisecond_pts = millisecond_pts
        self.frames_written = 0
        self.samples_written = 0
        if width is not None and height is not None:
            rate = Fraction(fps).limit_denominator(1001)
            stream = self.container.add_stream("libx264", rate=rate)
            stream.width = _even(width)
            stream.height = _even(height)
            stream.pix_fmt = "yuv420p"
            options: dict[str, str] = {"preset": preset, "crf": str(crf), "threads": str(threads)}
            if gop is not None:
                options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
            stream.options = dict(options)  # type: ignore[assignment]
            if millisecond_pts:
                stream.codec_context.time_base = Fraction(1, 1000)
            if rotation:
                stream.set_display_rotation(rotation)
            self.video = stream
        if sample_rate is not None:
            audio = self.container.add_stream("aac", rate=sample_rate)
            audio.layout = "mono"
            audio.options = {"aac_coder": "fast"}  # the default two-loop search is ~3x slower
            self.audio = audio
            self.sample_rate = sample_rate

    def add_frame(self, rgb: np.ndarray, time_s: float | None = None) -> None:
        """Append one RGB uint8 (H, W, 3) image; ``time_s`` only with ``millisecond_pts``."""
        assert self.video is not None, "writer has no video stream"
        h, w = self.video.height, self.video.width
        if rgb.shape[0] != h or rgb.shape[1] != w:
            padded = np.zeros((h, w, 3), dtype=np.uint8)
            padded[: rgb.shape[0], : rgb.shape[1]] = rgb[:h, :w]
            rgb = padded
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype=np.uint8), "rgb24")
        if self.millisecond_pts:
            t = time_s if time_s is not None else self.frames_written / self.fps
            frame.pts = int(round(t * 1000))
            frame.time_base = Fraction(1, 1000)
        else:
            frame.pts = self.frames_written
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames_written += 1

    def add_audio(self, samples: np.ndarray) -> None:
        """Append mono float samples in [-1, 1]."""
        assert self.audio is not None, "writer has no audio stream"
        samples = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
        for start in range(0, samples.size, _AAC_FRAME):
            chunk = samples[start : start + _AAC_FRAME]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = self.samples_written
            self.samples_written += chunk.size
            for packet in self.audio.encode(frame):
                self.container.mux(packet)

    def close(self) -> None:
        for stream in (self.video, self.audio):
            if stream is not None:
                for packet in stream.encode(None):
                    self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def index_frame(width: int, height: int, seed: int = 0) -> FrameFn:
    """Frames whose colour encodes their index: frame i is flat grey ``(i * 16) % 256``-ish in
    red with a horizontal gradient in green, so tests can tell which frame they got; the blue
    level depends on ``seed``, so videos of different seeds are different files."""
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    blue = (128 + 37 * seed) % 256

    def make(i: int, _t: float) -> np.ndarray:
        img = np.empty((height, width, 3), dtype=np.uint8)
        img[..., 0] = (i * 16) % 256
        img[..., 1] = gradient.astype(np.uint8)
        img[..., 2] = blue
        return img

    return make


def sine_audio(frequency: float = 440.0, sample_rate: int = 16000) -> AudioFn:
    def make(t: np.ndarray) -> np.ndarray:
        return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)

    return make


def write_test_video(
    path: str | Path,
    *,
    seconds: float = 1.0,
    width: int = 64,
    height: int = 48,
    fps: float = 12.0,
    audio: bool = True,
    video: bool = True,
    rotation: int = 0,
    variable_frame_rate: bool = False,
    gop: int | None = None,
    sample_rate: int = 16000,
    frames: int | None = None,
    frame_fn: FrameFn | None = None,
    audio_fn: AudioFn | None = None,
    seed: int = 0,
    faststart: bool = False,
) -> Path:
    """Write one small video (MP4; Matroska/MPEG-TS/MOV by suffix) and return its path.

    ``frames`` overrides the frame count (e.g. 1 for a one-frame video); ``rotation`` writes a
    display-matrix rotation (counter-clockwise degrees, as ``probe`` reports it);
    ``variable_frame_rate`` spaces frames irregularly (millisecond timestamps, seeded);
    ``video=False`` writes an audio-only file; ``faststart`` puts the index (moov) before the
    media data, as streaming-friendly files do. Sizes are rounded up to even numbers (H.264).
    """
    count = frames if frames is not None else max(1, int(round(seconds * fps)))
    rng = np.random.default_rng(seed)
    with VideoWriter(
        path,
        width=width if video else None,
        height=height if video else None,
        fps=fps,
        sample_rate=sample_rate if audio else None,
        rotation=rotation,
        gop=gop,
        millisecond_pts=variable_frame_rate,
        faststart=faststart,
    ) as writer:
        if video:
            make = frame_fn or index_frame(_even(width), _even(height), seed)
            if variable_frame_rate:
                gaps = rng.uniform(0.3, 1.7, size=count) / fps
                times = np.concatenate([[0.0], np.cumsum(gaps)[:-1]])
                times *= seconds / max(times[-1] + 1.0 / fps, 1e-9) if count > 1 else 1.0
            else:
                times = np.arange(count) / fps
            for i, t in enumerate(times):
                writer.add_frame(make(i, float(t)), float(t))
        if audio:
            t = np.arange(int(round(seconds * sample_rate))) / sample_rate
            writer.add_audio((audio_fn or sine_audio(440.0, sample_rate))(t))
    return Path(path)

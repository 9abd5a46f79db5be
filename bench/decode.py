"""Decode benchmark: stage-A sampling cost against video length and against a full decode.

Prints JSON:
* ``seconds_per_video`` to sample 16 frames (112x112) + audio (``decode_video``, in-process)
  from a 10 s and a 10 min synthetic 1280x720 H.264/AAC video (keyframe every 250 frames),
  and their ratio (goal: <= 3, i.e. cost does not grow with length);
* the same under the per-video time limit (decode in the killable worker process);
* the time the ``ffmpeg`` binary needs to decode the whole short video (the floor of a full
  decode), or, when ffmpeg is missing, a PyAV full sequential decode (``full_decode_tool``
  says which);
* the same comparison on a real clip from ../shared/data/real-av/clips when present.

Timings are medians of ``--repeats`` runs; the load average is printed beside them because on
a shared machine other work inflates every figure (compare ratios, not absolute seconds).

Usage: ``python bench/decode.py [--long-seconds 600] [--repeats 3] [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from recsys import media
from recsys.media.container import open_media
from recsys.media.frames import sample_open
from recsys.media.limits import Deadline
from recsys.media.probe import probe_open
from recsys.synth.workspace import REAL_AV_DIR


def make_video(
    path: Path,
    seconds: float,
    *,
    width: int = 1280,
    height: int = 720,
    fps: int = 25,
    gop: int = 250,
    sample_rate: int = 44100,
) -> Path:
    """A 720p H.264 + AAC file; frames come from a small precomputed loop (cheap to make)."""
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:height, 0:width]
    loop = []
    for k in range(fps):
        img = np.empty((height, width, 3), dtype=np.uint8)
        img[..., 0] = (xs + 8 * k) % 256
        img[..., 1] = (ys + 4 * k) % 256
        img[..., 2] = rng.integers(0, 64, size=(height, width), dtype=np.uint8)
        loop.append(av.VideoFrame.from_ndarray(img, "rgb24").reformat(format="yuv420p"))
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {
            "preset": "ultrafast",
            "crf": "30",
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
        }
        audio = container.add_stream("aac", rate=sample_rate)
        audio.layout = "mono"
        frames = int(seconds * fps)
        samples_per_frame = sample_rate // fps
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sample_rate) / sample_rate)).astype(
            np.float32
        )
        written = 0
        for i in range(frames):
            frame = loop[i % fps]
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
            while written < (i + 1) * samples_per_frame:
                start = written % (sample_rate - 1024)
                chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], "fltp", "mono")
                chunk.sample_rate = sample_rate
                chunk.pts = written
                written += 1024
                for packet in audio.encode(chunk):
                    container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
    tmp.rename(path)
    return path


def timed(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def sample_stats(path: Path) -> dict[str, object]:
    """Frames decoded and seeks made by one 16-frame sample (the work, not the time)."""
    deadline = Deadline(path, None)
    with open_media(path) as container:
        info = probe_open(path, container, path.stat().st_size, deadline)
    with open_media(path) as container:
        sampled = sample_open(path, container, info, 16, 112, deadline)
    return {
        "decoded_frames": sampled.decoded_frames,
        "seeks": sampled.seeks,
        "strategy": sampled.strategy,
    }


def full_decode(path: Path) -> tuple[str, float]:
    ffmpeg = shutil.which("ffmpeg")
    problem = "ffmpeg binary not installed"
    if ffmpeg:
        command = [ffmpeg, "-v", "error", "-nostdin", "-i", str(path), "-f", "null", "-"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode == 0:
            return "ffmpeg", time.perf_counter() - start
        problem = f"ffmpeg failed: {done.stderr.strip()[:200]}"
    start = time.perf_counter()
    with av.open(str(path)) as container:
        for stream in container.streams:
            stream.codec_context.thread_type = "AUTO"
        for _ in container.decode(*container.streams):
            pass
    return f"pyav-full-decode ({problem})", time.perf_counter() - start


def measure(path: Path, repeats: int) -> dict[str, object]:
    ours, decoded = timed(lambda: media.decode_video(path, 16, 112, 16000), repeats)
    isolated, _ = timed(lambda: media.decode_video(path, 16, 112, 16000, timeout_s=60), repeats)
    assert isinstance(decoded, media.DecodedVideo)
    tool, full = full_decode(path)
    return {
        "file": str(path),
        "duration_s": decoded.probe.duration_s,
        "size": [decoded.probe.width, decoded.probe.height],
        "seconds_per_video": round(ours, 4),
        "seconds_per_video_isolated": round(isolated, 4),
        "audio_seconds_decoded": None
        if decoded.audio is None
        else round(decoded.audio.size / 16000, 2),
        **sample_stats(path),
        "full_decode_tool": tool,
        "full_decode_seconds": round(full, 4),
        "ours_vs_full_decode": round(ours / full, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short-seconds", type=float, default=10.0)
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="Keep the generated videos here (reused on the next run).",
    )
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="recsys-bench-decode-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    short = make_video(workdir / f"short_{args.short_seconds:g}s.mp4", args.short_seconds)
    long = make_video(workdir / f"long_{args.long_seconds:g}s.mp4", args.long_seconds)
    generate_s = time.perf_counter() - started
    media.decode_video(short, 16, 112, timeout_s=60)  # start the worker outside the timings
    result: dict[str, object] = {
        "benchmark": "decode",
        "python": sys.version.split()[0],
        "pyav": av.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        "generate_seconds": round(generate_s, 1),
        "num_frames": 16,
        "frame_size": 112,
        "audio_max_seconds": media.DEFAULT_AUDIO_MAX_SECONDS,
        "short": measure(short, args.repeats),
        "long": measure(long, args.repeats),
    }
    ratio = result["long"]["seconds_per_video"] / result["short"]["seconds_per_video"]  # type: ignore[index]
    result["long_over_short_ratio"] = round(ratio, 3)
    result["ratio_goal"] = 3.0
    result["ratio_ok"] = ratio <= 3.0
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    real = REAL_AV_DIR / "clips"
    clips = sorted(real.glob("*.mp4")) if real.is_dir() else []
    result["real_clip"] = measure(clips[0], args.repeats) if clips else None
    print(json.dumps(result, indent=2))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

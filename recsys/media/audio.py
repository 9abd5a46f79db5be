"""Audio decoding to mono float32 at a fixed rate (FFmpeg's resampler via ``AudioResampler``).

With ``max_seconds`` a long track is not decoded whole: ``AUDIO_WINDOWS`` evenly spaced windows
that together last ``max_seconds`` are read by seeking and concatenated, so the audio cost for a
fixed budget does not grow with the video's length and the samples still cover all of it.
"""

from __future__ import annotations

from pathlib import Path

import av
import av.container
import numpy as np

from recsys.media.container import decode_tolerant, discard_others, ffmpeg_reason
from recsys.media.errors import CorruptMedia
from recsys.media.limits import Deadline
from recsys.media.probe import video_duration

#: Number of windows a ``max_seconds`` budget is split into for long tracks.
AUDIO_WINDOWS = 8


def _resampled(frame: av.AudioFrame, resampler: av.AudioResampler) -> list[np.ndarray]:
    return [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]


def _decode_range(
    path: str | Path,
    container: av.container.InputContainer,
    stream: av.audio.stream.AudioStream,
    sample_rate: int,
    deadline: Deadline,
    start: float | None,
    max_samples: int | None,
) -> list[np.ndarray]:
    """Decode from ``start`` (None: from the beginning) up to ``max_samples`` output samples."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    total = 0
    if start is not None:
        tb = float(stream.time_base) if stream.time_base else 1.0 / av.time_base
        container.seek(int(start / tb), stream=stream, backward=True, any_frame=False)
    try:
        for frame in decode_tolerant(container, stream, deadline.check):
            if start is not None and frame.time is not None and frame.time < start - 0.1:
                continue  # seek landed early
            for chunk in _resampled(frame, resampler):
                chunks.append(chunk)
                total += chunk.size
            if max_samples is not None and total >= max_samples:
                break
        else:
            for chunk in _resampled(None, resampler):  # type: ignore[arg-type]
                chunks.append(chunk)
    except av.error.FFmpegError as error:
        if not chunks:
            raise CorruptMedia(
                path, f"audio track cannot be decoded ({ffmpeg_reason(error)})"
            ) from None
    if max_samples is not None and chunks:
        joined = np.concatenate(chunks)[:max_samples]
        return [joined]
    return chunks


def decode_audio_open(
    path: str | Path,
    container: av.container.InputContainer,
    sample_rate: int,
    deadline: Deadline,
    max_seconds: float | None,
) -> np.ndarray | None:
    """Mono float32 samples of the first audio stream; None when there is none (or it is empty)."""
    if not container.streams.audio or container.streams.audio[0].codec_context is None:
        return None
    stream = container.streams.audio[0]
    discard_others(container, stream)
    duration = video_duration(container, stream)
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError("max_seconds must be positive")
    if max_seconds is None or (duration is not None and duration <= max_seconds):
        chunks = _decode_range(path, container, stream, sample_rate, deadline, None, None)
    elif duration is None:
        budget = int(max_seconds * sample_rate)
        chunks = _decode_range(path, container, stream, sample_rate, deadline, None, budget)
    else:
        window = max_seconds / AUDIO_WINDOWS
        tb = stream.time_base
        start = float(stream.start_time * tb) if stream.start_time and tb else 0.0
        chunks = []
        for i in range(AUDIO_WINDOWS):
            begin = start + (i + 0.5) * duration / AUDIO_WINDOWS - window / 2
            chunks += _decode_range(
                path,
                container,
                stream,
                sample_rate,
                deadline,
                max(start, begin),
                int(window * sample_rate),
            )
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if samples.size == 0:
        return None  # a track without a single decodable sample is no audio
    return np.ascontiguousarray(samples, dtype=np.float32)

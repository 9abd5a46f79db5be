"""Uniform frame sampling whose cost grows with the number of samples, not the video length.

Targets are the centres of ``num_frames`` equal slices of the video. For each target the
sampler either keeps decoding forward or seeks, whichever decodes fewer frames:

* With the container's keyframe index (MP4/MOV/MKV expose it through
  ``stream.index_entries``) the choice is exact: seek when the last keyframe at or before the
  target lies *after* the frame decoded last (seeking then skips frames); otherwise decode on.
  Dense samples relative to the keyframe spacing therefore become one sequential decode that
  keeps the frames it needs; sparse samples become one seek each. At most about one GOP is
  decoded per sample, whatever the video's length.
* Keyframe fast path (long videos): when a target needs a seek anyway and a keyframe lies
  within a quarter of the sample spacing of it, the sampler seeks to that keyframe and decodes
  only it (``skip_frame=NONKEY``): one decoded frame per sample instead of up to a GOP. Samples
  then sit within ``spacing / 4`` of the exact slice centres, which content features do not
  notice; ``exact=True`` turns this off.
* Without a complete index (MPEG-TS, Matroska before its cues are read) the sampler estimates
  the keyframe spacing from the keyframes it decodes and seeks when the next target is further
  away than that; a seek that lands after its target is retried further back.
* Without a known duration (rare raw streams) it decodes everything once, keeping a bounded,
  evenly thinned set of frames.

Each kept frame is converted during decode by libswscale (``to_ndarray(width, height)``): the
short side is scaled to ``size`` and the long side proportionally, then the centre
``size x size`` square is cut out (so nothing is stretched), then the display rotation from the
file's metadata is applied. Output is RGB uint8 ``(N, size, size, 3)``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.container
import numpy as np

from recsys.media.container import decode_tolerant, discard_others, ffmpeg_reason
from recsys.media.errors import CorruptMedia, NoVideoStream
from recsys.media.limits import Deadline
from recsys.media.probe import ProbeResult


@dataclass
class SampledFrames:
    """``frames``: uint8 (N, size, size, 3) RGB; ``timestamps``: float64 (N,) seconds from the
    start of the video stream. ``decoded_frames``/``seeks`` report the work done."""

    frames: np.ndarray
    timestamps: np.ndarray
    decoded_frames: int = 0
    seeks: int = 0
    strategy: str = field(default="")


def scaled_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(w, h) with the short side equal to ``size`` and the aspect ratio kept."""
    if width <= 0 or height <= 0:
        return size, size
    if width <= height:
        return size, max(size, round(height * size / width))
    return max(size, round(width * size / height)), size


def frame_to_square(frame: av.VideoFrame, size: int, rotation: int) -> np.ndarray:
    """Resize (short side -> size) during conversion, centre-crop, rotate for display."""
    w, h = scaled_size(frame.width, frame.height, size)
    rgb = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="BILINEAR")
    top = (h - size) // 2
    left = (w - size) // 2
    square = rgb[top : top + size, left : left + size]
    if rotation:
        square = np.rot90(square, k=rotation // 90)
    return np.ascontiguousarray(square)


def target_times(start: float, duration: float, num_frames: int) -> np.ndarray:
    """Centres of ``num_frames`` equal slices of ``[start, start + duration)``."""
    return start + (np.arange(num_frames, dtype=np.float64) + 0.5) * duration / num_frames


class _Sampler:
    def __init__(
        self,
        path: str | Path,
        container: av.container.InputContainer,
        info: ProbeResult,
        size: int,
        deadline: Deadline,
        snap_tolerance: float = 0.0,
        spacing: float = 0.0,
    ) -> None:
        self.path = str(path)
        self.snap_tolerance = snap_tolerance
        self.keyframe_grabs = 0
        self.must_seek = False
        self.container = container
        self.stream = container.streams.video[0]
        discard_others(container, self.stream)
        self.stream.thread_type = "AUTO"
        self.info = info
        self.size = size
        self.deadline = deadline
        tb = self.stream.time_base
        self.time_base = float(tb) if tb else 0.0
        self.start = (
            float(self.stream.start_time * tb) if self.stream.start_time is not None and tb else 0.0
        )
        fps = info.fps or 25.0
        self.frame_period = 1.0 / fps if fps > 0 else 0.04
        self.keyframes = self._keyframe_times()
        # Frame threading pays off for long sequential runs; when samples are sparser than the
        # keyframes (one seek each), its start-up and flush on every seek cost more than it
        # saves, so slice threading is used instead.
        if self.keyframes is not None and len(self.keyframes) > 1:
            gaps = np.diff(self.keyframes)
            if spacing > float(np.median(gaps)):
                self.stream.thread_type = "SLICE"
        self.gop_estimate = 2.0  # seconds; refined from decoded keyframes when no index
        self.last_keyframe: float | None = None
        self.iterator: object | None = None
        self.current: av.VideoFrame | None = None
        self.current_time = float("-inf")
        self.decoded = 0
        self.seeks = 0
        self.exhausted = False

    def _keyframe_times(self) -> list[float] | None:
        """Keyframe times from the container index, only when the index covers the whole
        stream (MP4/MOV list every sample up front; Matroska and others add entries as they
        are read, so their early index is partial and must not be trusted)."""
        try:
            entries = self.stream.index_entries
            count = len(entries)
        except (AttributeError, TypeError):
            return None
        if count == 0:
            return None
        last = float(entries[count - 1].timestamp) * self.time_base
        duration = self.info.duration_s or 0.0
        if last < self.start + duration - max(1.0, 0.05 * duration):
            return None
        times = [float(e.timestamp) * self.time_base for e in entries if e.is_keyframe]
        return sorted(times) if times else None

    def _time_of(self, frame: av.VideoFrame) -> float:
        if frame.pts is not None and frame.time_base:
            return float(frame.pts * frame.time_base)
        return self.start + self.decoded * self.frame_period

    def _next(self) -> av.VideoFrame | None:
        if self.exhausted:
            return None
        if self.iterator is None:
            self.iterator = decode_tolerant(self.container, self.stream, self.deadline.check)
        try:
            frame = next(self.iterator)  # type: ignore[call-overload]
        except StopIteration:
            self.exhausted = True
            return None
        except av.error.FFmpegError as error:
            if self.current is None:
                raise CorruptMedia(
                    self.path, f"video cannot be decoded ({ffmpeg_reason(error)})"
                ) from None
            # A damaged tail: keep what decoded so far.
            self.exhausted = True
            return None
        self.decoded += 1
        self.deadline.check()
        t = self._time_of(frame)
        if frame.key_frame:
            if self.last_keyframe is not None and t > self.last_keyframe:
                self.gop_estimate = max(self.gop_estimate, t - self.last_keyframe)
            self.last_keyframe = t
        self.current = frame
        self.current_time = t
        return frame

    def _should_seek(self, target: float) -> bool:
        if self.keyframes is not None:
            i = bisect.bisect_right(self.keyframes, target + 1e-6) - 1
            if i < 0:
                return False
            keyframe = self.keyframes[i]
            if self.current is None:
                return keyframe > self.start + 1e-6
            return keyframe > self.current_time + 1e-6
        if self.current is None:
            return target - self.start > self.gop_estimate
        return target - self.current_time > self.gop_estimate

    def _seek(self, target: float) -> None:
        offset = round(target / self.time_base) if self.time_base else round(target * av.time_base)
        try:
            self.container.seek(offset, stream=self.stream, backward=True, any_frame=False)
        except av.error.FFmpegError:
            return  # unseekable: keep decoding forward
        self.seeks += 1
        self.must_seek = False
        self.iterator = None
        self.exhausted = False
        self.current = None
        self.current_time = float("-inf")
        self.last_keyframe = None

    def _nearby_keyframe(self, target: float) -> float | None:
        """The indexed keyframe nearest to ``target`` if within the snap tolerance and ahead
        of what was decoded last."""
        if self.keyframes is None or self.snap_tolerance <= 0:
            return None
        i = bisect.bisect_left(self.keyframes, target)
        near = [self.keyframes[j] for j in (i - 1, i) if 0 <= j < len(self.keyframes)]
        best = min(near, key=lambda k: abs(k - target))
        if abs(best - target) > self.snap_tolerance or best <= self.current_time + 1e-6:
            return None
        return best

    def _grab_keyframe(self, keyframe: float) -> tuple[av.VideoFrame, float] | None:
        """Seek to ``keyframe`` and decode only keyframes until it appears."""
        context = self.stream.codec_context
        self._seek(keyframe)
        context.skip_frame = "NONKEY"
        try:
            while (frame := self._next()) is not None:
                if self.current_time >= keyframe - self.frame_period / 2:
                    self.keyframe_grabs += 1
                    return frame, self.current_time
        finally:
            context.skip_frame = "DEFAULT"
            # Non-key packets were dropped: the decoder state is only valid after a new seek.
            self.iterator = None
            self.must_seek = True
        return None

    def _seek_before(self, target: float) -> None:
        """Seek so that decoding starts at or before ``target``.

        Some demuxers (MPEG-TS) land after the requested time: then seek again further back,
        a few times. Without an index, a seek that did not move forward teaches the sampler
        that keyframes are further apart than it thought, so it seeks less from then on.
        """
        before = self.current_time
        back = 0.0
        for _attempt in range(4):
            self._seek(max(self.start, target - back))
            if self.current is not None:  # the seek failed: decoding just goes on
                return
            if self._next() is None:
                return
            if self.current_time <= target + self.frame_period / 2 or target - back <= self.start:
                break
            back = max(2 * back, self.gop_estimate, 1.0)
        if self.keyframes is None and self.current_time <= before:
            self.gop_estimate = max(self.gop_estimate, target - self.current_time)

    def frame_at(self, target: float) -> tuple[av.VideoFrame, float]:
        """The first frame shown at or after ``target`` (within half a frame)."""
        tolerance = self.frame_period / 2
        if self.current is not None and self.current_time >= target - tolerance:
            return self.current, self.current_time
        fallback = (self.current, self.current_time)
        if self.must_seek or (not self.exhausted and self._should_seek(target)):
            keyframe = self._nearby_keyframe(target)
            if keyframe is not None:
                grabbed = self._grab_keyframe(keyframe)
                if grabbed is not None:
                    return grabbed
            self._seek_before(target)
            if self.current is not None and self.current_time >= target - tolerance:
                return self.current, self.current_time
        while True:
            self.deadline.check()
            previous, previous_time = self.current, self.current_time
            frame = self._next()
            if frame is None:
                if previous is None:
                    previous, previous_time = fallback
                if previous is None:
                    raise CorruptMedia(self.path, "the video stream holds no decodable frame")
                return previous, previous_time
            if self.current_time >= target - tolerance:
                return frame, self.current_time


def _sample_unknown_duration(sampler: _Sampler, num_frames: int) -> list[tuple[np.ndarray, float]]:
    """Decode everything, keeping every ``stride``-th frame; thin out when the buffer fills."""
    kept: list[tuple[np.ndarray, float]] = []
    stride, index = 1, 0
    while (frame := sampler._next()) is not None:
        if index % stride == 0:
            kept.append(
                (frame_to_square(frame, sampler.size, sampler.info.rotation), sampler.current_time)
            )
            if len(kept) >= 4 * num_frames:
                kept = kept[::2]
                stride *= 2
        index += 1
    if not kept:
        raise CorruptMedia(sampler.path, "the video stream holds no decodable frame")
    picks = np.linspace(0, len(kept) - 1, num_frames).round().astype(int)
    return [kept[i] for i in picks]


def sample_open(
    path: str | Path,
    container: av.container.InputContainer,
    info: ProbeResult,
    num_frames: int,
    size: int,
    deadline: Deadline,
    *,
    exact: bool = False,
) -> SampledFrames:
    """Sample frames from a freshly opened container (see the module docstring)."""
    if num_frames < 1 or size < 1:
        raise ValueError("num_frames and size must be positive")
    if not info.has_video:
        raise NoVideoStream(path, "the file has no video stream (audio only)")
    duration = info.duration_s
    spacing = duration / num_frames if duration else 0.0
    sampler = _Sampler(
        path, container, info, size, deadline, 0.0 if exact else spacing / 4, spacing
    )
    if duration is None or duration <= 0:
        picked = _sample_unknown_duration(sampler, num_frames)
        strategy = "full-decode (unknown duration)"
    else:
        picked = []
        last_frame: av.VideoFrame | None = None
        last_array = np.empty(0, dtype=np.uint8)
        for target in target_times(sampler.start, duration, num_frames):
            frame, t = sampler.frame_at(float(target))
            if frame is not last_frame:  # consecutive targets may share one frame
                last_frame, last_array = frame, frame_to_square(frame, size, info.rotation)
            picked.append((last_array, t))
        strategy = "index" if sampler.keyframes is not None else "adaptive"
        if sampler.keyframe_grabs:
            strategy += f"+keyframes({sampler.keyframe_grabs})"
    frames = np.stack([p[0] for p in picked]).astype(np.uint8, copy=False)
    timestamps = np.array([p[1] - sampler.start for p in picked], dtype=np.float64)
    return SampledFrames(
        frames=frames,
        timestamps=timestamps,
        decoded_frames=sampler.decoded,
        seeks=sampler.seeks,
        strategy=strategy,
    )


def grab_open(
    path: str | Path,
    container: av.container.InputContainer,
    info: ProbeResult,
    at: float,
    max_side: int,
    deadline: Deadline,
) -> np.ndarray:
    """One display-oriented RGB frame at fraction ``at`` of the video, aspect ratio kept, its
    longer side at most ``max_side`` (for thumbnails)."""
    if not info.has_video:
        raise NoVideoStream(path, "the file has no video stream (audio only)")
    sampler = _Sampler(path, container, info, max_side, deadline)
    duration = info.duration_s or 0.0
    frame, _t = sampler.frame_at(sampler.start + min(max(at, 0.0), 1.0) * duration)
    scale = min(1.0, max_side / max(frame.width, frame.height, 1))
    w = max(1, round(frame.width * scale))
    h = max(1, round(frame.height * scale))
    rgb = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="BILINEAR")
    if info.rotation:
        rgb = np.rot90(rgb, k=info.rotation // 90)
    return np.ascontiguousarray(rgb)

"""One decode per video for a visual + audio spec: frames or clips, and audio, as the
encoders want them.

:class:`DecodePlan` is what the encoders of a spec need (frames at a size, or clips of
consecutive frames; audio at a rate; ~N frames per second or a fixed count), and which
modalities are already cached (not decoded again). :func:`decode_inputs` runs in the killable
decode worker and returns an :class:`~recsys.features.composite.EncoderInputs`: raw uint8
frames and float audio; the networks run elsewhere (batched, see :mod:`recsys.stage_a.batching`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from recsys.features.composite import CompositeExtractor, EncoderInputs
    from recsys.media.limits import DecodeLimits

#: Clip frames are taken at about this rate (the Kinetics models' training rate).
CLIP_FPS = 15.0


@dataclass(frozen=True)
class DecodePlan:
    kind: str  # "frames" | "clips"
    size: int
    clip_frames: int
    samples: int  # frames or clips when no fps recipe
    fps: float | None
    max_frames: int
    sample_rate: int | None  # None: the spec has no audio encoder
    audio_max_seconds: float | None
    skip: tuple[str, ...] = ()  # modalities already cached

    @classmethod
    def of(
        cls,
        extractor: CompositeExtractor,
        skip: tuple[str, ...] = (),
        audio_max_seconds: float | None = None,
    ) -> DecodePlan:
        from recsys.media import DEFAULT_AUDIO_MAX_SECONDS

        return cls(
            kind=extractor.visual.kind,
            size=extractor.visual.size,
            clip_frames=extractor.visual.clip_frames,
            samples=extractor.samples,
            fps=extractor.fps,
            max_frames=extractor.max_frames,
            sample_rate=extractor.sample_rate,
            audio_max_seconds=audio_max_seconds or DEFAULT_AUDIO_MAX_SECONDS,
            skip=skip,
        )

    def count(self, duration_s: float | None) -> int:
        if self.fps is None:
            return self.samples
        if not duration_s or duration_s <= 0:
            return min(self.samples, self.max_frames)
        return max(1, min(self.max_frames, math.ceil(duration_s * self.fps)))


def decode_inputs(
    path: str, plan: DecodePlan, timeout_s: float | None, limits: DecodeLimits | None
) -> EncoderInputs:
    """Probe once, then frames (or clips) and audio as ``plan`` asks; MediaError if bad."""
    from recsys.features import FeatureError
    from recsys.features.composite import EncoderInputs
    from recsys.media.audio import decode_audio_open
    from recsys.media.container import open_media
    from recsys.media.errors import CorruptMedia, MediaError, NoVideoStream
    from recsys.media.frames import sample_open
    from recsys.media.limits import Deadline
    from recsys.media.probe import probe_open

    deadline = Deadline(path, timeout_s)
    try:
        with open_media(path, limits) as container:
            info = probe_open(path, container, Path(path).stat().st_size, deadline)
        if not info.has_video:
            raise NoVideoStream(path, "the file has no video stream (audio only)")
        visual = None
        count = plan.count(info.duration_s)
        if "visual" not in plan.skip:
            with open_media(path, limits) as container:
                if plan.kind == "clips":
                    visual = _clips(path, container, info, count, plan, deadline)
                else:
                    visual = sample_open(path, container, info, count, plan.size, deadline).frames
        audio = None
        if "audio" not in plan.skip and plan.sample_rate and info.has_audio:
            try:
                with open_media(path, limits) as container:
                    audio = decode_audio_open(
                        path, container, plan.sample_rate, deadline, plan.audio_max_seconds
                    )
            except CorruptMedia:
                audio = None  # the pictures are fine: the video goes on without its sound
    except (MediaError, FeatureError):
        raise
    except Exception as error:  # noqa: BLE001 - crafted files reach odd corners of FFmpeg
        raise CorruptMedia(path, f"decoding failed ({type(error).__name__}: {error})") from None
    return EncoderInputs(
        label=path,
        visual=visual,
        audio=audio,
        sample_rate=plan.sample_rate or 0,
        info={"duration_s": info.duration_s, "samples": count},
    )


def decode_inputs_or_reason(
    path: str, plan: DecodePlan, timeout_s: float | None, limits: DecodeLimits | None
) -> EncoderInputs | str:
    """:func:`decode_inputs` for the decode worker: a FeatureError comes back as its reason
    (media errors propagate, re-raised by the caller with the file named)."""
    from recsys.features import FeatureError

    try:
        return decode_inputs(path, plan, timeout_s, limits)
    except FeatureError as error:
        return str(error)


def _clips(
    path: str, container: Any, info: Any, count: int, plan: DecodePlan, deadline: Any
) -> np.ndarray:
    """``count`` clips of ``plan.clip_frames`` consecutive frames (at about CLIP_FPS) centred
    on the centres of ``count`` equal slices of the video: (C, T, S, S, 3) uint8."""
    from recsys.features import FeatureError
    from recsys.media.frames import _Sampler, frame_to_square, target_times

    duration = info.duration_s
    if not duration or duration <= 0:
        raise FeatureError(f"{path}: duration unknown, clip models need it to place clips")
    sampler = _Sampler(path, container, info, plan.size, deadline)
    fps = info.fps or 25.0
    step = max(1, round(fps / CLIP_FPS)) / fps  # seconds between clip frames
    span = step * (plan.clip_frames - 1)
    clips = []
    distinct: set[float] = set()
    for centre in target_times(sampler.start, duration, count):
        first = min(max(sampler.start, float(centre) - span / 2), sampler.start + duration - span)
        first = max(sampler.start, first)
        frames: list[np.ndarray] = []
        last = None
        array = np.empty(0, dtype=np.uint8)
        for k in range(plan.clip_frames):
            frame, t = sampler.frame_at(first + k * step)
            if frame is not last:
                last, array = frame, frame_to_square(frame, plan.size, info.rotation)
            distinct.add(round(t, 4))
            frames.append(array)
        clips.append(np.stack(frames))
    if len(distinct) < 2:
        raise FeatureError(
            f"{path} has a single decodable frame; clip models need clips of "
            f"{plan.clip_frames} consecutive frames (use a frame encoder for stills)"
        )
    return np.stack(clips).astype(np.uint8, copy=False)

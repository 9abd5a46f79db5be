"""A synthetic corpus with a latent topic per video, for tests, benchmarks and the demo.

Every topic ``t`` gets a *visual style* shared with one neighbouring topic and an *audio
style* shared with the other neighbour::

    visual_style(t) = t // 2              -> topics {0,1}, {2,3}, ... look alike
    audio_style(t)  = ((t + 1) % K) // 2  -> topics {1,2}, {3,4}, ..., {K-1,0} sound alike

so the visual channel alone confuses a topic with its visual twin and the audio channel alone
with its audio twin; only both together identify it (with only two topics they share the look
and differ in sound). A visual style fixes the background hue,
the shape (disc, square, bar, ring), its colour, the motion (drift, orbit, bounce) and the
texture (grating frequency and orientation); an audio style fixes the pitch, rhythm (beats per
second), timbre (harmonic weights) and noise colour. Each video then draws its own random
variation (jittered hue, size, speed, phase, pitch, loudness, noise) so that videos of a topic
are similar, not identical. About ``silent_fraction`` of the videos have no audio track.

**Series.** Inside a topic, videos belong to ``series_per_topic`` *series* (a channel, a
creator, a sub-genre): what people binge in one sitting (:mod:`recsys.synth.events` makes
sessions stay on a series), so co-watch has structure beyond the topic. A series shows in the
content only weakly, as it does in real videos: every video of a series carries the series'
*watermark*, a small static square (about the size of the topic-independent clutter, ~1% of
the frame) of the series' colour in the series' corner of the frame's central square (which a
centre crop keeps). The raw descriptors weight it like any other nuisance (per-video hue,
brightness, clutter, noise), so an un-learned similarity hardly sees it, while a model trained
on past co-watch can learn that this corner and colour matter and use them for videos of the
series released later. Series are a modelling choice about the world, drawn from their own
seeded streams (the topic styles and per-video variation are the same draws as without them);
``series_per_topic=1`` draws no watermark. A series is what a catalog calls a *channel*: the
manifest names it (``<category>-channel-<k>``), so result lists can be capped and filtered by it.

**Re-encodes.** ``reencodes=N`` adds N near-duplicate copies of the first originals, cycling
through :data:`REENCODE_KINDS` (scaled down, centre-cropped and scaled back, re-compressed at a
much lower quality): the same rendered frames and sound as their original, different bytes. They
are what a catalog gets when people re-upload a video, and what serving's near-duplicate
threshold is calibrated on (``bench/quality.py``); ``CorpusInfo.duplicate_of`` names each copy's
original.

``manifest.csv`` (``file,video_id,title,category,channel``) and ``cowatch.csv``
(``video_a,video_b,weight``) depend only on the arguments: the same seed gives byte-identical
metadata and the same topics. The co-watch graph links each video mostly to videos of its own
topic, sometimes to a twin topic and sometimes to a random video, with random weights.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recsys.synth.writer import VideoWriter

log = logging.getLogger(__name__)

TOPIC_NAMES = (
    "cooking",
    "surfing",
    "guitar",
    "football",
    "birds",
    "traffic",
    "rain",
    "piano",
    "dance",
    "gaming",
    "crowd",
    "engines",
)
SHAPES = ("disc", "square", "bar", "ring")
#: Series (channels, creators, sub-genres) inside a topic, and their watermark's side as a
#: fraction of the frame height (see the module docstring).
SERIES_PER_TOPIC = 4
MARK_SIZE = 0.1
MOTIONS = ("drift", "orbit", "bounce")
#: How a re-encode differs from its original (see the module docstring).
REENCODE_KINDS = ("scaled", "cropped", "recompressed")
REENCODE_SCALE = 0.75  # "scaled": frame side, relative to the original
REENCODE_CROP = 0.1  # "cropped": border cut from each side before scaling back
REENCODE_CRF = 40  # "recompressed": x264 quality (the originals: the writer's default)


def topic_name(t: int, topics: int) -> str:
    """Human-readable category of topic ``t`` (numbered when there are many topics)."""
    if topics <= len(TOPIC_NAMES):
        return TOPIC_NAMES[t]
    return f"topic_{t:03d}"


def visual_style_of(t: int, topics: int) -> int:
    if topics < 3:
        return 0  # two topics cannot pair up twice: they share the look, differ in sound
    return t // 2


def audio_style_of(t: int, topics: int) -> int:
    if topics < 3:
        return t
    return ((t + 1) % topics) // 2


@dataclass(frozen=True)
class VisualStyle:
    hue: float
    shape: str
    shape_hue: float
    motion: str
    speed: float
    texture_freq: float
    texture_angle: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> VisualStyle:
        return cls(
            hue=float(rng.uniform(0, 1)),
            shape=str(rng.choice(SHAPES)),
            shape_hue=float(rng.uniform(0, 1)),
            motion=str(rng.choice(MOTIONS)),
            speed=float(rng.uniform(0.2, 0.8)),
            texture_freq=float(rng.uniform(2, 12)),
            texture_angle=float(rng.uniform(0, np.pi)),
        )


@dataclass(frozen=True)
class AudioStyle:
    pitch: float
    rhythm: float
    harmonics: tuple[float, ...]
    noise: float
    noise_cutoff: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> AudioStyle:
        weights = rng.uniform(0, 1, size=5) ** 2
        weights[0] = 1.0
        return cls(
            pitch=float(110 * 2 ** rng.uniform(0, 3)),
            rhythm=float(rng.uniform(0.5, 4)),
            harmonics=tuple(float(w) for w in weights),
            noise=float(rng.uniform(0.02, 0.3)),
            noise_cutoff=float(rng.uniform(0.05, 0.9)),
        )


@dataclass(frozen=True)
class SeriesMark:
    """A series' watermark: a small static square of one colour in one corner."""

    corner: int  # 0: top left, 1: top right, 2: bottom left, 3: bottom right
    hue: float
    size: float  # side, as a fraction of the frame height

    @classmethod
    def draw(cls, rng: np.random.Generator, size: float) -> SeriesMark:
        return cls(corner=int(rng.integers(0, 4)), hue=float(rng.uniform(0, 1)), size=size)


@dataclass
class SynthVideo:
    video_id: str
    file: str  # relative to the corpus directory
    title: str
    topic: int
    category: str
    has_audio: bool
    series: int = 0  # global series index: topic * series_per_topic + the series in the topic
    channel: str = ""  # the series as a catalog names it
    duplicate_of: str | None = None  # a re-encode: its original's video_id
    reencode: str | None = None  # a re-encode: which of REENCODE_KINDS


@dataclass
class CorpusInfo:
    """What ``generate_corpus`` wrote; ``topic_of`` maps video_id -> topic index."""

    out_dir: Path
    manifest: Path
    cowatch: Path
    videos: list[SynthVideo]
    topics: list[str]
    visual_style: list[int]
    audio_style: list[int]
    pairs: list[tuple[str, str, float]] = field(default_factory=list)
    series_per_topic: int = 1

    @property
    def topic_of(self) -> dict[str, int]:
        return {v.video_id: v.topic for v in self.videos}

    @property
    def duplicate_of(self) -> dict[str, str]:
        """video_id of each re-encode -> its original's video_id."""
        return {v.video_id: v.duplicate_of for v in self.videos if v.duplicate_of is not None}

    @property
    def series_of(self) -> dict[str, int]:
        """video_id -> global series index (``topic * series_per_topic + k``)."""
        return {v.video_id: v.series for v in self.videos}


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array(
        [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i], dtype=np.float32
    )


def _mark_mask(mark: SeriesMark, width: int, height: int) -> np.ndarray:
    """The pixels of a series watermark: a square inset from its corner of the frame's
    central square (the "safe area": a decoder's centre crop keeps it)."""
    side = max(1, int(round(mark.size * height)))
    inset = max(0, int(round(0.08 * min(width, height))))
    square = min(width, height)
    x0, y0 = (width - square) // 2, (height - square) // 2
    top = y0 + (inset if mark.corner in (0, 1) else max(0, square - inset - side))
    left = x0 + (inset if mark.corner in (0, 2) else max(0, square - inset - side))
    mask = np.zeros((height, width), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def _render_frames(
    style: VisualStyle,
    rng: np.random.Generator,
    width: int,
    height: int,
    mark: SeriesMark | None = None,
) -> Callable[[float], np.ndarray]:
    """A per-video frame function of time (numpy, vectorised); ``mark``: its series'
    watermark, drawn over everything but the sensor noise."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs /= width
    ys /= height
    mark_mask = None if mark is None else _mark_mask(mark, width, height)
    mark_colour = None if mark is None else _hsv(mark.hue, 0.8, 0.9) * 255.0
    hue = (style.hue + rng.normal(0, 0.04)) % 1.0
    background = _hsv(hue, 0.6, 0.35 + rng.uniform(0, 0.2)) * 255.0
    shape_colour = _hsv((style.shape_hue + rng.normal(0, 0.04)) % 1.0, 0.85, 0.95) * 255.0
    distractor = _hsv(rng.uniform(0, 1), 0.5, 0.7) * 255.0  # topic-independent clutter
    angle = style.texture_angle + rng.normal(0, 0.15)
    freq = style.texture_freq * rng.uniform(0.85, 1.15)
    grating = (2 * np.pi * freq * (np.cos(angle) * xs + np.sin(angle) * ys)).astype(np.float32)
    speed = style.speed * rng.uniform(0.8, 1.25)
    phase = rng.uniform(0, 2 * np.pi)
    radius = 0.12 * rng.uniform(0.8, 1.25)
    dx, dy = rng.uniform(0.2, 0.8, size=2)
    noise_level = rng.uniform(2, 10)
    # A small bank of sensor-noise fields, cycled: per-frame noise without per-frame sampling.
    noise_bank = rng.normal(0, noise_level, size=(7, height, width, 1)).astype(np.float32)
    aspect = width / height
    counter = [0]

    def centre(t: float) -> tuple[float, float]:
        w = 2 * np.pi * speed * t + phase
        if style.motion == "orbit":
            return 0.5 + 0.25 * np.cos(w), 0.5 + 0.25 * np.sin(w)
        if style.motion == "bounce":
            return dx, 0.5 + 0.3 * abs(np.sin(w))
        return (dx + 0.3 * speed * t) % 1.0, dy

    def frame(t: float) -> np.ndarray:
        texture = np.sin(grating + np.float32(3.0 * speed * t))
        img = background[None, None, :] * (0.9 + 0.3 * texture[..., None])
        cx, cy = centre(t)
        ddx = (xs - np.float32(cx)) * np.float32(aspect)
        ddy = ys - np.float32(cy)
        if style.shape == "disc":
            mask = ddx**2 + ddy**2 < radius**2
        elif style.shape == "square":
            mask = (np.abs(ddx) < radius) & (np.abs(ddy) < radius)
        elif style.shape == "bar":
            mask = (np.abs(ddx) < radius * 0.4) & (np.abs(ddy) < radius * 2)
        else:
            r2 = ddx**2 + ddy**2
            mask = (r2 < radius**2) & (r2 > (0.6 * radius) ** 2)
        img[mask] = shape_colour
        # a small topic-independent square wandering around
        qx, qy = (0.7 * t * speed + dy) % 1.0, (0.3 + 0.2 * np.sin(t + phase)) % 1.0
        clutter = (np.abs(xs - np.float32(qx)) < 0.04) & (np.abs(ys - np.float32(qy)) < 0.05)
        img[clutter] = distractor
        if mark_mask is not None:
            img[mark_mask] = mark_colour
        img += noise_bank[counter[0] % len(noise_bank)]
        counter[0] += 1
        return np.clip(img, 0, 255).astype(np.uint8)

    return frame


def _render_audio(
    style: AudioStyle, rng: np.random.Generator, seconds: float, sample_rate: int
) -> np.ndarray:
    n = int(round(seconds * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    pitch = style.pitch * 2 ** rng.normal(0, 0.04)
    tone = np.zeros(n)
    for k, weight in enumerate(style.harmonics, start=1):
        tone += weight * np.sin(2 * np.pi * pitch * k * t + rng.uniform(0, 2 * np.pi))
    tone /= max(1e-6, float(sum(style.harmonics)))
    rhythm = style.rhythm * rng.uniform(0.9, 1.1)
    beat_phase = (t * rhythm + rng.uniform(0, 1)) % 1.0
    envelope = np.exp(-5.0 * beat_phase)
    white = rng.normal(0, 1, n)
    # one-pole low-pass: the cutoff colours the noise (hiss vs rumble)
    # (a truncated exponential kernel: a one-pole filter without a Python loop)
    alpha = style.noise_cutoff
    kernel = alpha * (1 - alpha) ** np.arange(64)
    coloured = np.convolve(white, kernel, mode="same")
    coloured /= max(1e-6, float(np.std(coloured)))
    loudness = rng.uniform(0.4, 0.8)
    signal = loudness * (0.8 * tone * envelope + style.noise * coloured * 0.5)
    return np.clip(signal, -1, 1).astype(np.float32)


def channel_name(category: str, series: int, series_per_topic: int) -> str:
    """The channel a series is published under (its number inside its topic)."""
    return f"{category}-channel-{series % series_per_topic}"


def _reencoded(frame: np.ndarray, kind: str) -> np.ndarray:
    """A frame as a re-upload shows it (``recompressed`` changes the encoder, not the frame)."""
    if kind == "recompressed":
        return frame
    from PIL import Image

    height, width = frame.shape[:2]
    image = Image.fromarray(frame)
    if kind == "cropped":
        dx, dy = int(width * REENCODE_CROP), int(height * REENCODE_CROP)
        return np.asarray(image.crop((dx, dy, width - dx, height - dy)).resize((width, height)))
    size = (max(2, int(width * REENCODE_SCALE)), max(2, int(height * REENCODE_SCALE)))
    return np.asarray(image.resize(size))


def _write_video(
    path: Path,
    frame_fn: Callable[[float], np.ndarray],
    audio: np.ndarray | None,
    *,
    seconds: float,
    fps: float,
    width: int,
    height: int,
    sample_rate: int,
    reencode: str | None = None,
) -> None:
    count = max(1, int(round(seconds * fps)))
    frames = [frame_fn(k / fps) for k in range(count)]
    if reencode is not None:
        frames = [_reencoded(frame, reencode) for frame in frames]
    out_height, out_width = frames[0].shape[:2]
    writer = VideoWriter(
        path,
        width=out_width,
        height=out_height,
        fps=fps,
        sample_rate=sample_rate if audio is not None else None,
    )
    if reencode == "recompressed" and writer.video is not None:
        writer.video.options = {**writer.video.options, "crf": str(REENCODE_CRF)}
    with writer:
        for frame in frames:
            writer.add_frame(frame)
        if audio is not None:
            writer.add_audio(audio)


def _assign_series(
    assignment: np.ndarray, series_per_topic: int, rng: np.random.Generator
) -> np.ndarray:
    """A balanced series inside each topic: ``topic * series_per_topic + k`` per video."""
    series = np.zeros(assignment.size, np.int64)
    for topic in np.unique(assignment):
        members = np.flatnonzero(assignment == topic)
        inner = np.resize(np.arange(series_per_topic), members.size)
        rng.shuffle(inner)
        series[members] = int(topic) * series_per_topic + inner
    return series


def _cowatch(
    videos: list[SynthVideo], topics: int, rng: np.random.Generator, per_video: int
) -> list[tuple[str, str, float]]:
    by_topic: dict[int, list[int]] = {}
    for i, v in enumerate(videos):
        by_topic.setdefault(v.topic, []).append(i)
    weights: dict[tuple[int, int], float] = {}
    for i, v in enumerate(videos):
        twins = [
            u
            for u in range(topics)
            if u != v.topic
            and (
                visual_style_of(u, topics) == visual_style_of(v.topic, topics)
                or audio_style_of(u, topics) == audio_style_of(v.topic, topics)
            )
        ]
        for _ in range(per_video):
            roll = rng.uniform()
            if roll < 0.75:
                pool = by_topic[v.topic]
            elif roll < 0.9 and twins:
                pool = by_topic.get(int(rng.choice(twins)), by_topic[v.topic])
            else:
                pool = list(range(len(videos)))
            j = int(rng.choice(pool))
            if j == i:
                continue
            key = (min(i, j), max(i, j))
            weights[key] = weights.get(key, 0.0) + float(rng.integers(1, 6))
    return [(videos[a].video_id, videos[b].video_id, w) for (a, b), w in sorted(weights.items())]


def generate_corpus(
    out_dir: str | Path,
    videos: int = 40,
    topics: int = 4,
    seconds: float = 3.0,
    seed: int = 0,
    *,
    width: int = 160,
    height: int = 120,
    fps: float = 12.0,
    sample_rate: int = 16000,
    silent_fraction: float = 0.1,
    cowatch_per_video: int = 6,
    series_per_topic: int = SERIES_PER_TOPIC,
    mark_size: float = MARK_SIZE,
    reencodes: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> CorpusInfo:
    """Write ``videos`` MP4 files under ``out_dir/videos/`` plus manifest.csv and cowatch.csv.

    Topics are balanced (video ``i`` has topic ``perm[i % topics]``-style assignment drawn from
    the seed), and so are the ``series_per_topic`` series inside a topic (module docstring;
    ``mark_size``: a watermark's side as a fraction of the frame height). Existing files are
    overwritten. ``reencodes`` near-duplicate copies of the first originals follow them (module
    docstring). ``progress(done, total)`` is called per video. Roughly 20 ms per 3 s 160x120
    video on one core.
    """
    if videos < 1 or topics < 1 or series_per_topic < 1:
        raise ValueError("videos, topics and series_per_topic must be positive")
    if reencodes < 0:
        raise ValueError(f"reencodes must not be negative, got {reencodes}")
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    names = [topic_name(t, topics) for t in range(topics)]
    vis = [visual_style_of(t, topics) for t in range(topics)]
    aud = [audio_style_of(t, topics) for t in range(topics)]
    visual_styles = {
        s: VisualStyle.draw(np.random.default_rng([seed, 1, s])) for s in sorted(set(vis))
    }
    audio_styles = {
        s: AudioStyle.draw(np.random.default_rng([seed, 2, s])) for s in sorted(set(aud))
    }
    plan_rng = np.random.default_rng([seed, 0])
    assignment = np.resize(np.arange(topics), videos)
    plan_rng.shuffle(assignment)
    silent = plan_rng.uniform(size=videos) < silent_fraction
    series = _assign_series(assignment, series_per_topic, np.random.default_rng([seed, 5]))
    marks = {
        k: SeriesMark.draw(np.random.default_rng([seed, 6, k]), mark_size)
        for k in sorted(set(series.tolist()))
    }
    digits = max(4, len(str(videos - 1)))
    entries: list[SynthVideo] = []
    for i in range(videos):
        topic = int(assignment[i])
        video_id = f"syn{i:0{digits}d}"
        entries.append(
            SynthVideo(
                video_id=video_id,
                file=f"videos/{video_id}.mp4",
                title=f"{names[topic].capitalize()} clip {i}",
                topic=topic,
                category=names[topic],
                has_audio=not bool(silent[i]),
                series=int(series[i]),
                channel=channel_name(names[topic], int(series[i]), series_per_topic),
            )
        )
    copies = []
    for j in range(reencodes):
        original = entries[j % videos]
        kind = REENCODE_KINDS[j % len(REENCODE_KINDS)]
        video_id = f"{original.video_id}-{kind}{j // len(REENCODE_KINDS)}"
        copies.append(
            SynthVideo(
                video_id=video_id,
                file=f"videos/{video_id}.mp4",
                title=f"{original.title} (re-upload)",
                topic=original.topic,
                category=original.category,
                has_audio=original.has_audio,
                series=original.series,
                channel=original.channel,
                duplicate_of=original.video_id,
                reencode=kind,
            )
        )
    total = videos + reencodes
    for done, entry in enumerate(entries + copies, start=1):
        # a copy renders its original's frames and sound again: same seed, same draws
        i = done - 1 if entry.duplicate_of is None else (done - 1 - videos) % videos
        rng = np.random.default_rng([seed, 3, i])
        mark = marks[entry.series] if series_per_topic > 1 else None
        frame_fn = _render_frames(visual_styles[vis[entry.topic]], rng, width, height, mark)
        audio = (
            _render_audio(audio_styles[aud[entry.topic]], rng, seconds, sample_rate)
            if entry.has_audio
            else None
        )
        _write_video(
            out / entry.file,
            frame_fn,
            audio,
            seconds=seconds,
            fps=fps,
            width=width,
            height=height,
            sample_rate=sample_rate,
            reencode=entry.reencode,
        )
        if progress is not None:
            progress(done, total)
    pairs = _cowatch(entries, topics, np.random.default_rng([seed, 4]), cowatch_per_video)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer_csv = csv.writer(handle, lineterminator="\n")
        writer_csv.writerow(["file", "video_id", "title", "category", "channel"])
        for entry in entries + copies:
            writer_csv.writerow(
                [entry.file, entry.video_id, entry.title, entry.category, entry.channel]
            )
    cowatch = out / "cowatch.csv"
    with cowatch.open("w", newline="", encoding="utf-8") as handle:
        writer_csv = csv.writer(handle, lineterminator="\n")
        writer_csv.writerow(["video_a", "video_b", "weight"])
        for a, b, w in pairs:
            writer_csv.writerow([a, b, f"{w:g}"])
    log.info("wrote %d videos, %d co-watch pairs to %s", videos, len(pairs), out)
    return CorpusInfo(
        out_dir=out,
        manifest=manifest,
        cowatch=cowatch,
        videos=entries + copies,
        topics=names,
        visual_style=vis,
        audio_style=aud,
        pairs=pairs,
        series_per_topic=series_per_topic,
    )

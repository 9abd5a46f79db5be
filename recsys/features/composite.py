"""A stage-A extractor made of one visual and one audio encoder (see :mod:`.spec`).

The extractor's version is derived from both encoders' versions (and the frame sampling). Its
features are cached per modality (:class:`~recsys.features.part.Part`, one cache entry each, keyed
by ``visual=<encoder>`` / ``audio=<encoder>`` and that encoder's version), so changing the audio
encoder re-uses every cached visual part and runs only the new audio encoder. Decoding is the
caller's (``recsys.stage_a``): one decode per video feeds both encoders (:class:`EncoderInputs`);
:meth:`CompositeExtractor.encode_batch` then runs each network once over a batch of videos.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.choices import Modality
from recsys.features.base import ExtractorUnavailable, FeatureError, VideoFeatures, pool_sequence
from recsys.features.encoder import Encoder, weights_sha256
from recsys.features.encoder_registry import build_encoder
from recsys.features.part import Part
from recsys.features.pca import CatalogPca, pca_path
from recsys.features.pooling import DEFAULT_POOLING, INFO_KEY, pool_rows
from recsys.features.spec import StageASpec
from recsys.settings import Settings

if TYPE_CHECKING:
    from recsys.media import DecodedVideo

MODALITIES: tuple[str, ...] = tuple(Modality)
DEFAULT_CLIPS = 4
DEFAULT_MAX_FRAMES = 64


@dataclass
class EncoderInputs:
    """What one decode produced for the encoders (or what was found cached instead).

    ``visual``: frames (N, S, S, 3) or clips (C, T, S, S, 3) uint8; ``audio``: mono float32 at
    ``sample_rate`` (None without an audio track); ``cached``: parts read from the cache.
    """

    label: str
    visual: np.ndarray | None = None
    audio: np.ndarray | None = None
    sample_rate: int = 0
    cached: dict[str, Part] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class PcaMissing(ExtractorUnavailable):
    """A ``pca=N`` spec whose PCA has not been fitted on the catalog yet."""


class CompositeExtractor:
    """Visual + audio encoders of one spec; a :class:`~recsys.features.FeatureExtractor`."""

    def __init__(
        self, spec: StageASpec, settings: Settings, visual_weights: Path | None = None
    ) -> None:
        self.spec = spec
        self.name = spec.name
        visual = build_encoder(settings, Modality.VISUAL, spec.visual, spec.options, visual_weights)
        if visual is None:
            raise ExtractorUnavailable(f"{spec.name}: a visual encoder is required")
        self.visual: Encoder = visual
        self.audio = build_encoder(settings, Modality.AUDIO, spec.audio, spec.options)
        fps = spec.option("fps")
        self.fps = float(fps) if fps else None
        self.max_frames = int(spec.option("max_frames", DEFAULT_MAX_FRAMES) or DEFAULT_MAX_FRAMES)
        if self.visual.kind == "clips":
            self.samples = int(spec.option("clips", DEFAULT_CLIPS) or DEFAULT_CLIPS)
        else:
            self.samples = settings.frames_per_video
        sampling = (
            f"fps{self.fps:g}m{self.max_frames}" if self.fps else f"n{self.samples}"
        ) + f"s{self.visual.size}"
        self.keys: dict[str, tuple[str, str]] = {
            Modality.VISUAL: (f"visual={self.visual.name}", f"{self.visual.version}-{sampling}")
        }
        if self.audio is not None:
            self.keys[Modality.AUDIO] = (f"audio={self.audio.name}", self.audio.version)
        else:
            self.keys[Modality.AUDIO] = ("audio=none", "none")
        self.pca: CatalogPca | None = None
        pca_dim = spec.option("pca")
        extra = ""
        if pca_dim:
            path = pca_path(settings.weights_dir, self.keys[Modality.VISUAL][1], int(pca_dim))
            if not path.is_file():
                raise PcaMissing(
                    f"no PCA fitted for {spec.name} ({path} is missing): "
                    f"`recsys embed --extractor {spec.name}` fits it on the catalog"
                )
            self.pca = CatalogPca(path)
            extra = f"|pca={weights_sha256(path)[:16]}"
        # The pooling changes the pooled vector, not the cached rows: it joins the version only.
        self.pooling = spec.pooling or self.visual.pooling
        if self.pooling != DEFAULT_POOLING:
            extra += f"|pool={self.pooling}"
        joined = "|".join(f"{k}={v}" for k, v in sorted(self.keys.values())) + extra
        self.version = f"av1-{hashlib.sha256(joined.encode()).hexdigest()[:16]}"

    # -- what to decode --------------------------------------------------------------------
    @property
    def deep(self) -> bool:
        return self.visual.deep or (self.audio is not None and self.audio.deep)

    @property
    def sample_rate(self) -> int | None:
        return None if self.audio is None else self.audio.sample_rate

    def sample_count(self, duration_s: float | None) -> int:
        """Frames (or clips) to sample from a video of ``duration_s`` seconds."""
        if self.fps is None:
            return self.samples
        if not duration_s or duration_s <= 0:
            return min(self.samples, self.max_frames)
        return max(1, min(self.max_frames, math.ceil(duration_s * self.fps)))

    def to(self, device: str) -> None:
        self.visual.to(device)
        if self.audio is not None:
            self.audio.to(device)

    # -- per-modality parts (cached by recsys.features.cache) ------------------------------
    def split(self, features: VideoFeatures) -> dict[str, Part]:
        if features.parts is not None:  # the raw rows (before a catalog PCA)
            return dict(features.parts)
        if self.pca is not None:
            raise FeatureError("features reduced by a PCA cannot be cached as raw parts")
        return {
            Modality.VISUAL: Part(
                features.visual_seq, {"frames": int(features.visual_seq.shape[0])}
            ),
            Modality.AUDIO: Part(features.audio_seq),
        }

    def combine(self, parts: dict[str, Part], **info: Any) -> VideoFeatures:
        visual = parts[Modality.VISUAL].seq
        if visual is None or len(visual) == 0:
            raise FeatureError("no visual features")
        audio = parts[Modality.AUDIO].seq if Modality.AUDIO in parts else None
        raw = dict(parts)
        if self.pca is not None:
            visual = self.pca.apply(visual)
        if self.pooling != DEFAULT_POOLING:
            info = {INFO_KEY: self.pooling, **info}
        return VideoFeatures(
            extractor=self.name,
            extractor_version=self.version,
            visual=pool_rows(visual, self.pooling),
            visual_seq=visual,
            audio=None if audio is None else pool_sequence(audio),
            audio_seq=audio,
            info={
                "frames": int(visual.shape[0]),
                "audio_windows": 0 if audio is None else int(audio.shape[0]),
                "visual_encoder": self.keys[Modality.VISUAL][1],
                "audio_encoder": self.keys[Modality.AUDIO][1],
                **info,
            },
            parts=raw,
        )

    # -- encoding --------------------------------------------------------------------------
    def encode_batch(self, batch: Sequence[EncoderInputs]) -> list[VideoFeatures | FeatureError]:
        """Features of many decoded videos; each network runs once over the whole batch.

        A video whose input one encoder rejects gets a FeatureError naming it and the reason;
        the others are unaffected.
        """
        errors: dict[int, str] = {}
        parts: list[dict[str, Part]] = [dict(item.cached) for item in batch]
        for modality, encoder in ((Modality.VISUAL, self.visual), (Modality.AUDIO, self.audio)):
            todo = [
                i for i, item in enumerate(batch) if modality not in parts[i] and i not in errors
            ]
            if modality == Modality.AUDIO:
                for i in [i for i in todo if encoder is None or batch[i].audio is None]:
                    parts[i][Modality.AUDIO] = Part(None)  # no audio track (or no audio encoder)
                todo = [i for i in todo if Modality.AUDIO not in parts[i]]
                items: list[Any] = [(batch[i].audio, batch[i].sample_rate) for i in todo]
            else:
                missing = [i for i in todo if batch[i].visual is None]
                for i in missing:
                    errors[i] = "no frames were decoded"
                todo = [i for i in todo if i not in errors]
                items = [batch[i].visual for i in todo]
            if not todo or encoder is None:
                continue
            try:
                encoded = encoder.encode(items)
            except Exception as error:  # noqa: BLE001 - find the culprit(s) alone
                if len(todo) == 1:
                    encoded = [error if isinstance(error, FeatureError) else _as_error(error)]
                else:
                    encoded = [_one(encoder, item) for item in items]
            for i, rows in zip(todo, encoded, strict=True):
                if isinstance(rows, FeatureError):
                    errors[i] = f"{encoder.name}: {rows}"
                else:
                    parts[i][modality] = Part(np.asarray(rows, dtype=np.float32))
        out: list[VideoFeatures | FeatureError] = []
        for i, item in enumerate(batch):
            if i in errors:
                out.append(FeatureError(f"{item.label}: {errors[i]}"))
            else:
                out.append(self.combine(parts[i], **item.info))
        return out

    def extract(self, decoded: DecodedVideo) -> VideoFeatures:
        """Features of an already decoded video (frame encoders only; clip models need
        ``recsys.stage_a.extract_features``, which decodes clips)."""
        inputs = EncoderInputs(
            label=decoded.probe.path,
            visual=decoded.frames,
            audio=decoded.audio if decoded.audio is not None and len(decoded.audio) else None,
            sample_rate=decoded.sample_rate,
        )
        result = self.encode_batch([inputs])[0]
        if isinstance(result, FeatureError):
            raise result
        return result


def _as_error(error: BaseException) -> FeatureError:
    return FeatureError(f"{type(error).__name__}: {error}")


def _one(encoder: Encoder, item: Any) -> np.ndarray | FeatureError:
    try:
        return encoder.encode([item])[0]
    except FeatureError as error:
        return error
    except Exception as error:  # noqa: BLE001 - one bad input must not sink the batch
        return _as_error(error)

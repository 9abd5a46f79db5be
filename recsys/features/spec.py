"""Stage-A specs: one visual and one audio encoder, chosen independently.

``visual=efficientnet-lite:lite0,audio=vggish`` (the ``--extractor`` option and the
``RECSYS_FEATURE_EXTRACTOR`` setting take the same text); the encoder names are those the
encoder modules declare (:mod:`recsys.features.encoder_registry`). Options may follow:
``fps=1`` (the paper's recipe: about one frame per second, at most ``max_frames``),
``max_frames=N``, ``clips=N`` and ``clip_frames=N`` (clip models), ``pca=N`` (visual rows
reduced by a PCA fitted on the catalog, see :mod:`recsys.features.pca`),
``pool=mean|meanmax|meanstd`` (how the frame rows become one vector, see
:mod:`recsys.features.pooling`; default: the visual encoder's own). A bare encoder name is
completed with ``content`` for the other modality; the older names keep working:
``content`` and ``cnn`` are unchanged and ``torchvision:<model>`` means
``visual=torchvision:<model>,audio=content``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The encoder modules declare their encoders when imported: parsing needs every declaration.
import recsys.features.audio_encoders
import recsys.features.visual_encoders  # noqa: F401
from recsys.choices import Modality
from recsys.features.base import ExtractorUnavailable
from recsys.features.encoder_registry import describe, find_encoder
from recsys.features.pooling import POOLINGS

OPTIONS = {"fps": float, "max_frames": int, "clips": int, "clip_frames": int, "pca": int}
POOL = "pool"
LEGACY = ("content", "cnn")


def is_visual(name: str) -> bool:
    return find_encoder(Modality.VISUAL, name) is not None


def is_audio(name: str) -> bool:
    return find_encoder(Modality.AUDIO, name) is not None


@dataclass(frozen=True)
class StageASpec:
    visual: str
    audio: str
    options: dict[str, float | int] = field(default_factory=dict)
    pooling: str | None = None  # None: the visual encoder's own

    @property
    def name(self) -> str:
        """The canonical text (what models record and the cache is keyed by)."""
        extra = "".join(f",{key}={self.options[key]:g}" for key in sorted(self.options))
        if self.pooling is not None:
            extra += f",{POOL}={self.pooling}"
        return f"visual={self.visual},audio={self.audio}{extra}"

    def without(self, key: str) -> StageASpec:
        return StageASpec(
            self.visual,
            self.audio,
            {k: v for k, v in self.options.items() if k != key},
            None if key == POOL else self.pooling,
        )

    def option(self, key: str, default: float | int | None = None) -> float | int | None:
        return self.options.get(key, default)


def _available() -> str:
    return (
        f"visual={describe(Modality.VISUAL)}, audio={describe(Modality.AUDIO)}, "
        f"options {', '.join(OPTIONS)}, {POOL}={'|'.join(POOLINGS)}"
    )


def parse_spec(text: str) -> StageASpec:
    """Parse a stage-A spec (see the module docstring); ExtractorUnavailable when invalid."""
    text = text.strip()
    if "=" not in text:
        if is_visual(text):
            return StageASpec(text, "content")
        if is_audio(text) and text != "content":
            return StageASpec("content", text)
        raise ExtractorUnavailable(f"unknown feature extractor {text!r}; use {_available()}")
    parts: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise ExtractorUnavailable(f"bad stage-A spec item {item!r} in {text!r}: use key=value")
        if key in parts:
            raise ExtractorUnavailable(f"{key} given twice in stage-A spec {text!r}")
        parts[key] = value
    visual = parts.pop(Modality.VISUAL, "content")
    audio = parts.pop(Modality.AUDIO, "content")
    if not is_visual(visual):
        raise ExtractorUnavailable(f"unknown visual encoder {visual!r}; use {_available()}")
    if not is_audio(audio):
        raise ExtractorUnavailable(f"unknown audio encoder {audio!r}; use {_available()}")
    pooling = parts.pop(POOL, None)
    if pooling is not None and pooling not in POOLINGS:
        raise ExtractorUnavailable(f"unknown {POOL}={pooling!r} in {text!r}; use {_available()}")
    options: dict[str, float | int] = {}
    for key, value in parts.items():
        kind = OPTIONS.get(key)
        if kind is None:
            raise ExtractorUnavailable(f"unknown stage-A option {key!r}; use {_available()}")
        try:
            number = kind(value)
        except ValueError:
            raise ExtractorUnavailable(f"stage-A option {key}={value!r} is not a number") from None
        if number <= 0:
            raise ExtractorUnavailable(f"stage-A option {key} must be positive, got {value}")
        options[key] = number
    return StageASpec(visual, audio, options, pooling)

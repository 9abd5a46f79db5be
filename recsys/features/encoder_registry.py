"""Stage-A encoders by name: each encoder declares itself once, next to its class.

A declaration (:class:`EncoderType`) holds the encoder's name (a family such as ``torchvision``
with its variants after a colon, or a bare name such as ``content``), its modality, its code
version, the factory that builds it and the weights files it reads. Spec parsing
(:mod:`recsys.features.spec`), construction (:mod:`recsys.features.composite`) and the weights
registry (:mod:`recsys.weights.registry`, fed by :func:`register_encoder`) all read these
declarations, so a new encoder is one class and one ``register_encoder`` call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.choices import Modality
from recsys.features.base import ExtractorUnavailable
from recsys.weights.registry import WeightsEntry, add_weights_source

if TYPE_CHECKING:
    from recsys.features.encoder import Encoder
    from recsys.settings import Settings

#: Spec options an encoder may read (``clip_frames`` for clip models).
Options = Mapping[str, float | int]


#: Builds the encoder: (settings, variant, spec options, explicit weights file) → encoder, or
#: None for "no encoder" (``audio=none``).
EncoderFactory = Callable[["Settings", str, Options, Path | None], "Encoder | None"]


@dataclass(frozen=True)
class EncoderType:
    """One encoder, or a family of them (``family:<variant>``), declared once."""

    family: str
    modality: Modality
    version: str  # the code revision: bumped whenever the same weights give other outputs
    factory: EncoderFactory
    #: Accepted variants; "" is the bare family name (``vggish`` beside ``vggish:pca``).
    variants: tuple[str, ...] = ("",)
    #: Non-empty: any variant is accepted (the factory checks it), shown as ``family:<open>``.
    open: str = ""
    #: The weights files the encoder reads (their registry entries; ``encoder`` is filled in).
    weights: Callable[[], Iterable[WeightsEntry]] = tuple
    summary: str = ""

    def name(self, variant: str = "") -> str:
        return f"{self.family}:{variant}" if variant else self.family

    def component(self, variant: str = "") -> str:
        """``audio=panns:cnn14``: how weights entries and cache keys name it."""
        return f"{self.modality}={self.name(variant)}"

    def accepts(self, variant: str) -> bool:
        return variant in self.variants or bool(self.open and variant)

    def describe(self) -> str:
        """How the spec help and errors show it: ``torchvision-video:<r2plus1d_18|s3d>``."""
        if self.open:
            return f"{self.family}:<{self.open}>"
        named = [v for v in self.variants if v]
        if not named:
            return self.family
        shown = [self.family] if "" in self.variants else []
        if len(named) == 1:
            return "|".join([*shown, self.name(named[0])])
        return "|".join([*shown, f"{self.family}:<{'|'.join(named)}>"])

    def weights_entries(self) -> list[WeightsEntry]:
        """The declared weights, each naming this encoder (``audio=panns:cnn14``)."""
        entries = []
        for entry in self.weights():
            encoder = entry.encoder or self.component(self.variants[0])
            entries.append(replace(entry, encoder=encoder))
        return entries


_types: dict[tuple[Modality, str], EncoderType] = {}
_lock = threading.Lock()


def register_encoder(kind: EncoderType) -> EncoderType:
    """Declare an encoder (replacing one of the same modality and family) and its weights."""
    with _lock:
        _types[(kind.modality, kind.family)] = kind
    add_weights_source(f"{kind.modality}={kind.family}", kind.weights_entries)
    return kind


def encoder_types(modality: Modality) -> list[EncoderType]:
    """The declared encoders of one modality, in declaration order."""
    return [kind for (mod, _), kind in _types.items() if mod == modality]


def find_encoder(modality: Modality, name: str) -> tuple[EncoderType, str] | None:
    """The declaration of ``name`` (``family`` or ``family:variant``) and its variant."""
    family, _, variant = name.partition(":")
    kind = _types.get((modality, family))
    if kind is None or not kind.accepts(variant):
        return None
    return kind, variant


def describe(modality: Modality) -> str:
    """Every accepted name of one modality, for help texts and errors."""
    return "|".join(kind.describe() for kind in encoder_types(modality))


def build_encoder(
    settings: Settings,
    modality: Modality,
    name: str,
    options: Options | None = None,
    weights: Path | None = None,
) -> Encoder | None:
    """The encoder called ``name``; ExtractorUnavailable when none is declared under it."""
    found = find_encoder(modality, name)
    if found is None:
        raise ExtractorUnavailable(
            f"unknown {modality} encoder {name!r}; use {modality}={describe(modality)}"
        )
    kind, variant = found
    return kind.factory(settings, variant, options or {}, weights)

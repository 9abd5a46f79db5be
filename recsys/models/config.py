"""The JSON-serialisable description of a stage-B model (part of its version hash)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys.choices import Combine, Fusion, InputKind, Modality, Tower, parse_choice

MODALITIES = tuple(m.value for m in Modality)
#: Modality weights of the content features when nothing chose others (training.modalities).
EQUAL_WEIGHTS: dict[str, float] = dict.fromkeys(MODALITIES, 1.0)


def modality_weight(modality: str, weights: Mapping[str, float] | None) -> float:
    """The weight of ``modality``'s L2-normalised block (1 when ``weights`` does not name it)."""
    return float((weights or EQUAL_WEIGHTS).get(str(modality), 1.0))


@dataclass
class ModelConfig:
    """Architecture and input contract; together with the weights it defines a version."""

    extractor: str = "content"
    extractor_version: str = "content-4"
    input_kind: InputKind = InputKind.VECTOR
    fusion: Fusion = Fusion.LATE
    combine: Combine = Combine.SUM
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))
    dim: int = 256
    hidden: int = 512
    dropout: float = 0.2
    modality_dropout: float = 0.2
    visual_dim: int = 0  # pooled input sizes (vector inputs) or encoder widths (cnn)
    audio_dim: int = 0
    frames: int = 16  # cnn inputs: frames and log-mel windows fed per video
    windows: int = 8
    frame_shape: list[int] = field(default_factory=lambda: [3, 32, 32])
    mel_shape: list[int] = field(default_factory=lambda: [64, 64])
    spec_augment: bool = True
    # mlp: random init (configs written before the residual towers read back as this);
    # residual: PCA skip path fitted on the catalog, so the untrained model is the content baseline
    tower: Tower = Tower.MLP
    # Each modality's weight in the content features a residual model starts from (chosen on
    # the training signal, training.modalities; the content baseline it is judged against uses
    # the same); configs written before them read back as equal weights.
    modality_weights: dict[str, float] = field(default_factory=lambda: dict(EQUAL_WEIGHTS))

    def __post_init__(self) -> None:
        # Read back from JSON the choices are plain strings; a bad one fails with the list.
        self.input_kind = parse_choice(InputKind, self.input_kind, "input_kind")
        self.fusion = parse_choice(Fusion, self.fusion, "fusion")
        self.combine = parse_choice(Combine, self.combine, "combine")
        self.tower = parse_choice(Tower, self.tower, "tower")
        self.modalities = [str(parse_choice(Modality, m, "modality")) for m in self.modalities]
        if not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}")
        if self.dim < 2:
            raise ValueError(f"embedding dim must be at least 2, not {self.dim}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

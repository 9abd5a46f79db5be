"""What defines a training run, how it maps onto a model, and whether its model goes live.

:class:`TrainConfig` is the one place for the training defaults (the CLI reads them from here);
:func:`model_config_for` turns it and the data into the model's architecture; the activation
policy (:func:`should_activate`) decides, after the gate, whether the new model becomes active.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys.choices import (
    Combine,
    Fusion,
    InputKind,
    Loss,
    Modality,
    PairSource,
    Tower,
    parse_choice,
)
from recsys.db import Database
from recsys.db.models import ModelStatus
from recsys.models import ModelConfig, input_dims
from recsys.models.config import EQUAL_WEIGHTS
from recsys.models.registry import activate_if_none_active, activate_model
from training.data import TrainingData
from training.errors import TrainingError
from training.modalities import BOTH, choose_inputs

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that defines a training run (all but the last eight go into the run id).

    The optimisation defaults (lr, dim, hidden, batch size, epochs) are the recipe that won the
    real-clip cold-start protocol (``bench/quality.py``) on pretrained features: strong inputs
    want small steps, and a smaller batch gives the small catalogs that need them more steps.
    """

    fusion: Fusion = Fusion.LATE
    combine: Combine = Combine.SUM
    pairs: PairSource = PairSource.CATEGORIES
    extractor: str = ""  # the stage-A spec; "": the home's (recsys.features.home_spec)
    # Empty: chosen from the training signal before training (training.modalities).
    modalities: list[str] = field(default_factory=list)
    dim: int = 128
    hidden: int = 256
    tower: Tower = Tower.RESIDUAL  # residual: the untrained model is the content baseline
    loss: Loss = Loss.TRIPLET
    margin: float = 0.2
    temperature: float = 0.1
    batch_size: int = 32
    m_per_class: int = 4
    lr: float = 5e-4
    weight_decay: float = 1e-4
    dropout: float = 0.2
    modality_dropout: float = 0.2
    view_fraction: float = 0.5
    augment: float = 0.5
    # Multi-task: weight of the self-supervised same-source loss (two windows of a video are a
    # positive pair) over every catalog video, added to the pair or category loss. It uses no
    # pair and no label, so cold videos, which have only content, shape the towers too.
    self_weight: float = 0.0
    # Self-supervised runs (pairs=self): weight of the content-anchoring term
    # (training.losses.similarity_anchor), which keeps each batch's neighbourhoods between
    # different videos close to those of the untrained model (the content features) on the same
    # views with every modality present, while the same-source loss teaches invariance to the
    # window and to a missing audio track. Without it the model drifts from its inputs' category
    # structure by chance (real-av: precision@5 below the content features on some seeds). Off
    # for pairs and categories, whose signal is meant to move the neighbourhoods (on real-av's
    # cold-start protocol it halved the gain over content).
    self_anchor_weight: float = 5.0
    anchor_temperature: float = 0.05  # softmax temperature of the anchor's similarities
    val_fraction: float = 0.2
    patience: int = 5
    # Gate, then refit (training.refit): a model the gate did not reject is retrained on all
    # the signal, held-out videos included, for the gated run's best epoch + 1 epochs, and that
    # model is registered; False registers the gated model itself (``--no-refit``).
    refit: bool = True
    seed: int = 0
    epochs: int = 60
    resume: bool = False
    # True: make the new model active; False: never; None: only when no model is active yet
    # (the first model trained is usable at once, a later one never takes over unasked).
    activate: bool | None = None
    # The model gate: activate only when validation metric >= content baseline + min_gain;
    # ``force`` activates a model whose validation split is too small to gate.
    min_gain: float = 0.0
    force: bool = False
    progress: bool = True
    cpu_threads: int = 1  # the models are small: extra intra-op threads only add contention
    feature_workers: int | None = None  # decode processes for uncached videos (None: per core)

    def __post_init__(self) -> None:
        # Plain strings are accepted from Python callers; a bad one fails here with the list.
        self.fusion = parse_choice(Fusion, self.fusion, "fusion")
        self.combine = parse_choice(Combine, self.combine, "combine")
        self.pairs = parse_choice(PairSource, self.pairs, "pairs")
        self.loss = parse_choice(Loss, self.loss, "loss")
        self.tower = parse_choice(Tower, self.tower, "tower")
        self.modalities = [str(parse_choice(Modality, m, "modality")) for m in self.modalities]

    def run_id(self, data_signature: str = "") -> str:
        skip = {
            "epochs",
            "resume",
            "activate",
            "min_gain",
            "force",
            "progress",
            "cpu_threads",
            "feature_workers",
        }
        payload = {k: v for k, v in asdict(self).items() if k not in skip}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode())
        digest.update(data_signature.encode())
        return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Activation:
    """Whether a newly trained model should become the active one, and why."""

    activate: bool
    reason: str
    only_if_none_active: bool = False  # the first-model rule: lose to a concurrent first model


def should_activate(
    config: TrainConfig, metrics: dict[str, Any], version: str, active_version: str | None
) -> Activation:
    """The activation policy for a model just trained (``metrics``: its evaluation figures).

    The model gate (``metrics["gate"]``, :mod:`training.gate`) refuses first: a rejected model
    is never activated, and an ungated one (validation too small) only with ``force``. Then
    ``--activate`` activates, ``--no-activate`` never; otherwise the first model trained
    where none is active becomes active, so ``recsys train`` then ``recsys embed`` just works,
    and a later one waits for ``recsys models activate``.
    """
    if active_version == version:
        return Activation(True, "it was already the active model")
    if config.activate is False:
        return Activation(False, "--no-activate was given")
    gate = metrics.get("gate")
    if gate is not None and gate["status"] == ModelStatus.REJECTED:
        return Activation(False, gate["reason"])
    if gate is not None and gate["status"] == ModelStatus.UNGATED and not config.force:
        return Activation(False, gate["reason"])
    if config.activate:
        return Activation(True, "--activate was given")
    if active_version is None:
        return Activation(True, "the first model: none was active", only_if_none_active=True)
    return Activation(False, f"model {active_version} stays active")


def apply_activation(database: Database, version: str, decision: Activation) -> bool:
    """Carry out ``decision``; whether ``version`` is the active model afterwards."""
    if not decision.activate:
        return False
    if decision.only_if_none_active:
        return activate_if_none_active(database, version)
    activate_model(database, version)
    return True


def model_config_for(config: TrainConfig, data: TrainingData) -> ModelConfig:
    first = data.features[0]
    extractor_name = config.extractor or first.extractor
    visual_dim, audio_dim = input_dims(data.features)
    if config.pairs == PairSource.SELF:  # no signal to choose by: both, at equal weight
        modalities, weights = list(config.modalities) or list(BOTH), dict(EQUAL_WEIGHTS)
    else:
        chosen = choose_inputs(data, config.seed, config.modalities or None)
        modalities, weights = chosen.modalities, chosen.weights
    if audio_dim == 0 and Modality.AUDIO in modalities and first.extractor != "cnn":
        if modalities == [Modality.AUDIO]:
            raise TrainingError(
                "no training video has audio; cannot train an audio-only model: include the "
                "visual modality (TrainConfig.modalities) or ingest videos with sound"
            )
        log.warning("no training video has audio: training a visual-only model")
        modalities = [Modality.VISUAL]
    cnn = first.extractor == "cnn"
    return ModelConfig(
        extractor=extractor_name,
        extractor_version=first.extractor_version,
        input_kind=InputKind.CNN if cnn else InputKind.VECTOR,
        fusion=config.fusion,
        combine=config.combine,
        modalities=modalities,
        dim=config.dim,
        hidden=config.hidden,
        dropout=config.dropout,
        modality_dropout=config.modality_dropout,
        visual_dim=visual_dim,
        audio_dim=audio_dim,
        mel_shape=list(first.audio_seq.shape[1:])
        if cnn and first.audio_seq is not None
        else [64, 64],
        frame_shape=list(first.visual_seq.shape[1:]) if cnn else [3, 32, 32],
        tower=Tower.MLP if cnn else config.tower,  # cnn encoders have no content baseline
        modality_weights=weights,
    )

"""Stage-B training: fit a fusion model on cached features with a metric-learning loss.

:func:`fit` works on in-memory :class:`TrainingData` (used by tests and benchmarks);
:func:`train_model` loads the catalog's cached features, splits off a validation set, fits,
evaluates next to the content baseline and random, saves and registers the model version.

Seeded: each epoch draws from ``default_rng([seed, epoch])`` and ``torch.manual_seed``, so a
resumed run continues exactly as an uninterrupted one would. CPU by default; CUDA with mixed
precision when ``device`` resolves to a GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

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
from recsys.features import VideoFeatures, get_extractor
from recsys.models import FusionModel, ModelConfig, build_inputs, input_dims, save_model
from recsys.models.registry import (
    activate_if_none_active,
    activate_model,
    active_model_version,
    resolve_device,
)
from recsys.progress import track
from recsys.settings import Settings
from training.baselines import content_baseline_vectors
from training.data import TrainingData, load_training_data
from training.errors import TrainingError
from training.evaluation import (
    random_metrics,
    relevance_from_labels,
    relevance_from_pairs,
    retrieval_metrics,
)
from training.gate import GateResult, gate_model, held_out_pairs
from training.losses import MetricLoss
from training.samplers import Batch, CategoryBatches, PairBatches, SelfBatches

log = logging.getLogger(__name__)
#: The gate (and early stopping) compare mAP: it reads the whole ranking, so it tells models
#: apart even on a small validation split (where recall@10 sees almost the whole gallery).
GATE_METRIC = "map"
#: Same-source validation compares quarter-length windows: with half-length ones, even the
#: content baseline finds every partner on a small split and validation cannot tell models apart.
SAME_SOURCE_WINDOW = 0.25


@dataclass
class TrainConfig:
    """Everything that defines a training run (all but the last eight go into the run id)."""

    fusion: Fusion = Fusion.LATE
    combine: Combine = Combine.SUM
    pairs: PairSource = PairSource.CATEGORIES
    extractor: str = "content"
    modalities: list[str] = field(default_factory=lambda: [Modality.VISUAL, Modality.AUDIO])
    dim: int = 256
    hidden: int = 512
    tower: Tower = Tower.RESIDUAL  # residual: the untrained model is the content baseline
    loss: Loss = Loss.TRIPLET
    margin: float = 0.2
    temperature: float = 0.1
    batch_size: int = 64
    m_per_class: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-4
    dropout: float = 0.2
    modality_dropout: float = 0.2
    view_fraction: float = 0.5
    augment: float = 0.5
    # Multi-task: weight of the self-supervised same-source loss (two windows of a video are a
    # positive pair) over every catalog video, added to the pair or category loss. It uses no
    # pair and no label, so cold videos, which have only content, shape the towers too.
    self_weight: float = 0.0
    val_fraction: float = 0.2
    patience: int = 5
    seed: int = 0
    epochs: int = 20
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


@dataclass
class FitResult:
    model: FusionModel
    history: list[dict[str, float]]
    best_epoch: int
    best_score: float
    selection_metric: str
    triplets_per_s: float
    samples_per_s: float


@dataclass
class TrainResult:
    version: str
    run_dir: Path
    metrics: dict[str, Any]
    fit: FitResult
    active: bool = False  # whether ``version`` is the active model after training
    activation: str = ""  # why it is or is not active
    gate: GateResult | None = None  # the model gate's figures and verdict

    @property
    def rejected(self) -> bool:
        return self.gate is not None and self.gate.status == ModelStatus.REJECTED


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
    extractor_name = config.extractor
    first = data.features[0]
    visual_dim, audio_dim = input_dims(data.features)
    modalities = list(config.modalities)
    if audio_dim == 0 and "audio" in modalities and first.extractor != "cnn":
        if modalities == ["audio"]:
            raise TrainingError(
                "no training video has audio; cannot train an audio-only model: include the "
                "visual modality (TrainConfig.modalities) or ingest videos with sound"
            )
        log.warning("no training video has audio: training a visual-only model")
        modalities = ["visual"]
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
    )


def _sampler(config: TrainConfig, data: TrainingData) -> Any:
    if config.pairs == "self":
        return SelfBatches(len(data), config.batch_size, config.view_fraction)
    if config.pairs == "categories":
        return CategoryBatches(
            data.labels, config.batch_size, config.m_per_class, config.augment, config.view_fraction
        )
    return PairBatches(data, config.batch_size, config.augment, config.view_fraction)


@torch.no_grad()
def embed_data(
    model: FusionModel,
    data: TrainingData,
    device: torch.device,
    *,
    views: float = 1.0,
    rng: np.random.Generator | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Embeddings of every video in ``data`` (or of one random view of each)."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        chunk = data.features[start : start + batch_size]
        inputs = build_inputs(model.config, chunk, rng=rng, view_fraction=views).to(device)
        out.append(model(inputs).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.dim), np.float32)


def validation_relevance(
    config: TrainConfig, data: TrainingData
) -> tuple[str, list[np.ndarray | None]]:
    """What 'relevant' means on the validation set for this pair source."""
    if config.pairs == "related" and len(data.pairs):
        return "pairs", relevance_from_pairs(len(data), data.pairs)
    if config.pairs != "self" and (data.labels >= 0).sum() >= 2:
        return "categories", relevance_from_labels(data.labels)
    return "same_source", []


def evaluate_model(
    model: FusionModel,
    data: TrainingData,
    config: TrainConfig,
    device: torch.device,
    *,
    with_baselines: bool = True,
    catalog: Sequence[VideoFeatures] | None = None,
) -> dict[str, Any]:
    """Validation figures for the model (and, optionally, the content baseline and random).

    ``catalog``: the features the model's input transforms were fitted on; the content baseline
    is then z-scored with the same statistics, so an untrained residual model equals it.
    """
    kind, relevant = validation_relevance(config, data)
    report: dict[str, Any] = {"relevance": kind, "videos": len(data)}
    if kind == "same_source":
        # Two windows of every video; a window's relevant item is the other window.
        rng = np.random.default_rng(12345)
        window = min(config.view_fraction, SAME_SOURCE_WINDOW)
        first = embed_data(model, data, device, views=window, rng=rng)
        second = embed_data(model, data, device, views=window, rng=rng)
        n = len(data)
        vectors = np.concatenate([first, second])
        relevant = [np.array([(i + n) % (2 * n)]) for i in range(2 * n)]
        report["model"] = retrieval_metrics(vectors, relevant)
        if with_baselines:
            rng = np.random.default_rng(12345)
            views = [build_inputs_views(data, window, rng) for _ in range(2)]
            base = np.concatenate([content_baseline_vectors(v, reference=catalog) for v in views])
            report["content_baseline"] = retrieval_metrics(base, relevant)
            report["random"] = random_metrics(2 * n, relevant)
        return report
    vectors = embed_data(model, data, device)
    report["model"] = retrieval_metrics(vectors, relevant)
    if with_baselines:
        modalities = model.config.modalities
        report["content_baseline"] = retrieval_metrics(
            content_baseline_vectors(data.features, modalities, catalog), relevant
        )
        report["random"] = random_metrics(len(data), relevant)
    return report


def build_inputs_views(data: TrainingData, fraction: float, rng: np.random.Generator) -> list:
    """Pooled-feature copies of every video restricted to one random window (for baselines)."""
    from dataclasses import replace

    from recsys.features import pool_sequence
    from recsys.models.inputs import _window

    out = []
    for f in data.features:
        v = f.visual_seq[_window(f.visual_seq.shape[0], fraction, rng)]
        a = (
            None
            if f.audio_seq is None
            else f.audio_seq[_window(f.audio_seq.shape[0], fraction, rng)]
        )
        out.append(
            replace(
                f,
                visual=pool_sequence(v),
                audio=None if a is None else pool_sequence(a),
                visual_seq=v,
                audio_seq=a,
            )
        )
    return out


def selection_metric(config: TrainConfig, data: TrainingData | None) -> str:
    """Early stopping watches the gate's metric (mAP on validation), or the training loss."""
    return "train_loss" if data is None else GATE_METRIC


def fit(
    config: TrainConfig,
    train: TrainingData,
    val: TrainingData | None = None,
    *,
    device: torch.device | None = None,
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    catalog: Sequence[VideoFeatures] | None = None,
) -> FitResult:
    """Train a fusion model on ``train``, early-stopping on ``val`` (see module docstring).

    The input transforms (standardisers, the residual towers' PCA skip paths) are fitted on
    ``catalog``, the features of every video the model will embed (default: train and val);
    they use no labels. With a validation set, the untrained model is scored first (epoch -1)
    and is the floor: an epoch is kept only when it beats it.
    """
    device = device or resolve_device("auto")
    threads = torch.get_num_threads()
    if device.type == "cpu" and config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    if catalog is None:
        catalog = list(train.features) + ([] if val is None else list(val.features))
    try:
        return _fit(config, train, val, device, checkpoint, on_epoch, catalog)
    finally:
        torch.set_num_threads(threads)


def _state_copy(model: FusionModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@dataclass
class _Selection:
    """Early stopping: the best epoch's score and weights, and the epochs since it."""

    best_state: dict[str, torch.Tensor]
    best_score: float = -np.inf
    best_epoch: int = -1
    bad_epochs: int = 0

    def observe(self, score: float, epoch: int, model: FusionModel) -> None:
        if score > self.best_score + 1e-4:
            self.best_score, self.best_epoch, self.bad_epochs = float(score), epoch, 0
            self.best_state = _state_copy(model)
        else:
            self.bad_epochs += 1


def _no_decay(name: str) -> bool:
    return ".skip." in name or name.startswith(("project.", "combine_logits"))


@dataclass
class _Optimisation:
    """The model with its optimiser, loss and (CUDA mixed-precision) gradient scaler."""

    model: FusionModel
    optimizer: torch.optim.Optimizer
    loss_fn: MetricLoss
    scaler: torch.amp.GradScaler
    device: torch.device

    @classmethod
    def create(
        cls,
        config: TrainConfig,
        train: TrainingData,
        device: torch.device,
        catalog: Sequence[VideoFeatures],
    ) -> _Optimisation:
        model = FusionModel(model_config_for(config, train))
        model.fit_inputs(catalog)
        model.to(device)
        # Weight decay pulls towards zero: never on the skip paths and the combination, whose
        # starting point is the content baseline, not zero.
        keep = [p for n, p in model.named_parameters() if _no_decay(n)]
        decay = [p for n, p in model.named_parameters() if not _no_decay(n)]
        groups: list[dict[str, Any]] = [{"params": decay}, {"params": keep, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(
            groups,
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        loss_fn = MetricLoss(config.loss, config.margin, config.temperature)
        scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
        return cls(model, optimizer, loss_fn, scaler, device)

    def batch_loss(
        self, batch: Batch, features: Sequence[VideoFeatures], rng: np.random.Generator
    ) -> tuple[torch.Tensor, int]:
        """The metric loss of ``batch`` (items index ``features``) and the triplets it used."""
        chosen = [features[i] for i in batch.items]
        inputs = build_inputs(
            self.model.config, chosen, rng=rng, view_fraction=batch.views.tolist()
        )
        inputs = inputs.to(self.device)
        labels = torch.from_numpy(batch.groups).to(self.device)
        with torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            embeddings = self.model(inputs, self.model.modality_dropout_masks(inputs))
        not_negative = (
            None
            if batch.not_negative is None
            else torch.from_numpy(batch.not_negative).to(self.device)
        )
        out = self.loss_fn(embeddings, labels, not_negative)
        return out.loss, out.triplets

    def step(
        self,
        batch: Batch,
        train: TrainingData,
        rng: np.random.Generator,
        auxiliary: _Auxiliary | None = None,
    ) -> tuple[float, int]:
        """One optimiser step on ``batch`` (plus, multi-task, ``auxiliary``'s weighted
        self-supervised batch): its loss and the triplets it used."""
        loss, triplets = self.batch_loss(batch, train.features, rng)
        if auxiliary is not None:
            extra, _ = self.batch_loss(auxiliary.next_batch(rng), auxiliary.features, rng)
            loss = loss + auxiliary.weight * extra
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.item()), triplets

    def train_epoch(
        self,
        sampler: Any,
        train: TrainingData,
        rng: np.random.Generator,
        auxiliary: _Auxiliary | None = None,
    ) -> tuple[list[float], int, int, float]:
        """One pass over the sampler's batches: losses, triplets, samples and seconds."""
        self.model.train()
        losses, triplets, samples = [], 0, 0
        started = time.perf_counter()
        batch: Batch
        for batch in sampler.epoch(rng):
            loss, used = self.step(batch, train, rng, auxiliary)
            losses.append(loss)
            triplets += used
            samples += len(batch.items)
        return losses, triplets, samples, time.perf_counter() - started

    def save(
        self, path: Path, selection: _Selection, epoch: int, history: list[dict[str, float]]
    ) -> None:
        """A checkpoint after ``epoch`` (written aside, then moved into place)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "best_state": selection.best_state,
                "best_score": selection.best_score,
                "best_epoch": selection.best_epoch,
                "bad_epochs": selection.bad_epochs,
                "epoch": epoch,
                "history": json.dumps(history),
            },
            tmp,
        )
        tmp.replace(path)

    def resume(self, path: Path) -> tuple[_Selection, int, list[dict[str, float]]]:
        """Weights and optimiser state of a checkpoint: (selection, next epoch, history)."""
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        selection = _Selection(
            state["best_state"],
            float(state["best_score"]),
            int(state["best_epoch"]),
            int(state["bad_epochs"]),
        )
        start_epoch = int(state["epoch"]) + 1
        log.info("resumed from %s at epoch %d", path, start_epoch)
        return selection, start_epoch, json.loads(state["history"])


@dataclass
class _Auxiliary:
    """Multi-task training's second signal: self-supervised batches (two windows of each
    video) over every catalog video, cold ones included, drawn one per main batch."""

    features: Sequence[VideoFeatures]
    weight: float
    sampler: SelfBatches
    _pending: list[Batch] = field(default_factory=list)

    @classmethod
    def create(cls, config: TrainConfig, catalog: Sequence[VideoFeatures]) -> _Auxiliary | None:
        """None unless ``config.self_weight`` asks for it (and it is not already the signal)."""
        if config.self_weight <= 0 or config.pairs == PairSource.SELF or len(catalog) < 2:
            return None
        sampler = SelfBatches(len(catalog), config.batch_size, config.view_fraction)
        return cls(list(catalog), config.self_weight, sampler)

    def next_batch(self, rng: np.random.Generator) -> Batch:
        if not self._pending:
            self._pending = list(self.sampler.epoch(rng))[::-1]
        return self._pending.pop()


def _epoch_score(
    record: dict[str, float],
    model: FusionModel,
    val: TrainingData | None,
    config: TrainConfig,
    device: torch.device,
    metric_name: str,
) -> float:
    """The selection score of an epoch; validation metrics are added to ``record``."""
    if val is None or len(val) < 2:
        return -record["train_loss"]
    report = evaluate_model(model, val, config, device, with_baselines=False)
    record.update({f"val_{k}": v for k, v in report["model"].items()})
    return report["model"][metric_name]


def _fit(
    config: TrainConfig,
    train: TrainingData,
    val: TrainingData | None,
    device: torch.device,
    checkpoint: Path | None,
    on_epoch: Callable[[dict[str, float]], None] | None,
    catalog: Sequence[VideoFeatures],
) -> FitResult:
    torch.manual_seed(config.seed)
    run = _Optimisation.create(config, train, device, catalog)
    sampler = _sampler(config, train)
    auxiliary = _Auxiliary.create(config, catalog)
    metric_name = selection_metric(config, val)
    history: list[dict[str, float]] = []
    selection, start_epoch = _Selection(_state_copy(run.model)), 0
    if checkpoint is not None and config.resume and checkpoint.is_file():
        selection, start_epoch, history = run.resume(checkpoint)
    elif val is not None and len(val) >= 2:  # the untrained model is the floor
        record = {"epoch": -1.0, "triplets": 0.0, "seconds": 0.0}
        score = _epoch_score(record, run.model, val, config, device, metric_name)
        record["score"] = float(score)
        history.append(record)
        selection.observe(score, -1, run.model)
        selection.bad_epochs = 0
    total_triplets, total_samples, total_time = 0, 0, 0.0
    epochs = range(start_epoch, config.epochs)
    for epoch in track(epochs, len(epochs), "training", enabled=config.progress, logger=log):
        if selection.bad_epochs > config.patience:
            break
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 100_003 + epoch)
        losses, triplets, samples, elapsed = run.train_epoch(sampler, train, rng, auxiliary)
        total_triplets += triplets
        total_samples += samples
        total_time += elapsed
        record = {
            "epoch": float(epoch),
            "train_loss": float(np.mean(losses)) if losses else 0.0,
            "triplets": float(triplets),
            "seconds": elapsed,
        }
        score = _epoch_score(record, run.model, val, config, device, metric_name)
        record["score"] = float(score)
        history.append(record)
        selection.observe(score, epoch, run.model)
        if on_epoch is not None:
            on_epoch(record)
        log.debug("epoch %d: %s", epoch, record)
        if checkpoint is not None:
            run.save(checkpoint, selection, epoch, history)
    model = run.model
    model.load_state_dict(selection.best_state)
    model.to("cpu").eval()
    return FitResult(
        model=model,
        history=history,
        best_epoch=selection.best_epoch,
        best_score=float(selection.best_score),
        selection_metric=metric_name,
        triplets_per_s=total_triplets / total_time if total_time else 0.0,
        samples_per_s=total_samples / total_time if total_time else 0.0,
    )


def split_validation(data: TrainingData, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Seeded video-level split; stratified by category when labels exist."""
    rng = np.random.default_rng([config.seed, 7])
    n = len(data)
    if config.val_fraction <= 0 or n < 10:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    val: list[int] = []
    if config.pairs == "categories" and (data.labels >= 0).any():
        for label in np.unique(data.labels):
            members = rng.permutation(np.flatnonzero(data.labels == label))
            take = int(round(members.shape[0] * config.val_fraction))
            if members.shape[0] - take >= 2 and take >= 2:
                val.extend(int(i) for i in members[:take])
    else:
        val = [int(i) for i in rng.permutation(n)[: int(round(n * config.val_fraction))]]
    val_index = np.array(sorted(val), dtype=np.int64)
    train_index = np.setdiff1d(np.arange(n), val_index)
    return train_index, val_index


def train_model(settings: Settings, database: Database, config: TrainConfig) -> TrainResult:
    """Train, evaluate, save and register a model on the catalog's cached features."""
    settings.ensure_dirs()
    extractor = get_extractor(config.extractor, settings=settings)
    data = load_training_data(
        settings, database, extractor, progress=config.progress, workers=config.feature_workers
    )
    if len(data) < 4:
        raise TrainingError(
            f"only {len(data)} usable videos in the catalog at {settings.resolved_home}; "
            "ingest more (`recsys ingest`) before training"
        )
    check_signal(config, data)
    signature = hashlib.sha256("".join(sorted(data.content_hashes)).encode()).hexdigest()
    run_id = config.run_id(extractor.version + signature)
    run_dir = settings.runs_dir / run_id
    train_index, val_index = split_validation(data, config)
    train, val = data.subset(train_index), data.subset(val_index) if len(val_index) else None
    device = resolve_device(settings.device)
    log.info(
        "training run %s: %d train / %d validation videos, %d related pairs, device %s",
        run_id,
        len(train),
        0 if val is None else len(val),
        len(train.pairs),
        device,
    )
    result = fit(
        config,
        train,
        val,
        device=device,
        checkpoint=run_dir / "checkpoint.pt",
        catalog=data.features,
    )
    metrics: dict[str, Any] = {
        "run_id": run_id,
        "pairs": config.pairs,
        "loss": config.loss,
        "selection_metric": result.selection_metric,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "triplets_per_s": result.triplets_per_s,
        "samples_per_s": result.samples_per_s,
        "train_videos": len(train),
        "validation_videos": 0 if val is None else len(val),
    }
    validation = None
    if val is not None and len(val) >= 2:
        validation = evaluate_model(
            result.model, val, config, torch.device("cpu"), catalog=data.features
        )
        metrics["validation"] = validation
    relevance = validation["relevance"] if validation else validation_relevance(config, data)[0]
    gate = gate_model(validation, GATE_METRIC, held_out_pairs(relevance, val), config.min_gain)
    metrics["gate"] = gate.to_dict()
    version = save_model(
        settings,
        database,
        result.model,
        metrics=metrics,
        status=gate.status,
        status_reason=gate.reason,
    )
    log.info("model %s: %s", version, gate.reason)
    decision = should_activate(config, metrics, version, active_model_version(database))
    active = apply_activation(database, version, decision)
    reason = decision.reason
    if decision.activate and not active:  # another first model was activated meanwhile
        reason = f"model {active_model_version(database)} became active first"
    log.info("model %s %s: %s", version, "is active" if active else "is not active", reason)
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": version,
        "config": asdict(config),
        "metrics": metrics,
        "history": result.history,
    }
    (run_dir / "metrics.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
    (run_dir / WARM_FILE).write_text(json.dumps(warm_hashes(config, train)))
    return TrainResult(
        version=version,
        run_dir=run_dir,
        metrics=metrics,
        fit=result,
        active=active,
        activation=reason,
        gate=gate,
    )


#: The content hashes of the videos whose pairs or labels a run's training used (its run dir).
WARM_FILE = "warm.json"


def warm_hashes(config: TrainConfig, train: TrainingData) -> list[str]:
    """Content hashes of the training videos the run's signal touched: every other video is
    *cold* for this model (self-supervised training uses no pair and no label: all cold)."""
    if config.pairs == "related":
        used = np.unique(train.pairs) if len(train.pairs) else np.zeros(0, np.int64)
    elif config.pairs == "categories":
        used = np.flatnonzero(train.labels >= 0)
    else:
        used = np.zeros(0, np.int64)
    return sorted({train.content_hashes[i] for i in used if train.content_hashes})


def check_signal(config: TrainConfig, data: TrainingData) -> None:
    """Fail before training when the catalog holds no usable signal for ``config.pairs``."""
    if config.pairs == "related" and len(data.pairs) == 0:
        raise TrainingError(
            "no usable signal: --pairs related but the catalog has no related pairs between "
            "its videos; import co-watch pairs (`recsys ingest --related` / `--events`) or "
            "train with --pairs categories/self"
        )
    if config.pairs == "categories":
        categories = np.unique(data.labels[data.labels >= 0])
        if categories.shape[0] < 2:
            raise TrainingError(
                f"no usable signal: --pairs categories needs videos of at least 2 categories, "
                f"the catalog has {categories.shape[0]}; give the videos categories in the "
                "manifest, or train with --pairs related/self"
            )

"""The training loop: fit a fusion model on in-memory features with a metric-learning loss.

Each epoch draws batches from the pair source's sampler (plus, multi-task, self-supervised
batches over the whole catalog), scores the model on validation and keeps the best epoch; a
checkpoint after every epoch lets ``resume`` continue a run.

Seeded: each epoch draws from ``default_rng([seed, epoch])`` and ``torch.manual_seed``, so a
resumed run continues exactly as an uninterrupted one would. CPU by default; CUDA with mixed
precision when ``device`` resolves to a GPU.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.choices import PairSource
from recsys.features import VideoFeatures
from recsys.models import FusionModel, build_inputs
from recsys.models.registry import resolve_device
from recsys.progress import track
from training.config import TrainConfig, model_config_for
from training.data import TrainingData
from training.gate import GATE_METRIC, HeldOut
from training.losses import MetricLoss, similarity_anchor
from training.model_evaluation import evaluate_model
from training.samplers import Batch, CategoryBatches, PairBatches, SelfBatches

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: FusionModel
    history: list[dict[str, float]]
    best_epoch: int
    best_score: float
    selection_metric: str
    triplets_per_s: float
    samples_per_s: float


def _sampler(config: TrainConfig, data: TrainingData) -> Any:
    if config.pairs == PairSource.SELF:
        return SelfBatches(len(data), config.batch_size, config.view_fraction)
    if config.pairs == PairSource.CATEGORIES:
        return CategoryBatches(
            data.labels, config.batch_size, config.m_per_class, config.augment, config.view_fraction
        )
    return PairBatches(data, config.batch_size, config.augment, config.view_fraction)


def selection_metric(config: TrainConfig, held: HeldOut | None) -> str:
    """Early stopping watches the gate's metric (mAP on validation), or the training loss."""
    return GATE_METRIC if _scores(held) else "train_loss"


def _scores(held: HeldOut | None) -> bool:
    """Whether ``held`` can score a model: a query and something else to rank."""
    return held is not None and len(held) >= 1 and len(held.data) >= 2


def fit(
    config: TrainConfig,
    train: TrainingData,
    val: TrainingData | HeldOut | None = None,
    *,
    device: torch.device | None = None,
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    catalog: Sequence[VideoFeatures] | None = None,
    keep_last: bool = False,
) -> FitResult:
    """Train a fusion model on ``train``, early-stopping on ``val`` (see module docstring).

    ``val``: a validation set (its videos rank each other) or the gate's held-out videos (they
    rank the whole catalog). The input transforms (standardisers, the residual towers' PCA skip
    paths) and the multi-task self-supervised loss use ``catalog`` (default: train and the
    validation videos); they use no labels. With a validation set, the untrained model is
    scored first (epoch -1) and is the floor: an epoch is kept only when it beats it.
    ``keep_last``: run every one of ``config.epochs`` and keep the last weights (a refit for
    an epoch count chosen elsewhere: nothing here to select on).
    """
    held = HeldOut.of(val) if isinstance(val, TrainingData) else val
    device = device or resolve_device("auto")
    threads = torch.get_num_threads()
    if device.type == "cpu" and config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    if catalog is None:
        unseen = [] if held is None else [held.data.features[int(i)] for i in held.queries]
        catalog = list(train.features) + unseen
    try:
        return _fit(config, train, held, device, checkpoint, on_epoch, catalog, keep_last)
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
    # Self-supervised runs: the untrained model (the content features' geometry), frozen; the
    # anchoring term keeps each batch's neighbourhoods close to its. None: no anchoring.
    teacher: FusionModel | None
    anchor_weight: float
    anchor_temperature: float

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
        weight = config.self_anchor_weight if config.pairs == PairSource.SELF else 0.0
        teacher = copy.deepcopy(model).eval().requires_grad_(False) if weight > 0 else None
        return cls(
            model, optimizer, loss_fn, scaler, device, teacher, weight, config.anchor_temperature
        )

    def batch_loss(
        self,
        batch: Batch,
        features: Sequence[VideoFeatures],
        rng: np.random.Generator,
        anchored: bool = False,
    ) -> tuple[torch.Tensor, int]:
        """The metric loss of ``batch`` (items index ``features``) and the triplets it used;
        ``anchored``: plus the weighted anchoring term (:func:`similarity_anchor`) against the
        frozen untrained model's embedding of the same views with every modality present."""
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
        if not anchored or self.teacher is None:
            return out.loss, out.triplets
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.device.type == "cuda"):
            targets = self.teacher(inputs)
        drift = similarity_anchor(embeddings, targets, labels, self.anchor_temperature)
        return out.loss + self.anchor_weight * drift, out.triplets

    def step(
        self,
        batch: Batch,
        train: TrainingData,
        rng: np.random.Generator,
        auxiliary: _Auxiliary | None = None,
    ) -> tuple[float, int]:
        """One optimiser step on ``batch`` (plus, multi-task, ``auxiliary``'s weighted
        self-supervised batch): its loss and the triplets it used."""
        loss, triplets = self.batch_loss(batch, train.features, rng, anchored=True)
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
    held: HeldOut | None,
    config: TrainConfig,
    device: torch.device,
    metric_name: str,
) -> float:
    """The selection score of an epoch; validation metrics are added to ``record``."""
    if held is None or not _scores(held):
        return -record["train_loss"]
    report = evaluate_model(
        model, held.data, config, device, with_baselines=False, queries=held.queries
    )
    record.update({f"val_{k}": v for k, v in report["model"].items()})
    return report["model"][metric_name]


def _fit(
    config: TrainConfig,
    train: TrainingData,
    held: HeldOut | None,
    device: torch.device,
    checkpoint: Path | None,
    on_epoch: Callable[[dict[str, float]], None] | None,
    catalog: Sequence[VideoFeatures],
    keep_last: bool = False,
) -> FitResult:
    torch.manual_seed(config.seed)
    run = _Optimisation.create(config, train, device, catalog)
    sampler = _sampler(config, train)
    auxiliary = _Auxiliary.create(config, catalog)
    metric_name = selection_metric(config, held)
    history: list[dict[str, float]] = []
    selection, start_epoch = _Selection(_state_copy(run.model)), 0
    if checkpoint is not None and config.resume and checkpoint.is_file():
        selection, start_epoch, history = run.resume(checkpoint)
    elif _scores(held):  # the untrained model is the floor
        record = {"epoch": -1.0, "triplets": 0.0, "seconds": 0.0}
        score = _epoch_score(record, run.model, held, config, device, metric_name)
        record["score"] = float(score)
        history.append(record)
        selection.observe(score, -1, run.model)
        selection.bad_epochs = 0
    total_triplets, total_samples, total_time = 0, 0, 0.0
    epochs = range(start_epoch, config.epochs)
    for epoch in track(epochs, len(epochs), "training", enabled=config.progress, logger=log):
        if selection.bad_epochs > config.patience and not keep_last:
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
        score = _epoch_score(record, run.model, held, config, device, metric_name)
        record["score"] = float(score)
        history.append(record)
        if keep_last:  # the latest epoch is the one kept
            selection.best_score = -np.inf
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

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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from recsys.db import Database
from recsys.features import get_extractor
from recsys.models import FusionModel, ModelConfig, build_inputs, input_dims, save_model
from recsys.models.fusion import Standardizer
from recsys.models.registry import resolve_device
from recsys.settings import Settings
from training.baselines import content_baseline_vectors
from training.data import TrainingData, load_training_data
from training.evaluation import (
    random_metrics,
    relevance_from_labels,
    relevance_from_pairs,
    retrieval_metrics,
)
from training.losses import MetricLoss
from training.progress import track
from training.samplers import Batch, CategoryBatches, PairBatches, SelfBatches

log = logging.getLogger(__name__)
PairSource = Literal["related", "categories", "self"]


@dataclass
class TrainConfig:
    """Everything that defines a training run (all but the last five go into the run id)."""

    fusion: Literal["early", "late"] = "late"
    combine: Literal["sum", "concat", "product"] = "sum"
    pairs: PairSource = "categories"
    extractor: str = "content"
    modalities: list[str] = field(default_factory=lambda: ["visual", "audio"])
    dim: int = 256
    hidden: int = 512
    loss: Literal["triplet", "infonce"] = "triplet"
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
    val_fraction: float = 0.2
    patience: int = 5
    seed: int = 0
    epochs: int = 20
    resume: bool = False
    activate: bool = False
    progress: bool = True
    cpu_threads: int = 1  # the models are small: extra intra-op threads only add contention
    feature_workers: int | None = None  # decode processes for uncached videos (None: per core)

    def run_id(self, data_signature: str = "") -> str:
        skip = {"epochs", "resume", "activate", "progress", "cpu_threads", "feature_workers"}
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


def model_config_for(config: TrainConfig, data: TrainingData) -> ModelConfig:
    extractor_name = config.extractor
    first = data.features[0]
    visual_dim, audio_dim = input_dims(data.features)
    modalities = list(config.modalities)
    if audio_dim == 0 and "audio" in modalities and first.extractor != "cnn":
        if modalities == ["audio"]:
            raise ValueError("no training video has audio; cannot train an audio-only model")
        log.warning("no training video has audio: training a visual-only model")
        modalities = ["visual"]
    cnn = first.extractor == "cnn"
    return ModelConfig(
        extractor=extractor_name,
        extractor_version=first.extractor_version,
        input_kind="cnn" if cnn else "vector",
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
    )


def _sampler(config: TrainConfig, data: TrainingData) -> Any:
    if config.pairs == "self":
        return SelfBatches(len(data), config.batch_size, config.view_fraction)
    if config.pairs == "categories":
        return CategoryBatches(
            data.labels, config.batch_size, config.m_per_class, config.augment, config.view_fraction
        )
    return PairBatches(data, config.batch_size, config.augment, config.view_fraction)


def _fit_standardizers(model: FusionModel, data: TrainingData) -> None:
    if model.config.input_kind != "vector":
        return
    for modality, standardizer in model.standardizers.items():
        assert isinstance(standardizer, Standardizer)
        rows = [getattr(f, modality) for f in data.features if getattr(f, modality) is not None]
        if rows:
            standardizer.fit(torch.from_numpy(np.stack(rows).astype(np.float32)))


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
) -> dict[str, Any]:
    """Validation figures for the model (and, optionally, the content baseline and random)."""
    kind, relevant = validation_relevance(config, data)
    report: dict[str, Any] = {"relevance": kind, "videos": len(data)}
    if kind == "same_source":
        # Two windows of every video; a window's relevant item is the other window.
        rng = np.random.default_rng(12345)
        first = embed_data(model, data, device, views=config.view_fraction, rng=rng)
        second = embed_data(model, data, device, views=config.view_fraction, rng=rng)
        n = len(data)
        vectors = np.concatenate([first, second])
        relevant = [np.array([(i + n) % (2 * n)]) for i in range(2 * n)]
        report["model"] = retrieval_metrics(vectors, relevant)
        if with_baselines:
            rng = np.random.default_rng(12345)
            views = [build_inputs_views(data, config.view_fraction, rng) for _ in range(2)]
            base = np.concatenate([content_baseline_vectors(v) for v in views])
            report["content_baseline"] = retrieval_metrics(base, relevant)
            report["random"] = random_metrics(2 * n, relevant)
        return report
    vectors = embed_data(model, data, device)
    report["model"] = retrieval_metrics(vectors, relevant)
    if with_baselines:
        modalities = model.config.modalities
        report["content_baseline"] = retrieval_metrics(
            content_baseline_vectors(data.features, modalities), relevant
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
    if data is None:
        return "train_loss"
    kind, _ = validation_relevance(config, data)
    return "recall@1" if kind == "same_source" else "recall@10"


def fit(
    config: TrainConfig,
    train: TrainingData,
    val: TrainingData | None = None,
    *,
    device: torch.device | None = None,
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> FitResult:
    """Train a fusion model on ``train``, early-stopping on ``val`` (see module docstring)."""
    device = device or resolve_device("auto")
    threads = torch.get_num_threads()
    if device.type == "cpu" and config.cpu_threads > 0:
        torch.set_num_threads(config.cpu_threads)
    try:
        return _fit(config, train, val, device, checkpoint, on_epoch)
    finally:
        torch.set_num_threads(threads)


def _fit(
    config: TrainConfig,
    train: TrainingData,
    val: TrainingData | None,
    device: torch.device,
    checkpoint: Path | None,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> FitResult:
    torch.manual_seed(config.seed)
    model_config = model_config_for(config, train)
    model = FusionModel(model_config)
    _fit_standardizers(model, train)
    model.to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    loss_fn = MetricLoss(config.loss, config.margin, config.temperature)
    sampler = _sampler(config, train)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    metric_name = selection_metric(config, val)
    history: list[dict[str, float]] = []
    best_score, best_epoch, bad_epochs, start_epoch = -np.inf, -1, 0, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if checkpoint is not None and config.resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        best_state = state["best_state"]
        best_score, best_epoch = float(state["best_score"]), int(state["best_epoch"])
        bad_epochs, start_epoch = int(state["bad_epochs"]), int(state["epoch"]) + 1
        history = json.loads(state["history"])
        log.info("resumed from %s at epoch %d", checkpoint, start_epoch)
    total_triplets, total_samples, total_time = 0, 0, 0.0
    epochs = range(start_epoch, config.epochs)
    for epoch in track(epochs, len(epochs), "training", enabled=config.progress):
        if bad_epochs > config.patience:
            break
        rng = np.random.default_rng([config.seed, epoch])
        torch.manual_seed(config.seed * 100_003 + epoch)
        model.train()
        losses, triplets, samples = [], 0, 0
        started = time.perf_counter()
        batch: Batch
        for batch in sampler.epoch(rng):
            features = [train.features[i] for i in batch.items]
            inputs = build_inputs(
                model_config, features, rng=rng, view_fraction=batch.views.tolist()
            )
            inputs = inputs.to(device)
            labels = torch.from_numpy(batch.groups).to(device)
            with torch.autocast(device.type, enabled=use_amp):
                embeddings = model(inputs, model.modality_dropout_masks(inputs))
            not_negative = (
                None
                if batch.not_negative is None
                else torch.from_numpy(batch.not_negative).to(device)
            )
            out = loss_fn(embeddings, labels, not_negative)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(out.loss.item()))
            triplets += out.triplets
            samples += len(batch.items)
        elapsed = time.perf_counter() - started
        total_triplets, total_samples, total_time = (
            total_triplets + triplets,
            total_samples + samples,
            total_time + elapsed,
        )
        record = {
            "epoch": float(epoch),
            "train_loss": float(np.mean(losses)) if losses else 0.0,
            "triplets": float(triplets),
            "seconds": elapsed,
        }
        if val is not None and len(val) >= 2:
            report = evaluate_model(model, val, config, device, with_baselines=False)
            record.update({f"val_{k}": v for k, v in report["model"].items()})
            score = report["model"][metric_name]
        else:
            score = -record["train_loss"]
        record["score"] = float(score)
        history.append(record)
        if score > best_score + 1e-4:
            best_score, best_epoch, bad_epochs = float(score), epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad_epochs += 1
        if on_epoch is not None:
            on_epoch(record)
        log.debug("epoch %d: %s", epoch, record)
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            tmp = checkpoint.with_suffix(".tmp")
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "best_state": best_state,
                    "best_score": best_score,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "epoch": epoch,
                    "history": json.dumps(history),
                },
                tmp,
            )
            tmp.replace(checkpoint)
    model.load_state_dict(best_state)
    model.to("cpu").eval()
    return FitResult(
        model=model,
        history=history,
        best_epoch=best_epoch,
        best_score=float(best_score),
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
        raise ValueError(
            f"only {len(data)} usable videos in the catalog at {settings.resolved_home}; "
            "ingest more (`recsys ingest`) before training"
        )
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
    result = fit(config, train, val, device=device, checkpoint=run_dir / "checkpoint.pt")
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
    if val is not None and len(val) >= 2:
        metrics["validation"] = evaluate_model(result.model, val, config, torch.device("cpu"))
    version = save_model(
        settings, database, result.model, metrics=metrics, activate=config.activate
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": version,
        "config": asdict(config),
        "metrics": metrics,
        "history": result.history,
    }
    (run_dir / "metrics.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
    return TrainResult(version=version, run_dir=run_dir, metrics=metrics, fit=result)

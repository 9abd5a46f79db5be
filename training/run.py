"""A training run on the catalog: load the cached features, split, fit, gate, save and register.

The run id hashes the configuration and the catalog's content, so the same run on the same
videos resumes its checkpoint; the run directory keeps the figures (``metrics.json``) and the
videos whose signal trained the model (``warm.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.db import Database
from recsys.db.models import ModelStatus
from recsys.features import get_extractor
from recsys.models import save_model
from recsys.models.registry import active_model_version, resolve_device
from recsys.settings import Settings
from training.config import TrainConfig, apply_activation, should_activate
from training.data import TrainingData, load_training_data
from training.errors import TrainingError
from training.gate import GATE_METRIC, GateResult, gate_model, held_out_pairs
from training.loop import FitResult, fit
from training.model_evaluation import evaluate_model, validation_relevance

log = logging.getLogger(__name__)


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

"""A training run on the catalog: load the cached features, split, fit, gate, save and register.

The run id hashes the configuration and the catalog's content, so the same run on the same
videos resumes its checkpoint; the run directory keeps the figures (``metrics.json``) and the
videos whose signal trained the model (``warm.json``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.choices import PairSource
from recsys.db import Database
from recsys.db.models import ModelStatus
from recsys.features import get_extractor
from recsys.features.home_spec import home_spec
from recsys.models import save_model
from recsys.models.registry import active_model_version, resolve_device
from recsys.settings import Settings
from training.config import TrainConfig, apply_activation, should_activate
from training.data import TrainingData, load_training_data
from training.errors import TrainingError
from training.gate import (
    GATE_METRIC,
    GateResult,
    HeldOut,
    evidence,
    gate_model,
    sizing_advice,
    split_validation,
)
from training.loop import FitResult, fit
from training.model_evaluation import evaluate_model
from training.refit import refit

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    version: str
    run_dir: Path
    metrics: dict[str, Any]
    fit: FitResult  # the gated run (held-out videos unseen)
    active: bool = False  # whether ``version`` is the active model after training
    activation: str = ""  # why it is or is not active
    gate: GateResult | None = None  # the model gate's figures and verdict
    refit: FitResult | None = None  # the registered model's refit on all videos, if any

    @property
    def rejected(self) -> bool:
        return self.gate is not None and self.gate.status == ModelStatus.REJECTED


def train_model(settings: Settings, database: Database, config: TrainConfig) -> TrainResult:
    """Train, evaluate, save and register a model on the catalog's cached features."""
    settings.ensure_dirs()
    config = replace(config, extractor=home_spec(settings, database, config.extractor))
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
    device = resolve_device(settings.device)
    run = fit_gated(config, data, device=device, checkpoint=run_dir / "checkpoint.pt", name=run_id)
    result, train, held, validation, gate = run.fit, run.train, run.held, run.validation, run.gate
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
        "validation_videos": 0 if held is None else len(held),
    }
    if validation is not None:
        metrics["validation"] = validation
    metrics["gate"] = gate.to_dict()
    refitted, trained_on = run.refit, train
    metrics["refit"] = refitted is not None
    if refitted is not None:  # the gate's figures above stay those of the held-out model
        trained_on = data
        metrics["refit_epochs"] = len(refitted.history)
        log.info("refitted on all %d videos for %d epochs", len(data), len(refitted.history))
    version = save_model(
        settings,
        database,
        run.served.model,
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
    if refitted is not None:
        payload["refit_history"] = refitted.history
    (run_dir / "metrics.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
    (run_dir / WARM_FILE).write_text(json.dumps(warm_hashes(config, trained_on)))
    # After a refit no video is held out of the served model's training.
    unseen = held is not None and refitted is None
    held_out = [data.content_hashes[i] for i in held.queries] if unseen and held else []
    (run_dir / HELD_OUT_FILE).write_text(
        json.dumps(sorted(held_out) if data.content_hashes else [])
    )
    return TrainResult(
        version=version,
        run_dir=run_dir,
        metrics=metrics,
        fit=result,
        refit=refitted,
        active=active,
        activation=reason,
        gate=gate,
    )


@dataclass
class GatedRun:
    """A fit under the model gate: the gated run, its verdict and (maybe) the refit."""

    train: TrainingData  # the videos the gated run trained on
    held: HeldOut | None  # the videos the gate held out (None: too few videos to hold out)
    fit: FitResult  # the gated run: held-out videos unseen
    validation: dict[str, Any] | None  # the gated model's held-out figures
    gate: GateResult
    refit: FitResult | None  # retrained on all of the data (training.refit), or None

    @property
    def served(self) -> FitResult:
        """The model to register: the refit when there is one, else the gated run's."""
        return self.refit if self.refit is not None else self.fit


def fit_gated(
    config: TrainConfig,
    data: TrainingData,
    *,
    device: torch.device,
    checkpoint: Path | None = None,
    name: str = "",
) -> GatedRun:
    """Hold out videos (training.gate), fit on the rest, gate the model on the held-out videos,
    then refit on all of ``data`` (training.refit) unless ``config.refit`` is off, nothing was
    held out, the gate rejected the model or no epoch beat the content features.

    ``recsys train`` and ``bench/quality.py`` both train this way.
    """
    train_index, held = split_validation(data, config)
    train = data.subset(train_index)
    if held is not None:
        check_signal(config, train, f" after holding out {len(held)} videos for the model gate")
    log.info(
        "training run %s: %d train / %d held-out videos, %d related pairs, device %s",
        name,
        len(train),
        0 if held is None else len(held),
        len(train.pairs),
        device,
    )
    # The held-out videos stay unseen: the input transforms and the self-supervised loss fit
    # on the training videos only, as they would before a new upload arrives.
    result = fit(
        config,
        train,
        held,
        device=device,
        checkpoint=checkpoint,
        catalog=train.features if held is not None else data.features,
    )
    validation = None
    if held is not None and len(held.data) >= 2:
        validation = evaluate_model(
            result.model,
            held.data,
            config,
            torch.device("cpu"),
            catalog=train.features,
            queries=held.queries,
        )
    found = evidence(config, held)
    advice = "" if found.enough else sizing_advice(data, config, found)
    gate = gate_model(
        validation, GATE_METRIC, found, config.min_gain, best_epoch=result.best_epoch, advice=advice
    )
    refitted = None
    if config.refit and held is not None and gate.status != ModelStatus.REJECTED:
        refitted = refit(config, data, result, device=device)
    return GatedRun(train, held, result, validation, gate, refitted)


#: The content hashes of the videos whose pairs or labels a run's training used (its run dir).
WARM_FILE = "warm.json"
#: The content hashes of the videos the model gate held out (never seen by the training).
HELD_OUT_FILE = "held_out.json"


def warm_hashes(config: TrainConfig, train: TrainingData) -> list[str]:
    """Content hashes of the training videos the run's signal touched: every other video is
    *cold* for this model (self-supervised training uses no pair and no label: all cold)."""
    if config.pairs == PairSource.RELATED:
        used = np.unique(train.pairs) if len(train.pairs) else np.zeros(0, np.int64)
    elif config.pairs == PairSource.CATEGORIES:
        used = np.flatnonzero(train.labels >= 0)
    else:
        used = np.zeros(0, np.int64)
    return sorted({train.content_hashes[i] for i in used if train.content_hashes})


def check_signal(config: TrainConfig, data: TrainingData, held_out: str = "") -> None:
    """Fail before training when ``data`` holds no usable signal for ``config.pairs``
    (``held_out``: what was set aside, said in the message)."""
    fewer = " or a smaller --val-fraction" if held_out else ""
    if config.pairs == PairSource.RELATED and len(data.pairs) == 0:
        raise TrainingError(
            f"no usable signal: --pairs related but the catalog has no related pairs between "
            f"its videos{held_out}; import co-watch pairs (`recsys ingest --related` / "
            f"`--events`){fewer}, or train with --pairs categories/self"
        )
    if config.pairs == PairSource.CATEGORIES:
        categories = np.unique(data.labels[data.labels >= 0])
        if categories.shape[0] < 2:
            raise TrainingError(
                f"no usable signal: --pairs categories needs videos of at least 2 categories, "
                f"the catalog has {categories.shape[0]}{held_out}; give the videos categories "
                f"in the manifest{fewer}, or train with --pairs related/self"
            )

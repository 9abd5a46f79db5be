"""Model versions: saving, listing, activating and loading trained stage-B models.

A version id is a hash of the config JSON and the weights bytes, so the same training run
always yields the same id and any change yields a new one. Files live in
``models/<version>/`` (``model.safetensors``, ``config.json``, ``metrics.json``); the
``model_versions`` table says which one is active (exactly one after ``activate``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from sqlalchemy import CursorResult, exists, select, update
from sqlalchemy.orm import aliased

from recsys.catalog import get_model
from recsys.choices import Modality
from recsys.db import Database
from recsys.db.models import ModelStatus, ModelVersion
from recsys.device import resolve_device
from recsys.durable import ensure_dir, fsync_dir, write_synced
from recsys.errors import ConflictError, NotFoundError, RecsysError
from recsys.features.base import VideoFeatures
from recsys.models.config import ModelConfig
from recsys.models.fusion import FusionModel
from recsys.models.inputs import build_inputs, check_features
from recsys.settings import Settings

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
#: Videos per forward pass when the model reads pooled vectors (``Embedder.embed``): 4,096
#: rows took 15 us per video against 19 us for 256 on one core, 9 us on two.
VECTOR_PASS = 4096


class ModelNotFound(NotFoundError, LookupError):
    """No such model version (or its files are gone), or no active model. Still a
    ``LookupError`` for callers that catch that."""


class ModelLoadError(RecsysError, RuntimeError):
    """A model version's files exist but cannot be read (truncated, corrupt, unknown config)."""


class NoActiveModel(ModelNotFound, ConflictError):
    """No model version was asked for and none is active yet: train or activate one."""


def _weights_bytes(model: FusionModel) -> bytes:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return save(state)


def model_version_id(config: ModelConfig, weights: bytes) -> str:
    digest = hashlib.sha256(config.to_json().encode())
    digest.update(weights)
    return digest.hexdigest()[:16]


def save_model(
    settings: Settings,
    database: Database,
    model: FusionModel,
    *,
    metrics: dict[str, Any] | None = None,
    activate: bool = False,
    status: ModelStatus = ModelStatus.READY,
    status_reason: str | None = None,
) -> str:
    """Write the model's files, register its version and return the version id.

    The files are assembled in a uniquely named temporary directory, each fsynced, the directory
    fsynced and renamed into place, its parent fsynced, and only then is the row committed: a
    crash never leaves a registered version whose files are partial.
    """
    config = model.config
    weights = _weights_bytes(model)
    version = model_version_id(config, weights)
    directory = settings.models_dir / version
    if not (directory / WEIGHTS_FILE).exists():
        _write_model_files(settings.models_dir, directory, config, weights, metrics or {})
    with database.session() as session:
        row = session.get(ModelVersion, version)
        if row is None:
            row = ModelVersion(
                version=version,
                fusion=config.fusion,
                extractor=config.extractor,
                extractor_version=config.extractor_version,
                dim=config.dim,
                path=str(directory),
                config=config.to_dict(),
                metrics=metrics or {},
                is_active=False,
                status=str(status),
                status_reason=status_reason,
            )
            session.add(row)
        else:
            if metrics:
                row.metrics = metrics
            row.status, row.status_reason = str(status), status_reason
    if activate:
        activate_model(database, version)
    return version


def _write_model_files(
    root: Path, directory: Path, config: ModelConfig, weights: bytes, metrics: dict[str, Any]
) -> None:
    ensure_dir(root)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o755)
        write_synced(tmp / WEIGHTS_FILE, weights)
        write_synced(
            tmp / CONFIG_FILE, json.dumps(config.to_dict(), indent=2, sort_keys=True).encode()
        )
        write_synced(tmp / METRICS_FILE, json.dumps(metrics, indent=2, sort_keys=True).encode())
        fsync_dir(tmp)
        shutil.rmtree(directory, ignore_errors=True)  # a partial copy from an older release
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(root)


class ModelRejected(ConflictError):
    """The model gate rejected this version: it ranks worse than the un-learned content
    features on its validation data; activating it takes ``force``."""


def activate_model(database: Database, version: str, *, force: bool = False) -> None:
    """Make ``version`` the one active model (all others inactive) in one transaction.

    A version the model gate rejected is refused unless ``force``.
    """
    with database.session() as session:
        row = session.get(ModelVersion, version)
        if row is None:
            raise ModelNotFound(f"no model version {version!r}; see `recsys models list`")
        if row.status == ModelStatus.REJECTED and not force:
            raise ModelRejected(
                f"model {version} was rejected by the model gate ({row.status_reason}); "
                "pass --force to activate it anyway"
            )
        session.execute(
            update(ModelVersion).where(ModelVersion.version != version).values(is_active=False)
        )
        session.execute(
            update(ModelVersion).where(ModelVersion.version == version).values(is_active=True)
        )


def active_model_version(database: Database) -> str | None:
    """The active model version, or None when no model is active yet."""
    with database.session() as session:
        row = get_model(session)
        return None if row is None else row.version


def activate_if_none_active(database: Database, version: str) -> bool:
    """Make ``version`` active only when no model is active; whether it did.

    The check and the activation are one conditional UPDATE behind a lock on the version rows,
    so of two first trainings finishing at once only one becomes active, and a later one never
    takes activation from it.
    """
    other = aliased(ModelVersion)
    with database.session() as session:
        # Lock every version row (PostgreSQL): a second first-training waits here, then sees
        # the first one's activation. SQLite runs the one UPDATE under its write lock anyway.
        versions = session.scalars(select(ModelVersion.version).with_for_update()).all()
        if version not in versions:
            raise ModelNotFound(f"no model version {version!r}; see `recsys models list`")
        result = session.execute(
            update(ModelVersion)
            .where(
                ModelVersion.version == version,
                ~exists().where(other.is_active.is_(True)),
            )
            .values(is_active=True)
        )
        return bool(cast(CursorResult[Any], result).rowcount)


def list_models(database: Database) -> list[dict[str, Any]]:
    """Every registered version, newest first, with its evaluation figures."""
    with database.session() as session:
        rows = session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc())).all()
        return [
            {
                "version": r.version,
                "fusion": r.fusion,
                "extractor": r.extractor,
                "extractor_version": r.extractor_version,
                "dim": r.dim,
                "is_active": bool(r.is_active),
                "status": r.status,
                "status_reason": r.status_reason,
                "created_at": r.created_at.isoformat() if r.created_at else None,
                "metrics": r.metrics or {},
                "config": r.config or {},
            }
            for r in rows
        ]


def load_model(directory: Path) -> FusionModel:
    """Build the model from ``config.json`` and load safetensors weights (no pickle)."""
    config_path = directory / CONFIG_FILE
    weights_path = directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelNotFound(
            f"model files missing in {directory} (need {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    try:
        config = ModelConfig.from_dict(json.loads(config_path.read_text()))
        model = FusionModel(config)
        model.load_state_dict(load_file(str(weights_path)))
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, SafetensorError) as error:
        raise ModelLoadError(
            f"model files in {directory} are damaged ({type(error).__name__}: {error}); "
            "train the model again or activate another version (`recsys models list`)"
        ) from error
    model.eval()
    return model


class Embedder:
    """A loaded model version that turns cached features into embeddings."""

    def __init__(
        self, version: str, model: FusionModel, device: torch.device, batch_size: int = 256
    ) -> None:
        self.version = version
        self.model = model.to(device).eval()
        self.config = model.config
        self.device = device
        self.batch_size = batch_size
        self._lock = threading.Lock()

    @property
    def extractor(self) -> str:
        return self.config.extractor

    @property
    def extractor_version(self) -> str:
        return self.config.extractor_version

    @property
    def dim(self) -> int:
        return self.config.dim

    def embed(self, features: Sequence[VideoFeatures]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(n, dim) float32 L2-normalised vectors and per-modality vectors {visual, audio}.

        A video without audio gets an all-zero ``audio`` modality vector.
        """
        check_features(self.config, features)
        n = len(features)
        # Pooled vectors are small: large passes amortise the per-operation overhead of the
        # towers; frame and log-mel inputs keep ``batch_size`` (their tensors are large).
        step = self.batch_size
        if self.config.input_kind == "vector":
            step = max(step, VECTOR_PASS)
        fused = np.empty((n, self.dim), dtype=np.float32)
        per: dict[str, np.ndarray] = {}
        with self._lock, torch.inference_mode():
            for start in range(0, n, step):
                chunk = features[start : start + step]
                stop = start + len(chunk)
                inputs = build_inputs(self.config, chunk).to(self.device)
                vectors, modalities = self.model.embed_with_modalities(inputs)
                # Each pass lands in its rows of the outputs (one copy, no concatenation).
                torch.from_numpy(fused[start:stop]).copy_(vectors)
                for name in Modality:
                    out = per.get(name)
                    if out is None:
                        width = int(modalities[name].shape[1])
                        out = per[name] = np.empty((n, width), dtype=np.float32)
                    torch.from_numpy(out[start:stop]).copy_(modalities[name])
        if not per:
            per = {m: np.zeros((0, self.dim), np.float32) for m in Modality}
        return fused, per


def no_active_model(database: Database) -> NoActiveModel:
    """The error of a home without an active model, saying why and what to do: where the model
    gate refused the models trained here, it names the newest refused version, the gate's
    reason and the command that activates it anyway."""
    with database.session() as session:
        refused = session.scalars(
            select(ModelVersion)
            .where(ModelVersion.status != ModelStatus.READY.value)
            .order_by(ModelVersion.created_at.desc(), ModelVersion.version)
        ).first()
        if refused is None:
            return NoActiveModel(
                "no active model: train one with `recsys train` (a model the model gate "
                "passes becomes active when none is) or run `recsys models activate VERSION`"
            )
        rejected = refused.status == ModelStatus.REJECTED.value
        verdict = "rejected" if rejected else "could not judge (too little validation data)"
        command = f"recsys models activate {refused.version}" + (" --force" if rejected else "")
        return NoActiveModel(
            f"no active model: the model gate {verdict} model {refused.version} "
            f"({refused.status_reason or 'no reason recorded'}), so it was not activated; "
            f"activate it anyway with `{command}`, or train a better one with `recsys train`"
        )


def load_embedder(settings: Settings, database: Database, version: str | None = None) -> Embedder:
    """The named model version, or the active one (``ModelNotFound`` when there is none)."""
    with database.session() as session:
        row = get_model(session, version)
        name = None if row is None else row.version
    if name is None:
        if version is None:
            raise no_active_model(database)
        raise ModelNotFound(f"no model version {version!r}; see `recsys models list`")
    directory = settings.models_dir / name
    model = load_model(directory)
    return Embedder(name, model, resolve_device(settings.device))

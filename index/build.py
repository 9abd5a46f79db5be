"""``build_index``: one model version's servable embeddings → a verified, published index.

Steps: load the embeddings of deleted/failed-free videos, choose the index, construct it, tune
its search knob to the recall gate on held-out queries against exact search, write a version
directory, and (unless ``publish=False``) activate it. A build that misses the gate is recorded
as ``rejected`` and never touches the served index.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from index.choose import choose_index
from index.construct import construct_index, normalized
from index.errors import IndexBuildError, RecallTooLow
from index.evaluate import exact_ground_truth, pick_queries, tune_search
from index.gpu import use_gpu
from index.manifest import new_version_name
from index.publish import activate_index, cleanup_versions, record_build, write_version
from recsys.catalog import get_model
from recsys.db import Database
from recsys.settings import Settings
from recsys.store import EmbeddingStore

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass
class BuildOptions:
    """What ``recsys index build`` takes on the command line."""

    model_version: str | None = None  # None: the active model
    kind: str = "auto"  # auto | flat | ivfflat | ivfpq | hnsw | a faiss factory string
    memory_budget: str | int = "4G"
    gpu: str = "auto"  # auto | on | off
    min_recall: float = 0.95
    publish: bool = True
    k: int = 10
    queries: int = 1000  # held-out queries for the recall gate
    seed: int = 0


@dataclass
class BuildResult:
    version: str
    directory: Path | None
    model_version: str
    factory: str
    kind: str
    count: int
    dim: int
    recall_at_10: float
    search_params: dict[str, int]
    build_seconds: float
    published: bool
    gpu: bool
    removed_versions: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["directory"] = str(self.directory) if self.directory else None
        return out


def _noop(_: str) -> None:
    return None


def build_from_vectors(
    settings: Settings,
    database: Database,
    model_version: str,
    ids: np.ndarray,
    vectors: np.ndarray,
    options: BuildOptions,
    progress: Progress = _noop,
    *,
    snapshot_at: datetime | None = None,
) -> BuildResult:
    """Build, gate and publish an index over given vectors (the testable core of the build).

    ``snapshot_at`` is when the embeddings were read: ``update_index`` re-adds videos whose
    embedding was written after it.
    """
    if not 0.0 <= options.min_recall <= 1.0:
        raise IndexBuildError(f"--min-recall must be within [0, 1], got {options.min_recall}")
    count = int(ids.shape[0])
    if count == 0:
        raise IndexBuildError(
            f"model {model_version} has no servable embeddings; run `recsys embed` first"
        )
    started = time.perf_counter()
    gpu = use_gpu(options.gpu)
    vectors = normalized(vectors)
    dim = int(vectors.shape[1])
    choice = choose_index(count, dim, options.memory_budget, options.kind)
    progress(f"building {choice.factory} over {count} vectors of dim {dim} ({choice.reason})")
    built = construct_index(vectors, ids, choice, gpu=gpu, seed=options.seed)
    progress(f"built in {sum(built.timings.values()):.1f}s; measuring recall@{options.k}")
    positions = pick_queries(count, options.queries, built.train_ids, options.seed)
    truth = exact_ground_truth(vectors, ids, vectors[positions], options.k)
    tuned = tune_search(built.index, truth, options.min_recall)
    build_seconds = time.perf_counter() - started
    version = new_version_name()
    fields: dict[str, Any] = {
        "model_version": model_version,
        "factory": choice.factory,
        "kind": choice.kind,
        "choice_reason": choice.reason,
        "estimated_bytes": choice.estimated_bytes,
        "search_params": tuned.params,
        "recall_at_10": tuned.recall,
        "recall_k": options.k,
        "recall_queries": int(positions.size),
        "recall_curve": tuned.curve,
        "min_recall": options.min_recall,
        "build_seconds": build_seconds,
        "timings": {**built.timings, "tune_s": tuned.seconds},
        "built_on": "gpu" if built.on_gpu else "cpu",
        "gpu_float16": choice.kind == "ivfpq" or count * dim * 4 > (1 << 30),
        "trained_count": count,
        "train_size": int(built.train_ids.size),
        "embeddings_as_of": (snapshot_at or datetime.now(UTC)).isoformat(),
    }
    if not tuned.reached:
        fields.update(version=version, count=count, dim=dim)
        reason = (
            f"recall@{options.k} {tuned.recall:.4f} < required {options.min_recall:.4f} "
            f"with {choice.factory} at its best setting {tuned.params}"
        )
        record_build(database, fields, None, status="rejected", reason=reason)
        raise RecallTooLow(
            f"index build {version} refused: {reason}; the served index is unchanged. "
            "Use a larger --memory-budget, another --kind, or a lower --min-recall",
            recall=tuned.recall,
            min_recall=options.min_recall,
            version=version,
        )
    directory, manifest = write_version(settings, built.index, fields, version=version)
    record_build(database, manifest, directory, status="built")
    progress(f"index {version}: recall@{options.k} {tuned.recall:.4f} with {tuned.params}")
    removed: list[str] = []
    if options.publish:
        try:
            activate_index(settings, database, version)
        except Exception as error:
            shutil.rmtree(directory, ignore_errors=True)
            record_build(database, manifest, None, status="rejected", reason=str(error))
            raise
        removed = cleanup_versions(settings, database)
        progress(f"published {version}")
    return BuildResult(
        version=version,
        directory=directory,
        model_version=model_version,
        factory=choice.factory,
        kind=choice.kind,
        count=count,
        dim=dim,
        recall_at_10=tuned.recall,
        search_params=tuned.params,
        build_seconds=build_seconds,
        published=options.publish,
        gpu=built.on_gpu,
        removed_versions=removed,
        manifest=manifest,
    )


def build_index(
    settings: Settings,
    database: Database,
    options: BuildOptions | None = None,
    progress: Progress = _noop,
) -> BuildResult:
    """Build an index from the servable embeddings of ``options.model_version`` (default active)."""
    options = options or BuildOptions()
    snapshot_at = datetime.now(UTC)
    with database.session() as session:
        model = get_model(session, options.model_version)
        if model is None:
            if options.model_version:
                raise IndexBuildError(
                    f"model version {options.model_version} is not registered; "
                    "see `recsys models list`"
                )
            raise IndexBuildError(
                "no active model; train one and run `recsys models activate VERSION`, "
                "or pass --model"
            )
        model_version, model_dim = model.version, int(model.dim)
        progress(f"loading embeddings of model {model_version}")
        matrix = EmbeddingStore(settings).load(session, model_version, servable_only=True)
    if len(matrix) and matrix.dim != model_dim:
        raise IndexBuildError(
            f"embeddings of model {model_version} have dimension {matrix.dim}, the model "
            f"says {model_dim}; re-embed with `recsys embed --model {model_version}`"
        )
    return build_from_vectors(
        settings,
        database,
        model_version,
        matrix.ids,
        matrix.vectors,
        options,
        progress,
        snapshot_at=snapshot_at,
    )

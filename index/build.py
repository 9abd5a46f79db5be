"""``build_index``: one model version's servable embeddings → a verified, published index.

Steps: load the embeddings of deleted/failed-free videos, choose the index, construct it, and
hand it to the lifecycle (:func:`index.lifecycle.gate_and_publish`): tune its search knob to
the recall gate on held-out queries against exact search, write a version directory, and
(unless ``publish=False``) activate it. A build that misses the gate is recorded as
``rejected`` and never touches the served index.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from index.choose import choose_index
from index.construct import construct_index, normalized
from index.errors import IndexBuildError
from index.gpu import use_gpu
from index.lifecycle import Candidate, Say, gate_and_publish, quiet
from index.manifest import IndexManifest, new_version_name
from index.options import BuildOptions, GateOptions
from recsys.catalog import get_model
from recsys.db import Database
from recsys.settings import Settings
from recsys.store import EmbeddingStore

__all__ = ["BuildOptions", "BuildResult", "GateOptions", "build_from_vectors", "build_index"]
log = logging.getLogger(__name__)
Progress = Say  # the old name of the step reporter


@dataclass
class BuildResult:
    version: str
    directory: Path | None
    model_version: str
    factory: str
    kind: str
    count: int
    dim: int
    recall_at_k: float
    k: int
    search_params: dict[str, int]
    build_seconds: float
    published: bool
    gpu: bool
    removed_versions: list[str] = field(default_factory=list)
    manifest: IndexManifest | None = None

    @property
    def recall_at_10(self) -> float | None:
        """Deprecated: :attr:`recall_at_k` when the gate measured 10 neighbours, else None."""
        return self.recall_at_k if self.k == 10 else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; ``recall_at_10`` is kept for old readers (None unless ``k`` is 10)."""
        return {
            "version": self.version,
            "directory": str(self.directory) if self.directory else None,
            "model_version": self.model_version,
            "factory": self.factory,
            "kind": self.kind,
            "count": self.count,
            "dim": self.dim,
            "recall_at_k": self.recall_at_k,
            "k": self.k,
            "recall_at_10": self.recall_at_10,
            "search_params": dict(self.search_params),
            "build_seconds": self.build_seconds,
            "published": self.published,
            "gpu": self.gpu,
            "removed_versions": list(self.removed_versions),
            "manifest": self.manifest.to_json() if self.manifest else None,
        }


def build_from_vectors(
    settings: Settings,
    database: Database,
    model_version: str,
    video_keys: np.ndarray,
    vectors: np.ndarray,
    options: BuildOptions,
    progress: Say = quiet,
    *,
    snapshot_at: datetime | None = None,
) -> BuildResult:
    """Build, gate and publish an index over given vectors (the testable core of the build).

    ``video_keys`` are the videos' internal int64 keys, one per row of ``vectors``.
    ``snapshot_at`` is when the embeddings were read: ``update_index`` re-adds videos whose
    embedding was written after it.
    """
    count = int(video_keys.shape[0])
    if count == 0:
        raise IndexBuildError(
            f"model {model_version} has no servable embeddings; run `recsys embed` first"
        )
    started = time.perf_counter()
    gpu = use_gpu(options.gpu)
    vectors = normalized(vectors)
    dim = int(vectors.shape[1])
    choice = choose_index(count, dim, options.memory_budget, options.index_spec)
    progress(f"building {choice.factory} over {count} vectors of dim {dim} ({choice.reason})")
    built = construct_index(vectors, video_keys, choice, gpu=gpu, seed=options.seed)
    progress(f"built in {sum(built.timings.values()):.1f}s; measuring recall@{options.k}")
    draft = IndexManifest(
        version=new_version_name(),
        model_version=model_version,
        factory=choice.factory,
        kind=choice.kind,
        count=count,
        dim=dim,
        choice_reason=choice.reason,
        estimated_bytes=choice.estimated_bytes,
        built_on="gpu" if built.on_gpu else "cpu",
        gpu_float16=choice.kind == "ivfpq" or count * dim * 4 > (1 << 30),
        trained_count=count,
        train_size=int(built.train_ids.size),
        embeddings_as_of=(snapshot_at or datetime.now(UTC)).isoformat(),
    )
    candidate = Candidate(
        index=built.index,
        draft=draft,
        vectors=vectors,
        keys=np.ascontiguousarray(video_keys, dtype=np.int64),
        held_out=built.train_ids,
        started=started,
        timings=dict(built.timings),
    )
    outcome = gate_and_publish(
        settings, database, candidate, options.gate, publish=options.publish, progress=progress
    )
    manifest = outcome.manifest
    return BuildResult(
        version=manifest.version,
        directory=outcome.directory,
        model_version=model_version,
        factory=choice.factory,
        kind=choice.kind,
        count=manifest.count,
        dim=manifest.dim,
        recall_at_k=outcome.tuned.recall,
        k=manifest.k,
        search_params=dict(manifest.search_params),
        build_seconds=manifest.build_seconds or 0.0,
        published=outcome.published,
        gpu=built.on_gpu,
        removed_versions=outcome.removed_versions,
        manifest=manifest,
    )


def build_index(
    settings: Settings,
    database: Database,
    options: BuildOptions | None = None,
    progress: Say = quiet,
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
        matrix.video_keys,
        matrix.vectors,
        options,
        progress,
        snapshot_at=snapshot_at,
    )

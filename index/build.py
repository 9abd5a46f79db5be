"""``build_index``: one model version's servable embeddings → a verified, published index.

Steps: locate the embeddings of deleted/failed-free videos, choose the index, construct it
from a seeded sample and a streamed pass over the store files (:mod:`index.source`: the whole
matrix is never in memory; the gate's exact answers are computed on the same pass), and
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
from index.construct import construct_index, make_index, training_positions
from index.errors import IndexBuildError
from index.gpu import use_gpu
from index.lifecycle import Candidate, GateTruthBuilder, Say, gate_and_publish, quiet
from index.manifest import IndexManifest, new_version_name
from index.options import BuildOptions, GateOptions
from index.source import ArraySource, Chunk, StoreSource, VectorSource
from recsys.catalog import get_model
from recsys.db import Database
from recsys.settings import Settings

__all__ = [
    "BuildOptions",
    "BuildResult",
    "GateOptions",
    "build_from_source",
    "build_from_vectors",
    "build_index",
]
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
    """Build, gate and publish an index over given vectors (in memory).

    ``video_keys`` are the videos' internal int64 keys, one per row of ``vectors``.
    ``snapshot_at`` is when the embeddings were read: ``update_index`` re-adds videos whose
    embedding was written after it.
    """
    source = ArraySource(video_keys, vectors)
    return build_from_source(
        settings, database, model_version, source, options, progress, snapshot_at=snapshot_at
    )


def build_from_source(
    settings: Settings,
    database: Database,
    model_version: str,
    source: VectorSource,
    options: BuildOptions,
    progress: Say = quiet,
    *,
    snapshot_at: datetime | None = None,
) -> BuildResult:
    """Build, gate and publish an index over the vectors of ``source`` (streamed: a seeded
    sample to train on, then every vector once, chunk by chunk, added and searched exactly
    by the gate's queries)."""
    count = source.count
    if count == 0:
        raise IndexBuildError(
            f"model {model_version} has no servable embeddings; run `recsys embed` first"
        )
    started = time.perf_counter()
    gpu = use_gpu(options.gpu)
    dim = source.dim
    choice = choose_index(count, dim, options.memory_budget, options.kind, options.factory)
    progress(f"building {choice.factory} over {count} vectors of dim {dim} ({choice.reason})")
    index = make_index(choice.factory, dim)
    train_ids = training_positions(count, index, choice, options.seed)
    gate_truth = GateTruthBuilder(source.keys, train_ids, options.gate)
    gate_truth.start(source.take(gate_truth.positions))
    truth_s = 0.0

    def exact(chunk: Chunk) -> None:
        nonlocal truth_s
        t0 = time.perf_counter()
        gate_truth.add(chunk.positions, chunk.keys, chunk.vectors)
        truth_s += time.perf_counter() - t0

    built = construct_index(
        source,
        choice=choice,
        gpu=gpu,
        seed=options.seed,
        index=index,
        train_ids=train_ids,
        on_chunk=exact,
    )
    timings = dict(built.timings)
    timings["add_s"] = timings.get("add_s", 0.0) - truth_s
    timings["truth_s"] = truth_s
    progress(f"built in {sum(timings.values()):.1f}s; measuring recall@{options.k}")
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
        vectors=None,
        keys=np.ascontiguousarray(source.keys, dtype=np.int64),
        held_out=built.train_ids,
        started=started,
        timings=timings,
        truth=gate_truth.finish(),
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
    """Build an index from the servable embeddings of ``options.model_version`` (default
    active), streamed from the store files."""
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
        progress(f"locating embeddings of model {model_version}")
        source = StoreSource.open(settings, session, model_version, servable_only=True)
    with source:
        if source.count and source.dim != model_dim:
            raise IndexBuildError(
                f"embeddings of model {model_version} have dimension {source.dim}, the model "
                f"says {model_dim}; re-embed with `recsys embed --model {model_version}`"
            )
        return build_from_source(
            settings, database, model_version, source, options, progress, snapshot_at=snapshot_at
        )

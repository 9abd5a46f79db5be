"""Ray engine: the same stage-A and stage-B functions on Ray Data, writes from the driver.

``from_items`` (one row per video) → ``map_batches`` with :func:`_features_batch` (stateless
tasks: decode + extract, the local engine's worker function) → ``map_batches`` with the stateful
:class:`_EmbedActor` (the model loads once per actor; one GPU per actor when the cluster has
GPUs) → the driver iterates the output and commits each batch through the run context, so the
feature cache and the database are written in one place, exactly as with the local engine.
Cache hits are resolved in the driver before the pipeline and ride along in their rows.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from recsys.ids import VideoKey
from recsys.refresh.context import RunContext
from recsys.refresh.embed import EmbeddedBatch
from recsys.refresh.errors import RefreshError
from recsys.stage_a import FeatureResult, FeatureSpec, VideoTask, compute_features, init_worker

logger = logging.getLogger(__name__)

#: Memory reserved per stage-A task (frames at the model's size, audio, features).
STAGE_A_MEMORY_BYTES = 256 * 1024 * 1024


def _object_column(values: list[Any]) -> np.ndarray:
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        column[i] = value
    return column


def _task(batch: dict[str, np.ndarray], i: int) -> VideoTask:
    """The task of row ``i`` of a Ray batch."""
    return VideoTask(
        VideoKey(int(batch["video_key"][i])),
        str(batch["video_id"][i]),
        str(batch["uri"][i]),
        str(batch["content_hash"][i]),
    )


def _features_batch(batch: dict[str, np.ndarray], spec: FeatureSpec, fn: Any) -> dict[str, Any]:
    """Stage A for the rows of one Ray batch that are not cache hits."""
    init_worker()
    fn = fn or compute_features
    features = list(batch["features"])
    errors = [str(e) for e in batch["error"]]
    seconds = [float(s) for s in batch["feature_seconds"]]
    for i in range(len(features)):
        if batch["cache_hit"][i]:
            continue
        task = _task(batch, i)
        result: FeatureResult = fn(task, spec)
        features[i] = result.features
        errors[i] = result.error or ("no features" if result.features is None else "")
        seconds[i] = result.seconds
    out = dict(batch)
    out["features"] = _object_column(features)
    out["error"] = np.array(errors, dtype=object)
    out["feature_seconds"] = np.array(seconds, dtype=np.float64)
    return out


class _EmbedActor:
    """Stage B in a Ray actor: loads the model once, embeds the successful rows of a batch."""

    def __init__(self, settings_payload: dict[str, Any], model_version: str) -> None:
        from recsys.db import open_database
        from recsys.models import load_embedder
        from recsys.settings import Settings

        settings = Settings(**settings_payload)
        database = open_database(settings, migrate=False)
        try:
            self.embedder = load_embedder(settings, database, model_version)
        finally:
            database.dispose()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        start = time.perf_counter()
        ok = [i for i, error in enumerate(batch["error"]) if not error]
        n = len(batch["error"])
        vectors: list[Any] = [None] * n
        modalities: list[Any] = [None] * n
        if ok:
            matrix, per_modality = self.embedder.embed([batch["features"][i] for i in ok])
            for row, i in enumerate(ok):
                vectors[i] = np.asarray(matrix[row], dtype=np.float32)
                modalities[i] = {
                    k: np.asarray(v[row], dtype=np.float32) for k, v in per_modality.items()
                }
        out = dict(batch)
        out["vector"] = _object_column(vectors)
        out["modalities"] = _object_column(modalities)
        share = (time.perf_counter() - start) / max(len(ok), 1)
        out["model_seconds"] = np.full(n, share, dtype=np.float64)
        return out


def _commit(ctx: RunContext, batch: dict[str, np.ndarray]) -> None:
    """Driver side of one output batch: cache new features, record failures, write vectors."""
    tasks: list[VideoTask] = []
    vectors: list[np.ndarray] = []
    modalities: dict[str, list[np.ndarray]] = {}
    hits = 0
    model_seconds = 0.0
    for i in range(len(batch["video_key"])):
        task = _task(batch, i)
        error = str(batch["error"][i])
        hit = bool(batch["cache_hit"][i])
        if not hit:
            ctx.computed(
                FeatureResult(
                    task,
                    features=None if error else batch["features"][i],
                    error=error or None,
                    seconds=float(batch["feature_seconds"][i]),
                )
            )
        if error:
            ctx.fail(task, error)
            continue
        hits += int(hit)
        tasks.append(task)
        vectors.append(batch["vector"][i])
        for key, value in batch["modalities"][i].items():
            modalities.setdefault(key, []).append(value)
        model_seconds += float(batch["model_seconds"][i])
    if tasks:
        ctx.write(
            EmbeddedBatch(
                tasks=tasks,
                vectors=np.stack(vectors),
                modalities={k: np.stack(v) for k, v in modalities.items()},
                seconds=model_seconds,
            ),
            cache_hits=hits,
        )


def run_ray(ctx: RunContext, tasks: list[VideoTask]) -> None:
    """Compute, embed and commit ``tasks`` on Ray (a local instance unless an address is set)."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise RefreshError(
            "the ray engine needs the `distributed` extra: pip install 'video-recsys[distributed]'"
        ) from error

    started_here = False
    if not ray.is_initialized():
        address = ctx.options.ray_address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address)
        else:
            ray.init(num_cpus=ctx.summary.workers, include_dashboard=False)
        started_here = True
    try:
        rows = []
        hits = ctx.lookup(tasks)  # the cache reads in bulk, chunked by query
        for task in tasks:
            hit = hits.get(task.video_key)
            rows.append(
                {
                    "video_key": task.video_key,
                    "video_id": task.video_id,
                    "uri": task.uri,
                    "content_hash": task.content_hash,
                    "cache_hit": hit is not None,
                    "features": hit.features if hit is not None else None,
                    "error": "",
                    "feature_seconds": 0.0,
                }
            )
        gpus = int(ray.cluster_resources().get("GPU", 0))
        actor_options: dict[str, Any] = (
            {"num_gpus": 1, "concurrency": gpus} if gpus else {"num_cpus": 1, "concurrency": 1}
        )
        batch_size = ctx.summary.batch_size
        misses = [row for row in rows if not row["cache_hit"]]
        cached = [row for row in rows if row["cache_hit"]]
        parts = []
        if misses:
            parts.append(
                # One video per block, so every stage-A task decodes one video and the
                # scheduler balances them over the cluster's CPUs.
                ray.data.from_items(misses, override_num_blocks=min(len(misses), 4096)).map_batches(
                    _features_batch,  # type: ignore[arg-type]
                    fn_kwargs={"spec": ctx.spec, "fn": ctx.options.feature_fn},
                    batch_format="numpy",
                    num_cpus=1,
                    # What decoding one video needs. Declaring it also keeps Ray from fusing
                    # stage A into the model actors (their resources differ), which would
                    # serialise decoding behind the actors.
                    memory=STAGE_A_MEMORY_BYTES,
                )
            )
        if cached:  # cache hits skip stage A entirely
            parts.append(
                ray.data.from_items(cached, override_num_blocks=max(1, len(cached) // batch_size))
            )
        dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        dataset = dataset.map_batches(
            _EmbedActor,
            fn_constructor_kwargs={
                "settings_payload": ctx.settings.model_dump(),
                "model_version": ctx.summary.model_version,
            },
            batch_size=batch_size,
            batch_format="numpy",
            **actor_options,
        )
        for batch in dataset.iter_batches(batch_size=batch_size, batch_format="numpy"):
            _commit(ctx, batch)
    finally:
        if started_here:
            ray.shutdown()

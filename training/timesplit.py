"""Time-split evaluation: train on the co-watch graph before T, score on the co-watch after T.

The evaluation the field trusts for a recommender: the model only ever sees the past. For a
split time T,

* the **past** graph (co-watch of the events before T, normalised, min support, top-N: the
  same options as ingest) trains a stage-B model through the training library's public
  :func:`training.fit` (``pairs=related``), and is the item-item **collaborative** baseline;
  the model trains on each video's strongest past partners (:func:`strongest_pairs`) for the
  configured epochs (kept by training loss); optionally (``holdout``) the epoch is chosen on
  the past: the newest videos with past co-watch are held out (as cold videos are), their
  co-watch among themselves is the validation relevance (:func:`holdout_newest`), then the
  model is trained again on the whole past for that many epochs;
* the **future** graph (the events at or after T) is the ground truth: for every video with
  future partners, how many of them a method ranks in its top K (recall@K, normalised so a
  perfect ranking scores 1, as in :mod:`training.evaluation`) and where (nDCG@K);
* queries are split into **warm** videos (first seen before T) and **cold** ones (first seen
  at or after T: no past co-watch, so collaborative filtering knows nothing about them);
* every method ranks the whole catalog except the query: ``random`` (the expectation, exact),
  ``content`` (the un-learned content baseline, :mod:`training.baselines`), ``collaborative``
  (the video's past partners by weight; nothing for a cold video), ``learned`` (the model's
  embeddings) and ``hybrid`` (learned and collaborative blended by the video's past evidence
  with :func:`recsys.events.hybrid.blend`, the function the API serves).

:func:`evaluate_time_split` works on in-memory inputs (the benchmark calls it);
:func:`evaluate_events` is ``recsys eval --events FILE… --split-at T``: the files are added to
the aggregate store of the events source (idempotent; ``related_pairs`` is not touched), and the
catalog's cached features are evaluated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.db import Database
from recsys.events import CowatchGraph, EventOptions, EventStore, expand_event_paths
from recsys.events.hybrid import (
    DEFAULT_BLEND,
    DEFAULT_TOP_N,
    BlendSettings,
    NeighbourLists,
    blend,
)
from recsys.events.ingest import stored_options
from recsys.features import VideoFeatures, get_extractor
from recsys.features.home_spec import home_spec
from recsys.models.registry import resolve_device
from recsys.settings import Settings
from training.baselines import content_baseline_vectors
from training.config import TrainConfig
from training.data import TrainingData, load_training_data
from training.errors import TrainingError
from training.loop import fit
from training.model_evaluation import embed_data

log = logging.getLogger(__name__)

METHODS = ("random", "content", "collaborative", "learned", "hybrid")
GROUPS = ("warm", "cold")


@dataclass
class TimeSplit:
    """What a time-split evaluation needs: the catalog's features and the two graphs."""

    video_ids: list[str]
    features: list[VideoFeatures]
    past: CowatchGraph  # co-watch of the events before ``split_at``
    future: CowatchGraph  # co-watch of the events at or after ``split_at``
    first_seen: dict[str, datetime]  # each video's first event
    split_at: datetime


def parse_split_time(text: str) -> datetime:
    """T from ISO 8601 (``2024-01-20``, ``2024-01-20T12:00:00Z``, with an offset) or epoch
    seconds; without an offset it is UTC."""
    value = text.strip()
    try:
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise TrainingError(
                f"split time {text!r} is neither ISO 8601 (2024-01-20T00:00:00Z) nor epoch seconds"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positions(
    graph: CowatchGraph, position: dict[str, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = [
        (position[a], position[b], float(w))
        for a, b, w in zip(graph.video_a, graph.video_b, graph.weight, strict=True)
        if a in position and b in position and a != b
    ]
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    a, b, w = zip(*rows, strict=True)
    return np.array(a, np.int64), np.array(b, np.int64), np.array(w, np.float64)


def top_k(vectors: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Each row's ``k`` nearest other rows by inner product, best first: (n, min(k, n-1))."""
    vectors = np.asarray(vectors, np.float32)
    n = vectors.shape[0]
    k = min(k, n - 1)
    out = np.zeros((n, k), np.int64)
    for lo in range(0, n, chunk):
        scores = vectors[lo : lo + chunk] @ vectors.T
        rows = np.arange(scores.shape[0])
        scores[rows, lo + rows] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < n else np.argsort(-scores)
        best = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -best), axis=1) if part.size else part
        out[lo : lo + chunk] = np.take_along_axis(part, order, axis=1)[:, :k]
    return out


def ranked_metrics(
    rankings: Sequence[np.ndarray],
    relevant: Sequence[np.ndarray | None],
    gallery: int,
    ks: Sequence[int],
) -> dict[str, float]:
    """Mean recall@K and nDCG@K over the queries with relevant items (definitions of
    :mod:`training.evaluation`; ``gallery``: the items a query ranks, itself excluded)."""
    discounts = 1.0 / np.log2(np.arange(2, gallery + 2))
    sums: dict[str, float] = {}
    queries = 0
    for ranking, rel in zip(rankings, relevant, strict=True):
        if rel is None or not len(rel):
            continue
        queries += 1
        for k in ks:
            k_eff = min(k, gallery)
            hits = np.isin(np.asarray(ranking[:k_eff], np.int64), rel).astype(np.float64)
            best = min(k_eff, len(rel))
            sums[f"recall@{k}"] = sums.get(f"recall@{k}", 0.0) + hits.sum() / best
            dcg = float((hits * discounts[: hits.size]).sum())
            sums[f"ndcg@{k}"] = sums.get(f"ndcg@{k}", 0.0) + dcg / discounts[:best].sum()
    out = {key: float(value / queries) for key, value in sorted(sums.items())} if queries else {}
    out["queries"] = float(queries)
    return out


def random_expectation(
    relevant: Sequence[np.ndarray | None], gallery: int, ks: Sequence[int]
) -> dict[str, float]:
    """The exact expectation of :func:`ranked_metrics` for a uniformly random ranking."""
    discounts = 1.0 / np.log2(np.arange(2, gallery + 2))
    sums: dict[str, float] = {}
    queries = 0
    for rel in relevant:
        if rel is None or not len(rel):
            continue
        queries += 1
        share = len(rel) / gallery  # the chance that a given rank holds a relevant item
        for k in ks:
            k_eff = min(k, gallery)
            best = min(k_eff, len(rel))
            sums[f"recall@{k}"] = sums.get(f"recall@{k}", 0.0) + share * k_eff / best
            ndcg = share * discounts[:k_eff].sum() / discounts[:best].sum()
            sums[f"ndcg@{k}"] = sums.get(f"ndcg@{k}", 0.0) + ndcg
    out = {key: float(value / queries) for key, value in sorted(sums.items())} if queries else {}
    out["queries"] = float(queries)
    return out


#: The model trains on each video's this many strongest past partners (see strongest_pairs).
TRAIN_TOP_N = 5


def strongest_pairs(
    a: np.ndarray, b: np.ndarray, w: np.ndarray, n: int, top_n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs that are among the ``top_n`` strongest of either end (by normalised weight).

    Why: the trainer never uses as a negative a video linked to the anchor or sharing a
    neighbour with it (likely related). The weak tail of a long partner list (top 50, min
    support 2) links nearly every two videos of a topic within two hops, which leaves a batch
    no negatives inside the topic, so nothing finer than the topic (what the content baseline
    already knows) can be learned. The strongest few partners are the confident co-watch.
    """
    if top_n <= 0 or not a.size:
        return a, b, w
    lists = NeighbourLists.from_pairs(a, b, w, top_n=top_n)
    keep: set[tuple[int, int]] = set()
    for q in range(n):
        for partner in lists.of(q)[0]:
            keep.add((min(q, int(partner)), max(q, int(partner))))
    chosen = np.array(
        [(min(x, y), max(x, y)) in keep for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    )
    return a[chosen], b[chosen], w[chosen]


#: A held-out past needs this many videos, with co-watch among them, to select epochs on.
MIN_VALIDATION_VIDEOS = 10


def holdout_newest(
    first_seen: Sequence[datetime | None], pairs: np.ndarray, fraction: float
) -> np.ndarray:
    """The newest ``fraction`` of the videos with past co-watch (by first event): a held-out
    slice of the past that stands in for the cold videos when choosing the training epoch.

    Their pairs with the rest are dropped from training (so they are unseen, as cold videos
    are), the pairs among them are the validation relevance. Empty (train on everything,
    select by training loss) when fewer than ``MIN_VALIDATION_VIDEOS`` or no pair among them.
    """
    if fraction <= 0 or not len(pairs):
        return np.zeros(0, np.int64)
    active = np.unique(pairs)
    known = np.array([first_seen[i] is not None for i in active], dtype=bool)
    active = active[known]
    take = int(round(active.size * fraction))
    if take < MIN_VALIDATION_VIDEOS:
        return np.zeros(0, np.int64)
    newest = sorted(active.tolist(), key=lambda i: (first_seen[i], i))[-take:]
    held = np.array(sorted(newest), np.int64)
    inside = np.isin(pairs[:, 0], held) & np.isin(pairs[:, 1], held)
    return held if inside.any() else np.zeros(0, np.int64)


def evaluate_time_split(
    split: TimeSplit,
    config: TrainConfig,
    *,
    ks: Sequence[int] = (10,),
    blend_settings: BlendSettings = DEFAULT_BLEND,
    top_n: int = DEFAULT_TOP_N,
    device: torch.device | None = None,
    references: dict[str, np.ndarray] | None = None,
    train_top_n: int = TRAIN_TOP_N,
    holdout: float = 0.0,
) -> dict[str, Any]:
    """Train on the past graph, score every method on the future graph (module docstring).

    ``train_top_n``: the model trains on each video's strongest past partners only
    (:func:`strongest_pairs`); collaborative and hybrid use ``top_n`` of them. ``holdout``:
    the share of the newest past videos held out to choose the epoch (0: every epoch; a small
    held-out slice has too few pairs among its videos to choose the epoch reliably).

    ``references``: more embeddings (one row per video) scored beside the methods, e.g. a
    benchmark's ceiling that knows the true topics."""
    n = len(split.video_ids)
    if n < 3:
        raise TrainingError("a time-split evaluation needs at least 3 videos with features")
    position = {v: i for i, v in enumerate(split.video_ids)}
    past_a, past_b, past_w = _positions(split.past, position)
    if not past_a.size:
        raise TrainingError(
            f"no co-watch pair among the catalog's videos before {split.split_at.isoformat()}: "
            "nothing to train on; choose a later --split-at or ingest more events"
        )
    config = replace(config, pairs="related")  # type: ignore[arg-type]  # parsed in post-init
    device = device or resolve_device("auto")
    train_a, train_b, train_w = strongest_pairs(past_a, past_b, past_w, n, train_top_n)
    train = TrainingData(
        features=list(split.features),
        labels=np.full(n, -1, np.int64),
        pairs=np.stack([train_a, train_b], axis=1),
        weights=train_w,
        keys=list(split.video_ids),
    )
    seen = [split.first_seen.get(v) for v in split.video_ids]
    held = holdout_newest(seen, train.pairs, holdout)
    fit_on, val = train, None
    if held.size:
        fit_on = train.subset(np.setdiff1d(np.arange(n), held))
        val = train.subset(held)
    started = time.perf_counter()
    catalog = list(split.features)
    fitted = fit(config, fit_on, val, device=device, catalog=catalog)
    selected = fitted
    if held.size:  # the chosen number of epochs, now on the whole past
        epochs = fitted.best_epoch + 1
        refit = replace(config, epochs=epochs, patience=epochs)
        fitted = fit(refit, train, None, device=device, catalog=catalog)
    train_seconds = time.perf_counter() - started
    learned = embed_data(fitted.model, train, device)
    chosen = fitted.model.config
    content = content_baseline_vectors(
        split.features, chosen.modalities, weights=chosen.modality_weights
    )
    graph = NeighbourLists.from_pairs(past_a, past_b, past_w, top_n=top_n)
    fut_a, fut_b, fut_w = _positions(split.future, position)
    future = NeighbourLists.from_pairs(fut_a, fut_b, fut_w, top_n=max(n, 1))
    depth = max(ks)
    lists: dict[str, list[np.ndarray]] = {
        "content": list(top_k(content, depth)),
        "learned": list(top_k(learned, depth)),
        "collaborative": [graph.of(q)[0][:depth] for q in range(n)],
    }
    hybrid: list[np.ndarray] = []
    for q in range(n):
        partners, weights = graph.of(q)
        # every partner with its true similarity, as the API serves them
        candidates = np.union1d(lists["learned"][q], partners)
        scores = learned[candidates] @ learned[q]
        mixed = blend(candidates, scores, partners, weights, depth, settings=blend_settings)
        hybrid.append(mixed.keys)
    lists["hybrid"] = hybrid
    extra = {name: list(top_k(vectors, depth)) for name, vectors in (references or {}).items()}
    cutoff = split.split_at
    groups = {
        "warm": [t is not None and t < cutoff for t in seen],
        "cold": [t is not None and t >= cutoff for t in seen],
    }
    report: dict[str, Any] = {
        "split_at": cutoff.isoformat(),
        "videos": n,
        "past_pairs": int(past_a.size),
        "train_pairs": int(train_a.size),
        "train_top_n": train_top_n,
        "future_pairs": int(fut_a.size),
        "ks": list(ks),
        "blend": {"prior": blend_settings.prior, "max_share": blend_settings.max_share},
        "learned_model": {
            "validation_videos": int(held.size),
            "selection": selected.selection_metric,
            "best_epoch": selected.best_epoch,
            "epochs": len(selected.history),
            "refit_epochs": len(fitted.history) if held.size else None,
            "train_seconds": round(train_seconds, 1),
        },
    }
    gallery = n - 1
    for group, members in groups.items():
        relevant = [
            future.of(q)[0] if members[q] and future.of(q)[0].size else None for q in range(n)
        ]
        section: dict[str, Any] = {"random": random_expectation(relevant, gallery, ks)}
        for method in METHODS[1:]:
            section[method] = ranked_metrics(lists[method], relevant, gallery, ks)
        for name, ranking in extra.items():
            section[name] = ranked_metrics(ranking, relevant, gallery, ks)
        report[group] = section
    report["goals"] = _goals(report)
    return report


def _goals(report: dict[str, Any]) -> dict[str, Any]:
    """The time split's targets on recall@10 (when measured): hybrid >= every single source on
    warm videos, where co-watch exists; learned >= content + 0.1 on cold ones, where it does not."""
    goals: dict[str, Any] = {}
    warm, cold = report.get("warm", {}), report.get("cold", {})
    key = "recall@10"
    if warm.get("hybrid", {}).get(key) is not None:
        best = max(warm[m].get(key, 0.0) for m in ("content", "collaborative", "learned"))
        goals["warm_hybrid_minus_best_single"] = round(float(warm["hybrid"][key] - best), 4)
        goals["warm_hybrid_at_least_best_single"] = bool(warm["hybrid"][key] >= best)
    if cold.get("learned", {}).get(key) is not None:
        gain = cold["learned"][key] - cold["content"].get(key, 0.0)
        goals["cold_learned_minus_content"] = round(float(gain), 4)
        goals["cold_learned_at_least_content_plus_0.1"] = bool(gain >= 0.1)
    return goals


def evaluate_events(
    settings: Settings,
    database: Database,
    files: Sequence[str | Path],
    split_at: datetime,
    config: TrainConfig,
    options: EventOptions | None = None,
    *,
    ks: Sequence[int] = (10,),
    blend_settings: BlendSettings = DEFAULT_BLEND,
) -> dict[str, Any]:
    """``recsys eval --events FILE… --split-at T`` on this home's catalog (module docstring).

    ``options`` default: those the events store was last counted with (so an evaluation never
    recounts a store ingested with other options), the defaults for a new store."""
    paths, failures = expand_event_paths(files)
    data = load_training_data(
        settings,
        database,
        get_extractor(home_spec(settings, database, config.extractor), settings=settings),
        progress=config.progress,
    )
    if len(data) < 3:
        raise TrainingError(
            "the catalog has fewer than 3 videos with features: ingest and refresh videos first"
        )
    reports = [f.as_dict() for f in failures]
    source = options.source if options is not None else EventOptions().source
    with EventStore.open(settings, source) as store:
        # The options the store was counted with (no recount of a store ingested with, e.g.,
        # --window); the defaults for a new store.
        if options is None:
            options = stored_options(store) if store.stored_count_options() else EventOptions()
        for path in paths:
            reports.append(store.add_file(path, options).as_dict())
        catalog = list(data.keys)
        past = store.related(options, catalog=catalog, before=split_at)
        future = store.related(options, catalog=catalog, since=split_at)
        first_seen = store.first_seen()
    split = TimeSplit(
        video_ids=list(data.keys),
        features=list(data.features),
        past=past,
        future=future,
        first_seen=first_seen,
        split_at=split_at,
    )
    report = evaluate_time_split(split, config, ks=ks, blend_settings=blend_settings)
    report["files"] = reports
    report["events_options"] = options.as_dict()
    return report

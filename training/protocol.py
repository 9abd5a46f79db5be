"""The evaluation protocol of ``shared/data/real-av`` applied to any manifest of videos.

- Gallery: every clip; queries: clips whose category has at least 2 other clips; a neighbour is
  relevant when it shares the query's category; the query itself is excluded. Reported:
  precision@1, precision@5, mAP (plus recall@10 and nDCG@10), next to a random ranking and the
  un-learned content features.
- Same-source check: each clip is cut into 3 windows (thirds of its frame and audio-window
  sequences, from the cached features, so nothing is decoded again); recall@1 of a window's
  nearest other window being from the same clip.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from recsys.db import Database, open_database
from recsys.db.models import Video
from recsys.features import (
    FeatureCache,
    VideoFeatures,
    get_extractor,
    pool_sequence,
)
from recsys.features.pooling import pool_visual
from recsys.settings import Settings, load_settings
from recsys.thumbnails import thumbnail_path
from training.baselines import content_baseline_vectors
from training.coldstart import cold_warm_sections
from training.data import features_of
from training.errors import TrainingError
from training.evaluation import random_metrics, relevance_from_labels, retrieval_metrics

log = logging.getLogger(__name__)
Embed = Callable[[Sequence[VideoFeatures]], np.ndarray]


def split_windows(features: VideoFeatures, parts: int = 3) -> list[VideoFeatures]:
    """``parts`` consecutive windows of a video's segment sequences, each pooled again."""

    def pieces(sequence: np.ndarray | None) -> list[np.ndarray | None]:
        if sequence is None:
            return [None] * parts
        if sequence.shape[0] < parts:
            return [sequence] * parts
        return list(np.array_split(sequence, parts))

    pooled = features.extractor != "cnn"  # cnn models read the sequences, not the pools
    out = []
    for v, a in zip(pieces(features.visual_seq), pieces(features.audio_seq), strict=True):
        assert v is not None
        audio = features.audio
        if a is None:
            audio = None
        elif pooled:
            audio = pool_sequence(a)
        out.append(
            replace(
                features,
                visual_seq=v,
                visual=pool_visual(features, v) if pooled else features.visual,
                audio_seq=a,
                audio=audio,
            )
        )
    return out


def protocol_metrics(
    features: Sequence[VideoFeatures],
    categories: Sequence[str],
    embed: Embed | None,
    content_features: Sequence[VideoFeatures] | None = None,
    seed: int = 0,
    warm: np.ndarray | None = None,
) -> dict[str, Any]:
    """Category retrieval and same-source figures for ``embed`` (None: baselines only).

    ``warm`` (bool per clip): clips whose pairs or label the model's training used; the report
    then has ``cold`` and ``warm`` sections, the same figures over each kind of query.
    """
    labels = np.unique(np.asarray(categories), return_inverse=True)[1]
    relevant = relevance_from_labels(labels, min_relevant=2)
    ks = (1, 5, 10)
    content_features = content_features or features
    baseline = content_baseline_vectors(content_features)
    vectors = None if embed is None else embed(features)
    report: dict[str, Any] = {
        "clips": len(features),
        "queries": sum(r is not None for r in relevant),
        "categories": int(labels.max() + 1) if len(labels) else 0,
        "random": random_metrics(len(features), relevant, ks, seed=seed),
        "content_baseline": retrieval_metrics(baseline, relevant, ks),
    }
    if warm is not None:
        report.update(cold_warm_sections(vectors, baseline, relevant, warm, ks, seed))
    windows = [w for f in features for w in split_windows(f)]
    content_windows = [w for f in content_features for w in split_windows(f)]
    source = np.repeat(np.arange(len(features)), 3)
    same = relevance_from_labels(source)
    report["same_source"] = {
        "random": random_metrics(len(windows), same, (1,), seed=seed)["recall@1"],
        "content_baseline": retrieval_metrics(
            content_baseline_vectors(content_windows), same, (1,)
        )["recall@1"],
    }
    if embed is not None:
        assert vectors is not None
        report["model"] = retrieval_metrics(vectors, relevant, ks)
        report["same_source"]["model"] = retrieval_metrics(embed(windows), same, (1,))["recall@1"]
    return report


def read_categories(manifest: Path) -> dict[Path, str]:
    """Resolved file path -> category (the relevance label) of every manifest row."""
    try:
        handle = manifest.open(newline="", encoding="utf-8-sig")
    except OSError as error:
        raise TrainingError(
            f"cannot read manifest {manifest} ({error.strerror or error}); pass the path of a "
            "CSV manifest with file (or uri) and category columns"
        ) from error
    with handle:
        reader = csv.DictReader(handle)
        column = "file" if "file" in (reader.fieldnames or []) else "uri"
        if "category" not in (reader.fieldnames or []):
            raise TrainingError(
                f"manifest {manifest} has no 'category' column to score against; add one "
                "(the relevance label of each row)"
            )
        return {
            (manifest.parent / row[column]).resolve(): row["category"]
            for row in reader
            if row.get(column) and row.get("category")
        }


def evaluate_manifest(
    settings: Settings,
    database: Database,
    manifest: Path | str,
    *,
    model_version: str | None = None,
    scratch: bool = True,
    progress: bool = True,
    report_dir: Path | None = None,
) -> dict[str, Any]:
    """Ingest the manifest's videos, embed them with a model and score them (see module doc).

    With ``scratch`` (the default) the videos go into a temporary SQLite catalog (the model
    still comes from ``settings``); otherwise into this home's catalog, where their features
    stay cached for the next run. ``cold``/``warm`` sections split the queries by whether the
    model's training used the clip's pairs or label (the run's ``warm.json``, by content
    hash). ``report_dir``: also write the HTML report (:mod:`training.report`) there.
    """
    from recsys.ingest import ingest_paths
    from recsys.models import load_embedder

    manifest = Path(manifest).resolve()
    categories = read_categories(manifest)
    embedder = load_embedder(settings, database, model_version)
    with tempfile.TemporaryDirectory(prefix="recsys-eval-") as tmp:
        if scratch:
            # A throw-away SQLite catalog, whatever database the main home uses.
            catalog_settings = load_settings(
                Path(tmp),
                database_url=None,
                frames_per_video=settings.frames_per_video,
                frame_size=settings.frame_size,
                audio_sample_rate=settings.audio_sample_rate,
                decode_timeout_s=settings.decode_timeout_s,
                device=settings.device,
            )
            catalog_settings.ensure_dirs()
            catalog = open_database(catalog_settings)
        else:
            catalog_settings, catalog = settings, database
        report = ingest_paths(catalog_settings, catalog, [manifest])
        for failure in report.failures:
            log.warning("not evaluated: %s (%s)", failure.source, failure.reason)
        with catalog.session() as session:
            videos = [
                v
                for v in session.scalars(select(Video).order_by(Video.id))
                if Path(v.uri).resolve() in categories and v.status in ("ready", "stale")
            ]
        extractor = get_extractor(embedder.extractor, settings=settings)
        content = get_extractor("content")
        # Workers find extractor weights under the main home; features are cached in the
        # catalog's (the scratch one is thrown away with its cache).
        cache = FeatureCache(catalog_settings, catalog)
        found = features_of(settings, catalog, videos, extractor, progress=progress, cache=cache)
        found_content = (
            found
            if extractor.version == content.version
            else features_of(settings, catalog, videos, content, progress=progress, cache=cache)
        )
        features, content_features, labels = [], [], []
        hashes: list[str] = []
        clip_names: list[str] = []
        thumbnails: list[Path | None] = []
        for video in videos:
            f = found.get(video.content_hash or "")
            c = found_content.get(video.content_hash or "")
            if f is None or c is None:
                log.warning("not evaluated: %s (its features could not be computed)", video.uri)
                continue
            features.append(f)
            content_features.append(c)
            labels.append(categories[Path(video.uri).resolve()])
            hashes.append(video.content_hash or "")
            clip_names.append(video.title or Path(video.uri).name)
            stored = video.thumbnail_path
            thumbnails.append(thumbnail_path(catalog_settings, stored) if stored else None)
        images = _read_images(thumbnails) if report_dir is not None else []
        if scratch:
            catalog.dispose()
    if len(features) < 3:
        raise TrainingError(
            f"only {len(features)} clips of {manifest} could be evaluated (at least 3 needed); "
            "check the warnings above for the clips that failed, or list more clips"
        )
    run = _model_run(settings, database, embedder.version)
    warm_set = set(run.get("warm", []))
    warm = np.array([h in warm_set for h in hashes], dtype=bool)
    vectors: dict[str, np.ndarray] = {}

    def embed(fs: Sequence[VideoFeatures]) -> np.ndarray:
        out = embedder.embed(list(fs))[0]
        vectors.setdefault("model", out)  # the first call embeds the whole clips
        return out

    result = protocol_metrics(features, labels, embed, content_features, warm=warm)
    result.update(
        {
            "manifest": str(manifest),
            "model_version": embedder.version,
            "extractor": embedder.extractor_version,
            "ingest": report.counts(),
            "warm_clips": int(warm.sum()),
            "warm_known": "warm" in run,
        }
    )
    if report_dir is not None:
        from training.report import ReportInputs, write_report

        write_report(
            Path(report_dir),
            ReportInputs(
                model=vectors["model"],
                baseline=content_baseline_vectors(content_features),
                categories=list(labels),
                names=clip_names,
                images=images,
                history=run.get("history", []),
                summary=result,
                warm=warm if "warm" in run else None,
            ),
        )
        result["report"] = str(Path(report_dir) / "index.html")
    return result


def _model_run(settings: Settings, database: Database, version: str) -> dict[str, Any]:
    """The training run of a model version: its epoch history and warm clips (when on disk)."""
    from recsys.catalog import get_model
    from training.run import WARM_FILE

    with database.session() as session:
        row = get_model(session, version)
        run_id = (row.metrics or {}).get("run_id") if row is not None else None
    if not run_id:
        return {}
    run_dir = settings.runs_dir / str(run_id)
    out: dict[str, Any] = {}
    try:
        out["history"] = json.loads((run_dir / "metrics.json").read_text()).get("history", [])
        out["warm"] = json.loads((run_dir / WARM_FILE).read_text())
    except (OSError, ValueError) as error:
        log.warning("no cold/warm split for model %s (%s)", version, error)
    return out


def _read_images(paths: Sequence[Path | None]) -> list[np.ndarray | None]:
    """Thumbnails as RGB arrays (None where a clip has none), read before a scratch home goes."""
    from PIL import Image

    images: list[np.ndarray | None] = []
    for path in paths:
        try:
            with Image.open(path) as image:  # type: ignore[arg-type]
                images.append(np.asarray(image.convert("RGB")))
        except (OSError, TypeError, ValueError):
            images.append(None)
    return images

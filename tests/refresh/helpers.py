"""Building blocks of the refresh tests: a catalog, deterministic models, an oracle."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import func, select

from recsys.db import Database
from recsys.db.models import Embedding, EmbeddingShard
from recsys.features import get_extractor
from recsys.ingest import ingest_paths
from recsys.media import decode_video
from recsys.models import FusionModel, ModelConfig, input_dims, load_embedder, save_model
from recsys.settings import Settings
from recsys.stage_a import FeatureResult, FeatureSpec, VideoTask, compute_features
from recsys.store import EmbeddingStore
from recsys.synth import CorpusInfo

CRASH_VIDEO = "syn0003"
MALFORMED_VIDEO = "syn0006"


def feature_dims(corpus: CorpusInfo) -> tuple[int, int]:
    """Pooled input sizes of the default extractor, read off one real video."""
    extractor = get_extractor("content")
    video = corpus.out_dir / corpus.videos[0].file
    return input_dims([extractor.extract(decode_video(video))])


def make_model(
    settings: Settings,
    database: Database,
    dims: tuple[int, int],
    *,
    seed: int = 0,
    activate: bool = True,
) -> str:
    """An untrained but seeded model: the same seed gives the same version in any home."""
    torch.manual_seed(seed)
    extractor = get_extractor("content")
    config = ModelConfig(
        extractor=extractor.name,
        extractor_version=extractor.version,
        visual_dim=dims[0],
        audio_dim=dims[1],
        dim=32,
        hidden=64,
    )
    return save_model(settings, database, FusionModel(config), activate=activate)


def ingest(settings: Settings, database: Database, paths: Sequence[Path]) -> None:
    report = ingest_paths(settings, database, paths)
    assert report.ok, report.failures


def oracle(
    settings: Settings, database: Database, version: str, files: dict[str, Path]
) -> dict[str, np.ndarray]:
    """What a run must produce: decode + extract + embed each video directly."""
    embedder = load_embedder(settings, database, version)
    extractor = get_extractor(embedder.extractor)
    names = sorted(files)
    features = [extractor.extract(decode_video(files[name])) for name in names]
    vectors, _ = embedder.embed(features)
    return dict(zip(names, vectors, strict=True))


def stored(settings: Settings, database: Database, version: str) -> dict[str, np.ndarray]:
    """The servable embeddings of a version, by external video id."""
    from recsys.db.models import Video

    with database.session() as session:
        matrix = EmbeddingStore(settings).load(session, version)
        names = {int(i): str(v) for i, v in session.execute(select(Video.id, Video.video_id))}
    return {names[int(key)]: matrix.vectors[row] for row, key in enumerate(matrix.video_keys)}


def embedding_rows(database: Database, version: str) -> tuple[int, int]:
    """(rows, distinct videos) of ``embeddings`` for a version."""
    with database.session() as session:
        rows, videos = session.execute(
            select(func.count(), func.count(func.distinct(Embedding.video_key))).where(
                Embedding.model_version == version
            )
        ).one()
    return int(rows), int(videos)


def orphan_files(settings: Settings, database: Database, version: str) -> list[str]:
    """Files in the version's store directory that no registered shard names."""
    with database.session() as session:
        registered = {
            Path(p).name
            for p in session.scalars(
                select(EmbeddingShard.path).where(EmbeddingShard.model_version == version)
            )
        }
    directory = settings.embeddings_dir / version
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name not in registered)


def crash_on_one_video(task: VideoTask, spec: FeatureSpec) -> FeatureResult:
    """Stage-A function whose worker dies (like a decoder segfault) on one video."""
    if task.video_id == CRASH_VIDEO:
        os._exit(7)
    return compute_features(task, spec)


def malformed_features_for_one_video(task: VideoTask, spec: FeatureSpec) -> FeatureResult:
    """Stage-A function that returns features the model cannot take for one video."""
    result = compute_features(task, spec)
    if task.video_id == MALFORMED_VIDEO and result.features is not None:
        result.features.visual = result.features.visual[:3]
    return result

"""Tagging the catalog with the current tags model, and re-tagging after a refresh.

Predictions are a function of (tags model version, video content): a video whose stored
prediction came from the same model and the same content hash is skipped when only outdated
ones are asked for, which is what a refresh does after embedding. Inputs are read from the
feature cache (and, for an embedding-source model, the embedding store); nothing here decodes
video, so a video not yet through stage A is reported as missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from recsys.catalog import servable_videos_query
from recsys.db import Database
from recsys.db.models import TagPredictionState, Video
from recsys.errors import RecsysError
from recsys.features import FeatureCache, VideoFeatures, get_extractor
from recsys.settings import Settings
from recsys.store import EmbeddingStore
from recsys.tags.errors import TagsModelMismatch
from recsys.tags.labels import load_labelled
from recsys.tags.model import (
    Source,
    TagModel,
    current_tags_version,
    load_tag_model,
    save_tag_model,
)
from recsys.tags.predict import predict_videos
from recsys.tags.store import write_predictions

log = logging.getLogger(__name__)
#: Videos predicted and committed per transaction.
BATCH = 256


@dataclass
class PredictSummary:
    tags_model: str
    selected: int = 0
    predicted: int = 0
    abstained: int = 0
    disagree: int = 0
    up_to_date: int = 0
    missing: list[str] = field(default_factory=list)  # external ids without inputs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def servable_videos(database: Database, video_ids: Sequence[str] | None = None) -> list[Video]:
    """Ready (or stale) catalog videos in key order, optionally only these external ids."""
    with database.session() as session:
        query = servable_videos_query(video_ids)
        videos = list(session.scalars(query))
        session.expunge_all()
    return videos


def check_inputs(settings: Settings, model: TagModel) -> None:
    """TagsModelMismatch when this home's extractor is not the one ``model`` was trained on."""
    extractor = get_extractor(model.extractor, settings=settings)
    if str(extractor.version) != model.extractor_version:
        raise TagsModelMismatch(
            f"tags model {model.version} was trained on {model.extractor} features version "
            f"{model.extractor_version}, the installed extractor is version "
            f"{extractor.version}; retrain it with `recsys tags train`"
        )


def _embeddings(settings: Settings, database: Database, model: TagModel) -> dict[int, np.ndarray]:
    if model.source != Source.EMBEDDING or model.model_version is None:
        return {}
    with database.session() as session:
        matrix = EmbeddingStore(settings).load(session, model.model_version)
    return {int(k): matrix.vectors[i] for i, k in enumerate(matrix.video_keys)}


def predict_catalog(
    settings: Settings,
    database: Database,
    *,
    video_ids: Sequence[str] | None = None,
    model: TagModel | None = None,
    only_outdated: bool = False,
) -> PredictSummary:
    """Predict and store the tags of the catalog's videos (or ``video_ids``) with ``model``
    (default: the current tags model); see the module docstring."""
    model = model or load_tag_model(settings)
    check_inputs(settings, model)
    videos = servable_videos(database, video_ids)
    summary = PredictSummary(tags_model=model.version, selected=len(videos))
    if only_outdated:
        with database.session() as session:
            done = {
                (row.video_key, row.content_hash)
                for row in session.scalars(
                    select(TagPredictionState).where(TagPredictionState.tags_model == model.version)
                )
            }
        todo = [v for v in videos if (v.id, v.content_hash) not in done]
        summary.up_to_date = len(videos) - len(todo)
        videos = todo
    extractor = get_extractor(model.extractor, settings=settings)
    cache = FeatureCache(settings, database)
    vectors = _embeddings(settings, database, model)
    for start in range(0, len(videos), BATCH):
        batch = videos[start : start + BATCH]
        found = cache.get_many([v.content_hash for v in batch if v.content_hash], extractor)
        usable = [
            v
            for v in batch
            if v.content_hash in found
            and (model.source != Source.EMBEDDING or int(v.id) in vectors)
        ]
        summary.missing += [v.video_id for v in batch if v not in usable]
        if not usable:
            continue
        embeddings = (
            np.stack([vectors[int(v.id)] for v in usable])
            if model.source == Source.EMBEDDING
            else None
        )
        results = predict_videos(
            model,
            [found[v.content_hash or ""] for v in usable],
            [v.duration_s for v in usable],
            embeddings,
        )
        with database.session() as session:
            for video, result in zip(usable, results, strict=True):
                write_predictions(session, video, model.version, result)
                summary.predicted += 1
                summary.abstained += int(result.abstained)
                summary.disagree += int(result.segments_disagree)
    if summary.missing:
        log.warning(
            "%d videos have no cached %s inputs and were not tagged (first: %s); run "
            "`recsys embed` or `recsys tags predict`",
            len(summary.missing),
            model.source.value,
            ", ".join(summary.missing[:5]),
        )
    return summary


def refit_on_embeddings(
    settings: Settings, database: Database, model: TagModel, model_version: str
) -> TagModel:
    """``model`` trained again, the same way, on the embeddings of ``model_version`` (cached
    features only: a refresh has just computed them), made current."""
    from recsys.tags.fit import fit_tag_model

    extractor = get_extractor(model.extractor, settings=settings)
    cache = FeatureCache(settings, database)

    def cached(videos: list[Video]) -> dict[str, VideoFeatures]:
        return cache.get_many([v.content_hash for v in videos if v.content_hash], extractor)

    data = load_labelled(settings, database, features=cached, model_version=model_version)
    head = next(iter(model.heads.values()))
    refitted = fit_tag_model(
        data,
        extractor=model.extractor,
        extractor_version=model.extractor_version,
        model_version=model_version,
        threshold=head.threshold,
        sources=(Source.EMBEDDING,),
    )
    save_tag_model(settings, refitted)
    log.info(
        "tags model %s refitted on model %s: %s", model.version, model_version, refitted.version
    )
    return refitted


def retag_after_refresh(
    settings: Settings, database: Database, model_version: str
) -> dict[str, Any]:
    """The refresh's hook, when a tags model exists: tag what the refresh of ``model_version``
    changed. A tags model that reads embeddings follows the active model: when that is
    ``model_version`` and the tags model read another one's, it is refitted on the new
    embeddings first and every video is tagged again. Never fatal to the refresh: a problem is
    logged and reported."""
    if current_tags_version(settings) is None:
        return {}
    from recsys.models.registry import active_model_version

    try:
        model = load_tag_model(settings)
        refitted = None
        if model.source == Source.EMBEDDING and model.model_version != model_version:
            if active_model_version(database) != model_version:
                return {
                    "tags_model": model.version,
                    "skipped": f"tags follow the active model, not {model_version}",
                }
            refitted = model.version
            model = refit_on_embeddings(settings, database, model, model_version)
        summary = predict_catalog(settings, database, model=model, only_outdated=True).as_dict()
        return summary | ({"refitted_from": refitted} if refitted else {})
    except RecsysError as error:
        log.warning("tagging after the refresh failed: %s", error)
        return {"error": str(error)}

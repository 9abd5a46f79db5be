"""The tags commands as library functions: train on the catalog's labelled videos, tag the
catalog, evaluate by cross-validation (``recsys tags train | predict | eval``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recsys.db import Database
from recsys.features import get_extractor
from recsys.features.home_spec import home_spec
from recsys.models.registry import active_model_version
from recsys.settings import Settings
from recsys.tags import (
    DEFAULT_THRESHOLD,
    Method,
    PredictSummary,
    Source,
    TagsError,
    load_tag_model,
    predict_catalog,
    save_tag_model,
)
from recsys.tags.catalog import servable_videos
from recsys.tags.fit import FOLDS, fit_tag_model
from recsys.tags.labels import LabelledVideos
from training.data import features_of
from training.tags.data import load_labelled
from training.tags.evaluate import evaluate_labelled

log = logging.getLogger(__name__)


@dataclass
class TagsOptions:
    """Choices of ``recsys tags train``/``eval`` (None: let cross-validation choose)."""

    extractor: str | None = None  # stage-A spec; None: the home's
    source: Source | None = None
    method: Method | None = None
    threshold: float = DEFAULT_THRESHOLD
    folds: int = FOLDS
    seed: int = 0
    workers: int | None = None
    progress: bool = False


@dataclass
class TagsTrainResult:
    version: str
    source: str
    heads: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    predicted: PredictSummary | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "source": self.source,
            "heads": self.heads,
            "warnings": self.warnings,
            "predicted": None if self.predicted is None else self.predicted.as_dict(),
        }


def _labelled(
    settings: Settings, database: Database, options: TagsOptions
) -> tuple[LabelledVideos, str, str, str | None]:
    """Labelled videos with their features (and the active model's embeddings when that
    source may be chosen), the extractor's name and version, and the model version."""
    spec = home_spec(settings, database, options.extractor)
    extractor = get_extractor(spec, settings=settings)
    model_version = None
    if options.source in (None, Source.EMBEDDING):
        model_version = active_model_version(database)
        if model_version is None and options.source == Source.EMBEDDING:
            raise TagsError("--source embedding needs an active model (`recsys train --activate`)")
    data = load_labelled(
        settings,
        database,
        extractor,
        model_version=model_version,
        workers=options.workers,
        progress=options.progress,
    )
    if len(data) == 0:
        raise TagsError(
            f"no labelled video to learn from in {settings.resolved_home}: give videos a "
            "category or tags (manifest columns category, tags) and ingest them"
        )
    return data, extractor.name, str(extractor.version), model_version


def _choices(options: TagsOptions) -> dict[str, Any]:
    return {
        "sources": None if options.source is None else (options.source,),
        "methods": None if options.method is None else (options.method,),
    }


def train_tags(
    settings: Settings,
    database: Database,
    options: TagsOptions | None = None,
    *,
    predict: bool = True,
) -> TagsTrainResult:
    """Train a tags model on the catalog's human labels, make it current and (``predict``)
    tag every video with it."""
    options = options or TagsOptions()
    data, name, version, model_version = _labelled(settings, database, options)
    model = fit_tag_model(
        data,
        extractor=name,
        extractor_version=version,
        model_version=model_version,
        folds=options.folds,
        seed=options.seed,
        threshold=options.threshold,
        **_choices(options),
    )
    saved = save_tag_model(settings, model)
    log.info("tags model %s (%s) is current", saved, model.source.value)
    result = TagsTrainResult(
        version=saved,
        source=model.source.value,
        heads={
            kind.value: {"classes": head.classes, "method": head.method.value, **head.figures}
            for kind, head in model.heads.items()
        },
        warnings=sorted(set(data.warnings)),
    )
    if predict:
        result.predicted = tag_catalog(settings, database, options)
    return result


def tag_catalog(
    settings: Settings,
    database: Database,
    options: TagsOptions | None = None,
    *,
    video_ids: Sequence[str] | None = None,
) -> PredictSummary:
    """Tag the catalog (or ``video_ids``) with the current tags model; videos not through
    stage A yet are decoded first (on the stage-A pool) so every video gets its tags."""
    options = options or TagsOptions()
    model = load_tag_model(settings)
    extractor = get_extractor(model.extractor, settings=settings)
    features_of(
        settings,
        database,
        servable_videos(database, video_ids),
        extractor,
        workers=options.workers,
        progress=options.progress,
    )
    return predict_catalog(settings, database, video_ids=video_ids, model=model)


def evaluate_tags(
    settings: Settings,
    database: Database,
    options: TagsOptions | None = None,
    *,
    seeds: Sequence[int] = tuple(range(10)),
) -> dict[str, Any]:
    """Cross-validated figures of the tags classifier on the catalog's labelled videos."""
    options = options or TagsOptions()
    data, _, _, _ = _labelled(settings, database, options)
    return evaluate_labelled(
        data, seeds=seeds, folds=options.folds, threshold=options.threshold, **_choices(options)
    )

"""``recsys embed --extractor SPEC``: stage A only, filling the feature cache for a spec.

No model is needed: every servable video's features are computed with the spec (decoded once
for both encoders, deep encoders batched) and cached per modality, so training a model on the
spec, or its refresh, decodes nothing. A part already cached (the visual part when only the
audio encoder changed) is reused, not recomputed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select

from recsys.catalog import servable_videos_query
from recsys.db import Database
from recsys.db.models import Video
from recsys.features import CacheBatch, FeatureCache, get_extractor
from recsys.features.composite import CompositeExtractor, PcaMissing
from recsys.features.pca import fit_pca, pca_path
from recsys.features.spec import parse_spec
from recsys.progress import Progress
from recsys.refresh.options import Failure
from recsys.settings import Settings
from recsys.stage_a import FeatureSpec, VideoTask, default_workers, stream_features

log = logging.getLogger(__name__)


@dataclass
class FeatureFillSummary:
    extractor: str
    extractor_version: str
    selected: int = 0
    cache_hits: int = 0
    computed: int = 0
    reused_parts: dict[str, int] = field(default_factory=lambda: {"visual": 0, "audio": 0})
    failed: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["seconds"] = round(self.seconds, 3)
        return payload


def fill_feature_cache(
    settings: Settings,
    database: Database,
    extractor_name: str,
    *,
    workers: int | None = None,
    video_ids: list[str] | None = None,
    progress: bool | None = None,
) -> FeatureFillSummary:
    """Compute and cache ``extractor_name``'s features of the servable videos."""
    started = time.perf_counter()
    try:
        extractor = get_extractor(extractor_name, settings=settings)
    except PcaMissing:
        _fit_catalog_pca(settings, database, extractor_name, workers, progress)
        extractor = get_extractor(extractor_name, settings=settings)
    cache = FeatureCache(settings, database)
    with database.session() as session:
        query = servable_videos_query(video_ids)
        tasks = [
            VideoTask(v.id, v.video_id, v.uri, v.content_hash)
            for v in session.scalars(query)
            if v.content_hash
        ]
    summary = FeatureFillSummary(extractor.name, str(extractor.version), selected=len(tasks))
    spec = FeatureSpec.for_model(settings, extractor.name, str(extractor.version))
    found = cache.get_many([t.content_hash for t in tasks], extractor)
    summary.cache_hits = sum(1 for t in tasks if t.content_hash in found)
    todo = [t for t in tasks if t.content_hash not in found]
    batch = CacheBatch(cache, extractor, size=64)
    with Progress(
        f"features {extractor.name}",
        len(todo),
        unit="videos",
        bar=progress,
        failures=True,
        logger=log,
    ) as bar:
        for result in stream_features(todo, spec, workers=workers or default_workers()):
            for modality in result.reused:
                summary.reused_parts[modality] += 1
            if result.features is None:
                summary.failed += 1
                summary.failures.append(Failure(result.task.video_id, result.error or "?"))
                bar.advance(1, failed=1)
                continue
            summary.computed += 1
            batch.add(result.task.content_hash, result.features)
            bar.advance(1)
    batch.flush()
    if summary.computed:  # packs of one batch each: merge them
        cache.compact(extractor)
    summary.seconds = time.perf_counter() - started
    return summary


def _fit_catalog_pca(
    settings: Settings,
    database: Database,
    extractor_name: str,
    workers: int | None,
    progress: bool | None,
) -> None:
    """Cache the raw features of the catalog (without ``pca``), fit the PCA on their visual
    rows and store it where the ``pca=N`` spec finds it."""
    import numpy as np

    spec = parse_spec(extractor_name)
    raw_name = spec.without("pca").name
    log.info("fitting pca=%s on the catalog's %s features", spec.option("pca"), raw_name)
    fill_feature_cache(settings, database, raw_name, workers=workers, progress=progress)
    raw = get_extractor(raw_name, settings=settings)
    assert isinstance(raw, CompositeExtractor)
    with database.session() as session:
        hashes = [h for h in session.scalars(select(Video.content_hash)) if h]
    found = FeatureCache(settings, database).get_many(hashes, raw)
    rows = np.concatenate([f.visual_seq.reshape(f.visual_seq.shape[0], -1) for f in found.values()])
    dim = int(spec.option("pca") or 0)
    fit_pca(rows, dim, pca_path(settings.weights_dir, raw.keys["visual"][1], dim))

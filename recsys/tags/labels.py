"""Labelled videos and their label spaces, with the checks that refuse bad labels.

A label space (categories, or tags) needs two classes with at least two videos each; a class
with a single video can be neither learned nor checked by cross-validation, so it is left out
with a warning, and a tag on every tagged video (no negative example) too, and a label longer
than a prediction can store (manifest tags have no length limit; PostgreSQL would refuse the
prediction and with it the whole batch of videos being tagged).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import String, or_, select

from recsys.choices import TagKind
from recsys.db import Database
from recsys.db.models import PredictedTag, Video, VideoStatus
from recsys.features import VideoFeatures
from recsys.settings import Settings
from recsys.store import EmbeddingStore
from recsys.tags.errors import TagsError

log = logging.getLogger(__name__)
#: Fewest videos a class needs to be learned (and checked by cross-validation).
MIN_CLASS_VIDEOS = 2


def _stored_width() -> int:
    column = PredictedTag.__table__.c.tag.type
    assert isinstance(column, String) and column.length is not None
    return column.length


#: Longest label a prediction can store: the width of ``predicted_tags.tag``.
MAX_LABEL_LENGTH = _stored_width()
#: Features of catalog videos by content hash (the cache's, or extracted when missing).
PLURAL = {TagKind.CATEGORY: "categories", TagKind.TAG: "tags"}
FeaturesOf = Callable[[list[Video]], dict[str, VideoFeatures]]


@dataclass
class LabelledVideos:
    """Features (and optionally served embeddings) of labelled videos with their labels."""

    features: list[VideoFeatures]
    categories: list[str | None]
    tags: list[list[str]]
    durations: list[float | None] = field(default_factory=list)
    video_ids: list[str] = field(default_factory=list)
    embeddings: np.ndarray | None = None  # (n, d): the served model's, row i = video i
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.features)

    def subset(self, index: Sequence[int] | np.ndarray) -> LabelledVideos:
        index = [int(i) for i in index]
        return LabelledVideos(
            features=[self.features[i] for i in index],
            categories=[self.categories[i] for i in index],
            tags=[self.tags[i] for i in index],
            durations=[self.durations[i] for i in index] if self.durations else [],
            video_ids=[self.video_ids[i] for i in index] if self.video_ids else [],
            embeddings=None if self.embeddings is None else self.embeddings[index],
            warnings=list(self.warnings),
        )


@dataclass
class LabelSpace:
    """One head's targets: ``rows`` index the videos that carry this kind of label,
    ``targets`` (len(rows), C) is 1 where a class holds."""

    kind: TagKind
    classes: list[str]
    rows: np.ndarray
    targets: np.ndarray

    @property
    def single(self) -> np.ndarray:
        """Class index per row (single-label spaces)."""
        return self.targets.argmax(axis=1)


def warn(data: LabelledVideos, message: str) -> None:
    log.warning(message)
    data.warnings.append(message)


def label_space(data: LabelledVideos, kind: TagKind) -> LabelSpace | None:
    """The learnable classes of ``kind`` (classes with fewer than :data:`MIN_CLASS_VIDEOS`
    videos left out with a warning); None, with a warning, when fewer than two remain."""
    if kind == TagKind.CATEGORY:
        labels: list[list[str]] = [[c] if c else [] for c in data.categories]
    else:
        labels = [sorted(set(t)) for t in data.tags]
    long = sorted({label for row in labels for label in row if len(label) > MAX_LABEL_LENGTH})
    if long:
        warn(
            data,
            f"{PLURAL[kind]} longer than {MAX_LABEL_LENGTH} characters are not learned (a "
            f"prediction cannot store them): {', '.join(label[:40] + '...' for label in long)}",
        )
        labels = [[label for label in row if len(label) <= MAX_LABEL_LENGTH] for row in labels]
    counts = Counter(label for row in labels for label in row)
    rare = sorted(label for label, n in counts.items() if n < MIN_CLASS_VIDEOS)
    if rare:
        warn(
            data,
            f"{PLURAL[kind]} with fewer than {MIN_CLASS_VIDEOS} labelled videos are not learned "
            f"(they cannot be cross-validated): {', '.join(rare)}",
        )
    labelled = [i for i, row in enumerate(labels) if row]
    classes = sorted(label for label, n in counts.items() if n >= MIN_CLASS_VIDEOS)
    if kind == TagKind.TAG:  # a tag on every tagged video has no negative example
        universal = [c for c in classes if counts[c] == len(labelled)]
        if universal:
            warn(data, f"tags on every tagged video are not learned: {', '.join(universal)}")
        classes = [c for c in classes if c not in universal]
    lookup = {c: j for j, c in enumerate(classes)}
    rows = [i for i in labelled if any(label in lookup for label in labels[i])]
    if len(classes) < 2:
        found = ", ".join(f"{label} ({n})" for label, n in counts.most_common()) or "none"
        warn(
            data,
            f"no {kind.value} model: it needs at least 2 {PLURAL[kind]} with "
            f"{MIN_CLASS_VIDEOS}+ labelled videos each; found {found}",
        )
        return None
    targets = np.zeros((len(rows), len(classes)), np.float64)
    for r, i in enumerate(rows):
        for label in labels[i]:
            if label in lookup:
                targets[r, lookup[label]] = 1.0
    return LabelSpace(kind, classes, np.asarray(rows, np.int64), targets)


def label_spaces(data: LabelledVideos) -> dict[TagKind, LabelSpace]:
    """Every learnable label space of ``data``; TagsError when there is none."""
    spaces = {kind: space for kind in TagKind if (space := label_space(data, kind)) is not None}
    if not spaces:
        raise TagsError(
            "nothing to learn: "
            + "; ".join(w for w in data.warnings if w.startswith("no "))
            + "; label more videos (manifest columns category / tags) and ingest again"
        )
    return spaces


def load_labelled(
    settings: Settings,
    database: Database,
    *,
    features: FeaturesOf,
    model_version: str | None = None,
) -> LabelledVideos:
    """Every ready video with a category or tags, with its labels and its features by
    ``features`` (videos it has none for are left out with a warning); ``model_version``: also
    their embeddings of that model (videos without one are left out too)."""
    with database.session() as session:
        videos = list(
            session.scalars(
                select(Video)
                .where(or_(Video.category.is_not(None), Video.tags.is_not(None)))
                .order_by(Video.id)
            )
        )
        session.expunge_all()
    videos = [v for v in videos if v.category or v.tags]
    data = LabelledVideos(features=[], categories=[], tags=[])
    unusable = [v for v in videos if v.status not in (VideoStatus.READY, VideoStatus.STALE)]
    if unusable:
        warn(
            data,
            f"{len(unusable)} labelled videos are {'/'.join(sorted({v.status for v in unusable}))}"
            f" and do not train (first: {', '.join(v.video_id for v in unusable[:5])})",
        )
    ready = [v for v in videos if v not in unusable]
    found = features(ready)
    vectors: dict[int, np.ndarray] = {}
    if model_version is not None:
        with database.session() as session:
            matrix = EmbeddingStore(settings).load(session, model_version)
        vectors = {int(k): matrix.vectors[i] for i, k in enumerate(matrix.video_keys)}
    kept = [
        v
        for v in ready
        if v.content_hash in found and (model_version is None or int(v.id) in vectors)
    ]
    if len(kept) < len(ready):
        missing = [v.video_id for v in ready if v not in kept]
        warn(
            data,
            f"{len(missing)} labelled videos have no features"
            f"{'' if model_version is None else ' or embedding'} and do not train (first: "
            f"{', '.join(missing[:5])})",
        )
    data.features = [found[v.content_hash or ""] for v in kept]
    data.categories = [v.category or None for v in kept]
    data.tags = [list(v.tags or []) for v in kept]
    data.durations = [v.duration_s for v in kept]
    data.video_ids = [v.video_id for v in kept]
    if model_version is not None:
        data.embeddings = (
            np.stack([vectors[int(v.id)] for v in kept]) if kept else np.zeros((0, 0), np.float32)
        )
    return data

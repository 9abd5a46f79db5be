"""Predicted tags in the database, beside the human labels and never over them.

A video's human labels stay in ``videos.category``/``videos.tags`` (nothing here writes those
columns); each prediction run replaces only the video's rows of ``predicted_tags`` and its
``tag_prediction_state`` row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from recsys.db.models import PredictedTag, TagPredictionState, Video
from recsys.ids import VideoKey
from recsys.tags.predict import VideoTags


def write_predictions(session: Session, video: Video, tags_model: str, found: VideoTags) -> None:
    """Replace the stored predictions of ``video`` with ``found`` (in the caller's
    transaction)."""
    session.execute(delete(PredictedTag).where(PredictedTag.video_key == video.id))
    state = session.get(TagPredictionState, video.id)
    if state is None:
        state = TagPredictionState(video_key=video.id)
        session.add(state)
    state.tags_model = tags_model
    state.content_hash = video.content_hash
    state.abstained = found.abstained
    state.segments_disagree = found.segments_disagree
    state.segment_labels = list(found.segment_labels)
    for prediction in found.predictions:
        session.add(
            PredictedTag(
                video_key=video.id,
                kind=prediction.kind.value,
                tag=prediction.tag,
                confidence=prediction.confidence,
                spans=[span.as_dict() for span in prediction.spans],
                tags_model=tags_model,
            )
        )


@dataclass
class StoredTags:
    """A video's human labels and its stored predictions (best first)."""

    given: list[dict[str, str]]
    predicted: list[dict[str, Any]] = field(default_factory=list)
    tags_model: str | None = None
    abstained: bool = False
    segments_disagree: bool = False
    segment_labels: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "given": self.given,
            "predicted": self.predicted,
            "tags_model": self.tags_model,
            "abstained": self.abstained,
            "segments_disagree": self.segments_disagree,
            "segment_labels": self.segment_labels,
        }


def given_labels(video: Video) -> list[dict[str, str]]:
    """The human labels of ``video``: its category first, then its tags."""
    given = [{"tag": video.category, "kind": "category"}] if video.category else []
    return given + [{"tag": tag, "kind": "tag"} for tag in video.tags or [] if tag]


def stored_tags(session: Session, video: Video) -> StoredTags:
    """Human labels and predictions of ``video``. A prediction that repeats a human label of
    the same kind is left out (the human label stands)."""
    given = given_labels(video)
    said = {(g["kind"], g["tag"]) for g in given}
    state = session.get(TagPredictionState, video.id)
    rows = session.scalars(
        select(PredictedTag)
        .where(PredictedTag.video_key == video.id)
        .order_by(PredictedTag.confidence.desc(), PredictedTag.tag)
    ).all()
    return StoredTags(
        given=given,
        predicted=[
            {
                "tag": row.tag,
                "kind": row.kind,
                "confidence": round(row.confidence, 4),
                "spans": row.spans,
                "tags_model": row.tags_model,
            }
            for row in rows
            if (row.kind, row.tag) not in said
        ],
        tags_model=None if state is None else state.tags_model,
        abstained=False if state is None else state.abstained,
        segments_disagree=False if state is None else state.segments_disagree,
        segment_labels=[] if state is None else list(state.segment_labels),
    )


def predicted_category_keys(
    session: Session, category: str, min_confidence: float
) -> list[VideoKey]:
    """Keys of the videos whose category is ``category``: given by a human, or predicted with
    at least ``min_confidence`` for a video without a human category."""
    given = select(Video.id).where(Video.category == category)
    predicted = (
        select(PredictedTag.video_key)
        .join(Video, Video.id == PredictedTag.video_key)
        .where(
            PredictedTag.kind == "category",
            PredictedTag.tag == category,
            PredictedTag.confidence >= min_confidence,
            Video.category.is_(None),
        )
    )
    return sorted({VideoKey(k) for k in session.scalars(given.union(predicted))})

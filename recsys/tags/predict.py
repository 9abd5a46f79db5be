"""Predicting a video's categories and tags, with the spans where each applies."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.features import VideoFeatures
from recsys.tags.inputs import pooled_rows, segment_rows
from recsys.tags.model import Head, Source, TagKind, TagModel
from recsys.tags.spans import DISAGREE_SHARE, Span, category_segments, spans_of, tag_segments


@dataclass
class TagPrediction:
    kind: TagKind
    tag: str
    confidence: float  # calibrated: about this share of such predictions is right
    spans: list[Span] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "tag": self.tag,
            "kind": self.kind.value,
            "confidence": round(self.confidence, 4),
            "spans": [span.as_dict() for span in self.spans],
        }


@dataclass
class VideoTags:
    """What the model says about one video; ``predictions`` best first."""

    predictions: list[TagPrediction]
    abstained: bool  # no category reached the threshold
    segments_disagree: bool  # several categories each hold a large part of the video
    segment_labels: list[str]  # the categories that hold a part of the video, longest first


def video_rows(
    model: TagModel, features: Sequence[VideoFeatures], embeddings: np.ndarray | None
) -> np.ndarray:
    """The scaled pooled input rows of ``model`` for these videos."""
    if model.source == Source.EMBEDDING:
        if embeddings is None:
            raise ValueError("an embedding-source tags model needs the videos' embeddings")
        present = np.ones((embeddings.shape[0], 1), bool)
        return model.video_scaler.transform(np.asarray(embeddings, np.float32), present)
    rows, present, _ = pooled_rows(features, model.audio_dim)
    return model.video_scaler.transform(rows, present)


def scaled_segments(model: TagModel, features: VideoFeatures) -> tuple[np.ndarray, np.ndarray]:
    """Scaled segment rows of one video and their bounds (fractions of the video)."""
    # The segment scaler's audio block is one audio window wide (a model saved before the
    # segments carried their audio has the pooled width there: its segments stay visual).
    rows, present, bounds = segment_rows(features, model.segment_scaler.sizes[1])
    return model.segment_scaler.transform(rows, present), bounds


def _category(
    head: Head, confidence: np.ndarray, segments: np.ndarray, bounds: np.ndarray, duration: float
) -> tuple[list[TagPrediction], bool, list[str], bool]:
    labels = category_segments(head.segment_log_scores(segments))
    shares = np.bincount(labels, minlength=len(head.classes)) / max(labels.shape[0], 1)
    held = [int(c) for c in np.argsort(-shares, kind="stable") if shares[c] >= DISAGREE_SHARE]
    top = int(np.argmax(confidence))
    abstained = bool(confidence[top] < head.threshold)
    chosen = ([] if abstained else [top]) + held  # the parts of the video come after
    predictions = [
        TagPrediction(
            TagKind.CATEGORY,
            head.classes[c],
            float(confidence[c]),
            spans_of(labels == c, bounds, duration),
        )
        for c in dict.fromkeys(chosen)
    ]
    return predictions, abstained, [head.classes[c] for c in held], len(held) > 1


def _tags(
    head: Head, confidence: np.ndarray, segments: np.ndarray, bounds: np.ndarray, duration: float
) -> list[TagPrediction]:
    held = tag_segments(head.segment_scores(segments))
    return [
        TagPrediction(
            TagKind.TAG,
            head.classes[c],
            float(confidence[c]),
            spans_of(held[:, c], bounds, duration),
        )
        for c in np.flatnonzero(confidence >= head.threshold)
    ]


def predict_videos(
    model: TagModel,
    features: Sequence[VideoFeatures],
    durations: Sequence[float | None],
    embeddings: np.ndarray | None = None,
) -> list[VideoTags]:
    """Categories and tags of each video (its features, its duration in seconds, and for an
    embedding-source model its served embedding), best first, with spans."""
    if not features:
        return []
    rows = video_rows(model, features, embeddings)
    scores = {kind: head.confidences(rows) for kind, head in model.heads.items()}
    out = []
    for i, video in enumerate(features):
        segments, bounds = scaled_segments(model, video)
        duration = float(durations[i] or segments.shape[0])  # unknown: one second a segment
        predictions: list[TagPrediction] = []
        disagree, labels = False, list[str]()
        abstained = True
        category = model.heads.get(TagKind.CATEGORY)
        if category is not None:
            found, abstained, labels, disagree = _category(
                category, scores[TagKind.CATEGORY][i], segments, bounds, duration
            )
            predictions += found
        tags = model.heads.get(TagKind.TAG)
        if tags is not None:
            found_tags = _tags(tags, scores[TagKind.TAG][i], segments, bounds, duration)
            abstained = abstained and (category is not None or not found_tags)
            predictions += found_tags
        predictions.sort(key=lambda p: -p.confidence)
        out.append(VideoTags(predictions, abstained, disagree, labels))
    return out

"""Tags for untagged videos: categories and tags predicted from stage-A features (or served
embeddings), calibrated, with the spans of the video where each applies.

Training lives in ``training.tags``; this package holds what prediction needs (the model's
arrays, inputs, spans, storage), so the refresh can re-tag what it embeds.
"""

from recsys.tags.catalog import PredictSummary, predict_catalog, retag_after_refresh
from recsys.tags.errors import NoTagsModel, TagsError, TagsModelMismatch
from recsys.tags.model import (
    DEFAULT_THRESHOLD,
    Head,
    Method,
    Source,
    TagKind,
    TagModel,
    current_tags_version,
    load_tag_model,
    save_tag_model,
)
from recsys.tags.predict import TagPrediction, VideoTags, predict_videos
from recsys.tags.store import StoredTags, predicted_category_keys, stored_tags

__all__ = [
    "DEFAULT_THRESHOLD",
    "Head",
    "Method",
    "NoTagsModel",
    "PredictSummary",
    "Source",
    "StoredTags",
    "TagKind",
    "TagModel",
    "TagPrediction",
    "TagsError",
    "TagsModelMismatch",
    "VideoTags",
    "current_tags_version",
    "load_tag_model",
    "predict_catalog",
    "predict_videos",
    "predicted_category_keys",
    "retag_after_refresh",
    "save_tag_model",
    "stored_tags",
]

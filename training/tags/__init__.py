"""Training and evaluating the tags classifier on the catalog's human labels (prediction and
storage: ``recsys.tags``)."""

from recsys.tags.fit import fit_tag_model
from recsys.tags.labels import LabelledVideos, label_spaces
from training.tags.data import load_labelled
from training.tags.evaluate import (
    calibrated_ece_floor,
    evaluate_labelled,
    expected_calibration_error,
    span_iou,
)
from training.tags.run import (
    TagsOptions,
    TagsTrainResult,
    evaluate_tags,
    tag_catalog,
    train_tags,
)

__all__ = [
    "LabelledVideos",
    "TagsOptions",
    "TagsTrainResult",
    "calibrated_ece_floor",
    "evaluate_labelled",
    "evaluate_tags",
    "expected_calibration_error",
    "fit_tag_model",
    "label_spaces",
    "load_labelled",
    "span_iou",
    "tag_catalog",
    "train_tags",
]

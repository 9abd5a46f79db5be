"""Calibrated confidences on a held-out split: a confidence of c is right about c of the time,
so a threshold is a precision; bad label sets are refused or reported."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.features import VideoFeatures
from recsys.tags import TagKind, TagsError
from recsys.tags.fit import fit_tag_model
from recsys.tags.labels import LabelledVideos, label_spaces
from recsys.tags.predict import video_rows
from training.tags import calibrated_ece_floor, expected_calibration_error

#: Largest expected calibration error accepted on the 600 held-out videos (sampling alone
#: gives a perfectly calibrated model about 0.03 there).
MAX_ECE = 0.07
#: Kept predictions may be less precise than the threshold by at most this much.
PRECISION_SLACK = 0.07


def _catalog(n: int, seed: int, spread: float = 1.6) -> tuple[LabelledVideos, np.ndarray]:
    """Videos of 4 overlapping topics: frames scattered around a topic centre (so some videos
    are ambiguous), audio windows weakly informative."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(4, 12))
    topics = rng.integers(0, 4, n)
    features = []
    for t in topics:
        offset = rng.normal(scale=spread, size=12)
        frames = centres[t] + offset + rng.normal(scale=0.5, size=(8, 12))
        windows = 0.3 * centres[t, :6] + rng.normal(size=(5, 6))
        features.append(
            VideoFeatures.from_sequences(
                "test", "1", frames.astype(np.float32), windows.astype(np.float32)
            )
        )
    names: list[str | None] = [f"topic{t}" for t in topics]
    return LabelledVideos(features, names, [[] for _ in names]), topics


def test_confidence_on_a_held_out_split_is_calibrated() -> None:
    data, _ = _catalog(1200, seed=1)
    train, held = data.subset(range(600)), data.subset(range(600, 1200))
    model = fit_tag_model(train, extractor="test", extractor_version="1", segments=False)
    head = model.heads[TagKind.CATEGORY]
    scores = head.confidences(video_rows(model, held.features, None))
    truth = np.array([head.classes.index(str(c)) for c in held.categories])
    top, correct = scores.max(axis=1), scores.argmax(axis=1) == truth

    assert 0.5 < correct.mean() < 0.95  # a task where confidence has something to say
    ece = expected_calibration_error(top, correct)
    assert ece <= MAX_ECE, (ece, calibrated_ece_floor(top))
    for threshold in (0.5, 0.7, 0.9):
        kept = top >= threshold
        if kept.sum() >= 30:
            assert correct[kept].mean() >= threshold - PRECISION_SLACK, threshold


def test_label_sets_that_cannot_train_are_refused_or_reported() -> None:
    data, _ = _catalog(12, seed=2)
    same: list[str | None] = ["same"] * 12
    one_class = LabelledVideos(data.features, same, [[] for _ in range(12)])
    with pytest.raises(TagsError, match="needs at least 2 categories"):
        label_spaces(one_class)

    categories: list[str | None] = [*(["a"] * 5), *(["b"] * 6), "solo"]  # "solo": one video
    lonely = LabelledVideos(data.features, categories, [["x", "y"]] * 12)  # tags on every one
    spaces = label_spaces(lonely)
    assert spaces[TagKind.CATEGORY].classes == ["a", "b"]
    assert 11 not in spaces[TagKind.CATEGORY].rows  # the lone video trains nothing
    assert TagKind.TAG not in spaces
    assert any("solo" in w for w in lonely.warnings)
    assert any("every tagged video" in w for w in lonely.warnings)

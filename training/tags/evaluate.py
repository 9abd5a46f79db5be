"""How good a tags model is, measured the only honest way on a small catalog: repeated
cross-validation, every figure from videos whose labels the model being scored never saw (the
selection and the calibration are refitted inside each training fold).

Categories: top-1 accuracy, macro-F1 and expected calibration error (ECE: the gap between
confidence and accuracy, averaged over confidence bins weighted by their videos), coverage and
accuracy above the threshold, beside the majority class and a uniform random guess. On a few
dozen videos a perfectly calibrated model still shows an ECE well above 0 from sampling alone:
each ECE comes with that floor, and the ECE of every seed's predictions pooled. Tags: mean
average precision and ECE over every (video, tag) pair. Span IoU scores localisation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import average_precision_score, f1_score
from sklearn.model_selection import KFold, StratifiedKFold

from recsys.tags import DEFAULT_THRESHOLD, Method, Source, TagKind
from recsys.tags.fit import FOLDS, fit_tag_model
from recsys.tags.labels import LabelledVideos, label_space
from recsys.tags.predict import video_rows
from recsys.tags.spans import Span

#: Confidence bins of the expected calibration error.
ECE_BINS = 10


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Σ_bins (videos in bin / all) · |accuracy − mean confidence| over equal-width bins."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    if confidence.size == 0:
        return 0.0
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap = abs(correct[inside].mean() - confidence[inside].mean())
            total += inside.mean() * gap
    return float(total)


def calibrated_ece_floor(
    confidence: np.ndarray, bins: int = ECE_BINS, draws: int = 200, seed: int = 0
) -> float:
    """The ECE a perfectly calibrated classifier with these confidences would show, from
    sampling alone (each prediction right with probability its confidence): on a few dozen
    videos it is far from 0, so an ECE is read against it."""
    rng = np.random.default_rng(seed)
    confidence = np.asarray(confidence, float)
    return float(
        np.mean(
            [
                expected_calibration_error(
                    confidence, rng.uniform(size=confidence.shape) < confidence, bins
                )
                for _ in range(draws)
            ]
        )
    )


def span_iou(spans: Sequence[Span], start_s: float, end_s: float) -> float:
    """Intersection over union (in seconds) of predicted ``spans`` and the interval
    ``[start_s, end_s)``."""
    intersection = sum(max(0.0, min(s.end_s, end_s) - max(s.start_s, start_s)) for s in spans)
    union = sum(s.end_s - s.start_s for s in spans) + (end_s - start_s) - intersection
    return float(intersection / union) if union > 0 else 0.0


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": round(float(np.mean(values)), 4),
        "std": round(float(np.std(values)), 4),
        "min": round(float(np.min(values)), 4),
        "max": round(float(np.max(values)), 4),
    }


def _category_seed(
    data: LabelledVideos,
    classes: list[str],
    rows: np.ndarray,
    truth: np.ndarray,
    seed: int,
    folds: int,
    threshold: float,
    options: dict[str, Any],
) -> tuple[dict[str, float], np.ndarray]:
    """Figures of one seed, and its (2, n) confidences and hits (for the pooled ECE)."""
    confidence = np.zeros((rows.shape[0], len(classes)))
    majority = np.zeros(rows.shape[0], np.int64)
    counts = np.bincount(truth, minlength=len(classes))
    splitter = StratifiedKFold(min(folds, int(counts.max())), shuffle=True, random_state=seed)
    for train, test in splitter.split(np.zeros(rows.shape[0]), truth):
        fold = data.subset(rows[train])
        fold.tags = [[] for _ in fold.tags]  # only the category head is scored here
        model = fit_tag_model(fold, seed=seed, threshold=threshold, segments=False, **options)
        head = model.heads[TagKind.CATEGORY]
        held = data.subset(rows[test])
        scores = head.confidences(video_rows(model, held.features, held.embeddings))
        lookup = [classes.index(c) for c in head.classes]
        confidence[np.ix_(test, lookup)] = scores
        majority[test] = int(np.bincount(truth[train], minlength=len(classes)).argmax())
    guess: np.ndarray = confidence.argmax(axis=1)
    top = confidence.max(axis=1)
    correct = guess == truth
    kept = top >= threshold
    chance = np.asarray(np.random.default_rng(seed).integers(0, len(classes), rows.shape[0]))
    labels = list(range(len(classes)))

    def macro(predicted: np.ndarray) -> float:
        return float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0))

    return {
        "top1_accuracy": float(correct.mean()),
        "macro_f1": macro(guess),
        "ece": expected_calibration_error(top, correct),
        "ece_if_calibrated": calibrated_ece_floor(top, seed=seed),
        "mean_confidence": float(top.mean()),
        "coverage": float(kept.mean()),
        "accuracy_above_threshold": float(correct[kept].mean()) if kept.any() else 0.0,
        "majority_accuracy": float(np.mean(majority == truth)),
        "majority_macro_f1": macro(majority),
        "random_accuracy": float(np.mean(chance == truth)),
        "random_macro_f1": macro(chance),
    }, np.stack([top, correct.astype(float)])


def _tag_seed(
    data: LabelledVideos,
    rows: np.ndarray,
    targets: np.ndarray,
    classes: list[str],
    seed: int,
    folds: int,
    threshold: float,
    options: dict[str, Any],
) -> dict[str, float]:
    confidence = np.zeros(targets.shape)
    for train, test in KFold(min(folds, rows.shape[0]), shuffle=True, random_state=seed).split(
        rows
    ):
        fold = data.subset(rows[train])
        fold.categories = [None] * len(fold)
        model = fit_tag_model(fold, seed=seed, threshold=threshold, segments=False, **options)
        head = model.heads[TagKind.TAG]
        held = data.subset(rows[test])
        scores = head.confidences(video_rows(model, held.features, held.embeddings))
        confidence[np.ix_(test, [classes.index(c) for c in head.classes])] = scores
    usable = [j for j in range(len(classes)) if 0 < targets[:, j].sum() < rows.shape[0]]
    return {
        "mean_average_precision": float(
            np.mean([average_precision_score(targets[:, j], confidence[:, j]) for j in usable])
        ),
        "ece": expected_calibration_error(confidence.ravel(), targets.ravel()),
        "prior_mean_average_precision": float(np.mean([targets[:, j].mean() for j in usable])),
    }


def evaluate_labelled(
    data: LabelledVideos,
    *,
    seeds: Sequence[int] = tuple(range(10)),
    folds: int = FOLDS,
    threshold: float = DEFAULT_THRESHOLD,
    sources: tuple[Source, ...] | None = None,
    methods: tuple[Method, ...] | None = None,
) -> dict[str, Any]:
    """Cross-validated figures of the tags classifier on ``data``, mean and spread over
    ``seeds`` (see the module docstring)."""
    options: dict[str, Any] = {
        "extractor": "",
        "extractor_version": "",
        "sources": sources,
        "methods": methods,
    }
    report: dict[str, Any] = {"seeds": list(seeds), "folds": folds, "threshold": threshold}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The least populated class")
        category = label_space(data, TagKind.CATEGORY)
        if category is not None:
            runs = [
                _category_seed(
                    data,
                    category.classes,
                    category.rows,
                    category.single,
                    seed,
                    folds,
                    threshold,
                    options,
                )
                for seed in seeds
            ]
            pooled = np.concatenate([hits for _, hits in runs], axis=1)
            report["categories"] = {
                "videos": int(category.rows.shape[0]),
                "classes": len(category.classes),
                **{key: _summary([r[key] for r, _ in runs]) for key in runs[0][0]},
                # Every seed's out-of-fold predictions together: seeds x videos predictions,
                # so sampling noise weighs less than in one seed's ECE.
                "ece_pooled": round(expected_calibration_error(pooled[0], pooled[1]), 4),
                "ece_pooled_if_calibrated": round(calibrated_ece_floor(pooled[0]), 4),
            }
        tags = label_space(data, TagKind.TAG)
        if tags is not None:
            tag_runs = [
                _tag_seed(
                    data, tags.rows, tags.targets, tags.classes, seed, folds, threshold, options
                )
                for seed in seeds
            ]
            report["tags"] = {
                "videos": int(tags.rows.shape[0]),
                "classes": len(tags.classes),
                **{key: _summary([r[key] for r in tag_runs]) for key in tag_runs[0]},
            }
    report["warnings"] = sorted(set(data.warnings))
    return report

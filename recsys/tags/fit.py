"""Fitting a tags model: candidates chosen by cross-validation, calibrated, plus spans.

For each label space (categories, tags) every candidate, a linear probe (logistic regression,
a few regularisation strengths) or a k-nearest-neighbour vote (a few k), on every available
input (pooled stage-A features, served embeddings), is scored by cross-validation on the
labelled videos; the best one is refitted on all of them. Its out-of-fold scores fit the
calibration curve (Platt scaling on few examples, isotonic regression on many), so that the
stored confidence is the share of right answers among predictions that confident. Where in the
video comes from every segment of the labelled videos with the video's label (weak supervision,
no segment is ever labelled by hand): the category head keeps those segments as a reference
(a seeded sample per class beyond ``MAX_SEGMENT_REFERENCE``), the tags head a per-segment probe.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score
from sklearn.model_selection import KFold, StratifiedKFold

from recsys.tags.inputs import BlockScaler, pooled_rows, segment_rows
from recsys.tags.labels import LabelledVideos, LabelSpace, label_spaces
from recsys.tags.model import (
    DEFAULT_THRESHOLD,
    Head,
    Method,
    Source,
    TagKind,
    TagModel,
    knn_votes,
    sigmoid,
    softmax,
)

log = logging.getLogger(__name__)
#: Regularisation strengths (sklearn's C) of the probe candidates.
PROBE_C = (10.0, 100.0, 1000.0)
#: Neighbour counts of the vote candidates.
KNN_K = (3, 7)
#: Folds of the selection's cross-validation (fewer when a class has fewer videos).
FOLDS = 5
#: Out-of-fold positives from which isotonic calibration replaces Platt scaling.
ISOTONIC_MIN_POSITIVES = 200
#: Raw scores at which the calibration curve is tabulated.
GRID = np.linspace(0.0, 1.0, 201)
#: Most segment rows the segment probe trains on (a seeded sample beyond).
MAX_SEGMENT_ROWS = 50_000
#: Regularisation of the segment probe of a head that votes (a probe head uses its own).
SEGMENT_C = 10.0
#: Most reference segments a category head keeps (a seeded, class-balanced sample beyond).
MAX_SEGMENT_REFERENCE = 8192
#: Weights of the visual and audio blocks of a segment row. Measured on real-av (held-out
#: clips, leave-one-clip-out segment votes, span IoU on joined clips): the audio window at
#: half weight beside the frame beat the frame alone and both at full weight.
SEGMENT_BLOCK_WEIGHTS = (1.0, 0.5)
#: Names of the blocks of each source, in row order.
BLOCKS = {Source.FEATURES: ("visual", "audio"), Source.EMBEDDING: ("embedding",)}


@dataclass(frozen=True)
class Candidate:
    source: Source
    method: Method
    c: float = 1.0
    k: int = 0
    weights: tuple[float, ...] = ()  # per block of the source (0: left out)

    @property
    def name(self) -> str:
        knob = f"k={self.k}" if self.method == Method.KNN else f"C={self.c:g}"
        used = [b for b, w in zip(BLOCKS[self.source], self.weights, strict=False) if w]
        return f"{self.source.value}[{'+'.join(used)}]/{self.method.value}/{knob}"

    def scaler(self, fitted: BlockScaler) -> BlockScaler:
        """``fitted`` with this candidate's block weights."""
        return BlockScaler(fitted.sizes, fitted.mean, fitted.std, list(self.weights))


@dataclass
class Inputs:
    """Pooled rows per source with their block layout, and the segment rows of every video."""

    pooled: dict[Source, tuple[np.ndarray, np.ndarray, list[int]]]
    audio_dim: int  # of a pooled row
    segments: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    segment_audio_dim: int = 0  # of one audio window (the pooled audio is its mean and std)

    @classmethod
    def of(cls, data: LabelledVideos) -> Inputs:
        rows, present, sizes = pooled_rows(data.features)
        pooled = {Source.FEATURES: (rows, present, sizes)}
        if data.embeddings is not None and data.embeddings.size:
            emb = np.asarray(data.embeddings, np.float32)
            pooled[Source.EMBEDDING] = (emb, np.ones((emb.shape[0], 1), bool), [emb.shape[1]])
        window = next(
            (
                int(np.asarray(f.audio_seq).reshape(f.audio_seq.shape[0], -1).shape[1])
                for f in data.features
                if f.audio_seq is not None and f.audio_seq.shape[0] > 0
            ),
            0,
        )
        segments = [segment_rows(f, window)[:2] for f in data.features]
        return cls(pooled, sizes[1], segments, window)


def _splits(space: LabelSpace, folds: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    n = space.rows.shape[0]
    if space.kind == TagKind.CATEGORY:
        counts = np.bincount(space.single)
        splitter = StratifiedKFold(min(folds, int(counts.max())), shuffle=True, random_state=seed)
        yield from splitter.split(np.zeros(n), space.single)
    else:
        yield from KFold(min(folds, n), shuffle=True, random_state=seed).split(np.zeros(n))


def _fit_probe(
    rows: np.ndarray, space: LabelSpace, targets: np.ndarray, c: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(weights (C, D), bias (C,)) of a softmax probe (categories) or one logistic regression
    per tag; a class absent from ``targets`` gets a very negative bias.

    With fewer videos than dimensions the probe is fitted in the span of the rows (an
    L2-penalised solution lies there), which gives the same weights far faster."""
    if rows.shape[0] < rows.shape[1]:
        _, singular, basis = np.linalg.svd(rows, full_matrices=False)
        basis = basis[singular > 1e-8 * max(float(singular.max(initial=0.0)), 1e-12)]
        weights, bias = _fit_probe(rows @ basis.T, space, targets, c, seed)
        return weights @ basis, bias
    classes = targets.shape[1]
    weights = np.zeros((classes, rows.shape[1]))
    bias = np.full(classes, -30.0)
    if space.kind == TagKind.CATEGORY:
        y = targets.argmax(axis=1)
        seen = np.unique(y)
        if seen.shape[0] == 1:
            bias[seen[0]] = 30.0
            return weights, bias
        probe = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(rows, y)
        weights[probe.classes_] = probe.coef_
        bias[probe.classes_] = probe.intercept_
        return weights, bias
    for j in range(classes):
        y = targets[:, j]
        if y.min() == y.max():
            bias[j] = 30.0 if y[0] else -30.0
            continue
        probe = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(rows, y)
        weights[j], bias[j] = probe.coef_[0], probe.intercept_[0]
    return weights, bias


def _link(space: LabelSpace, logits: np.ndarray) -> np.ndarray:
    return softmax(logits) if space.kind == TagKind.CATEGORY else sigmoid(logits)


def _scaled(
    inputs: Inputs, candidate: Candidate, train: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``train`` and ``test`` scaled by statistics of ``train`` alone."""
    rows, present, sizes = inputs.pooled[candidate.source]
    scaler = candidate.scaler(BlockScaler.fit(rows[train], sizes, present[train]))
    return scaler.transform(rows[train], present[train]), scaler.transform(
        rows[test], present[test]
    )


def raw_scores(
    candidate: Candidate,
    inputs: Inputs,
    space: LabelSpace,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
) -> np.ndarray:
    """Scores of the videos ``test`` (indices into ``space.rows``) by ``candidate`` fitted on
    ``train``."""
    videos = space.rows
    fitted, other = _scaled(inputs, candidate, videos[train], videos[test])
    if candidate.method == Method.KNN:
        return knn_votes(other, fitted, space.targets[train], candidate.k)
    weights, bias = _fit_probe(fitted, space, space.targets[train], candidate.c, seed)
    return _link(space, other @ weights.T + bias)


def out_of_fold(
    candidate: Candidate, inputs: Inputs, space: LabelSpace, folds: int, seed: int
) -> np.ndarray:
    scores = np.zeros(space.targets.shape)
    for train, test in _splits(space, folds, seed):
        scores[test] = raw_scores(candidate, inputs, space, train, test, seed)
    return scores


def selection_score(space: LabelSpace, scores: np.ndarray) -> tuple[float, ...]:
    """What the choice maximises: the (negated) Brier score then top-1 accuracy and macro-F1
    (categories: a smooth score, so that a few videos do not decide by luck), mean average
    precision then the Brier score (tags)."""
    brier = -float(np.mean((scores - space.targets) ** 2))
    if space.kind == TagKind.CATEGORY:
        truth, guess = space.single, scores.argmax(axis=1)
        macro = f1_score(truth, guess, average="macro", zero_division=0.0)
        return brier, float(np.mean(truth == guess)), float(macro)
    usable = [j for j in range(scores.shape[1]) if 0 < space.targets[:, j].sum() < len(scores)]
    precision = np.mean(
        [average_precision_score(space.targets[:, j], scores[:, j]) for j in usable]
    )
    return float(precision), brier


def calibration_curve(space: LabelSpace, scores: np.ndarray) -> np.ndarray:
    """(2, len(GRID)): raw score → confidence, fitted on out-of-fold scores of every (video,
    class) pair. Platt scaling below :data:`ISOTONIC_MIN_POSITIVES` positives (a smooth
    curve from few examples), isotonic regression above; scores that do not rank the held-out
    pairs at all get the base rate as their confidence (never a falling curve)."""
    raw, hit = scores.ravel(), space.targets.ravel()
    if hit.sum() >= ISOTONIC_MIN_POSITIVES:
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, hit)
        return np.stack([GRID, iso.predict(GRID)])
    if hit.min() == hit.max():  # nothing to fit: every pair right, or every pair wrong
        return np.stack([GRID, np.full(GRID.shape, float(hit.mean()))])
    logit = np.log(np.clip(raw, 1e-4, 1 - 1e-4) / (1 - np.clip(raw, 1e-4, 1 - 1e-4)))
    platt = LogisticRegression(C=100.0).fit(logit[:, None], hit)
    if platt.coef_[0, 0] <= 0:  # held-out scores that do not rank: the base rate, for all
        return np.stack([GRID, np.full(GRID.shape, float(hit.mean()))])
    grid = np.clip(GRID, 1e-4, 1 - 1e-4)
    return np.stack([GRID, platt.predict_proba(np.log(grid / (1 - grid))[:, None])[:, 1]])


def candidates(inputs: Inputs) -> list[Candidate]:
    """Every (source, blocks, method, knob) the selection tries: the features with both
    modalities and with each alone, the embedding whole."""
    out = []
    for source in inputs.pooled:
        options: list[tuple[float, ...]] = [(1.0,)]
        if source == Source.FEATURES:
            options = [(1.0, 1.0), (1.0, 0.0), (0.0, 1.0)] if inputs.audio_dim else [(1.0, 0.0)]
        for weights in options:
            out += [Candidate(source, Method.PROBE, c=c, weights=weights) for c in PROBE_C]
            out += [Candidate(source, Method.KNN, k=k, weights=weights) for k in KNN_K]
    return out


def _segment_probe(
    inputs: Inputs, space: LabelSpace, scaler: BlockScaler, c: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rows = np.concatenate([inputs.segments[i][0] for i in space.rows])
    present = np.concatenate([inputs.segments[i][1] for i in space.rows])
    counts = [inputs.segments[i][0].shape[0] for i in space.rows]
    targets = np.repeat(space.targets, counts, axis=0)
    if rows.shape[0] > MAX_SEGMENT_ROWS:
        keep = np.random.default_rng(seed).choice(rows.shape[0], MAX_SEGMENT_ROWS, replace=False)
        rows, present, targets = rows[keep], present[keep], targets[keep]
    return _fit_probe(scaler.transform(rows, present), space, targets, c, seed)


def fit_head(
    inputs: Inputs,
    space: LabelSpace,
    scalers: dict[Source, BlockScaler],
    pool: list[Candidate],
    *,
    folds: int = FOLDS,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[Head, Candidate]:
    """The best candidate of ``pool`` for ``space`` refitted on all its videos (inputs scaled
    by ``scalers``, fitted on every labelled video) and calibrated; also that candidate."""
    scored = []
    for candidate in pool:
        oof = out_of_fold(candidate, inputs, space, folds, seed)
        scored.append((selection_score(space, oof), candidate, oof))
        log.debug("%s %s: %s", space.kind.value, candidate.name, scored[-1][0])
    best_score, best, oof = max(scored, key=lambda item: item[0])
    rows, present, _ = inputs.pooled[best.source]
    scaler = best.scaler(scalers[best.source])
    fitted = scaler.transform(rows[space.rows], present[space.rows])
    arrays: dict[str, np.ndarray] = {"calibration": calibration_curve(space, oof)}
    if best.method == Method.KNN:
        arrays |= {"reference": fitted, "memberships": space.targets}
    else:
        arrays["weights"], arrays["bias"] = _fit_probe(fitted, space, space.targets, best.c, seed)
    figures = {
        "chosen": best.name,
        "videos": int(space.rows.shape[0]),
        "score": [round(s, 4) for s in best_score],
        "candidates": {c.name: [round(s, 4) for s in score] for score, c, _ in scored},
    }
    head = Head(
        space.kind,
        space.classes,
        best.method,
        arrays,
        k=best.k,
        c=best.c,
        threshold=threshold,
        figures=figures,
    )
    return head, best


def _segment_reference(
    inputs: Inputs, space: LabelSpace, scaler: BlockScaler, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(reference rows (M, D), their class indices (M,)): the scaled segments of every video
    of ``space`` labelled with its category, at most ``MAX_SEGMENT_REFERENCE`` in all (a
    seeded sample of each class's share beyond)."""
    rows = np.concatenate([inputs.segments[i][0] for i in space.rows])
    present = np.concatenate([inputs.segments[i][1] for i in space.rows])
    counts = [inputs.segments[i][0].shape[0] for i in space.rows]
    classes = np.repeat(space.single, counts)
    if rows.shape[0] > MAX_SEGMENT_REFERENCE:
        rng = np.random.default_rng(seed)
        share = MAX_SEGMENT_REFERENCE // len(space.classes)
        keep = np.concatenate(
            [
                rng.permutation(np.flatnonzero(classes == c))[:share]
                for c in range(len(space.classes))
            ]
        )
        rows, present, classes = rows[keep], present[keep], classes[keep]
    return scaler.transform(rows, present), classes.astype(np.float32)


def _segment_arrays(
    inputs: Inputs, space: LabelSpace, head: Head, scaler: BlockScaler, seed: int, fit: bool
) -> None:
    """What ``head`` scores segments with: reference segments (categories) or a segment probe
    (tags); uniform scores when not ``fit`` (evaluations of the video-level figures only)."""
    if fit and space.kind == TagKind.CATEGORY:
        reference, classes = _segment_reference(inputs, space, scaler, seed)
        head.arrays["segment_reference"], head.arrays["segment_classes"] = reference, classes
        return
    if fit:
        c = head.c if head.method == Method.PROBE else SEGMENT_C
        weights, bias = _segment_probe(inputs, space, scaler, c, seed)
    else:
        weights, bias = (
            np.zeros((len(space.classes), scaler.mean.shape[0])),
            np.zeros(len(space.classes)),
        )
    head.arrays["segment_weights"], head.arrays["segment_bias"] = weights, bias


def segment_scaler_of(inputs: Inputs, rows: np.ndarray) -> BlockScaler:
    """The segment rows' scaler, fitted on the videos ``rows``, with
    :data:`SEGMENT_BLOCK_WEIGHTS`."""
    seg = np.concatenate([inputs.segments[i][0] for i in rows])
    present = np.concatenate([inputs.segments[i][1] for i in rows])
    sizes = [seg.shape[1] - inputs.segment_audio_dim, inputs.segment_audio_dim]
    fitted = BlockScaler.fit(seg, sizes, present)
    fitted.weights = list(SEGMENT_BLOCK_WEIGHTS) if inputs.segment_audio_dim else [1.0, 0.0]
    return fitted


def fit_tag_model(
    data: LabelledVideos,
    *,
    extractor: str,
    extractor_version: str,
    model_version: str | None = None,
    folds: int = FOLDS,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    sources: tuple[Source, ...] | None = None,
    methods: tuple[Method, ...] | None = None,
    segments: bool = True,
) -> TagModel:
    """A tags model for ``data`` (see the module docstring); TagsError when no label space
    can be learned. Every head reads the same input (source and modalities): the one that
    scored best on the categories (or the tags when there are no categories)."""
    spaces = label_spaces(data)
    inputs = Inputs.of(data)
    everyone = np.arange(len(data))
    segment_scaler = segment_scaler_of(inputs, everyone)
    pool = [
        c
        for c in candidates(inputs)
        if (sources is None or c.source in sources) and (methods is None or c.method in methods)
    ]
    scalers = {
        source: BlockScaler.fit(rows, sizes, present)
        for source, (rows, present, sizes) in inputs.pooled.items()
    }
    heads: dict[TagKind, Head] = {}
    chosen: Candidate | None = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("ignore", message="The least populated class")
        for kind in (TagKind.CATEGORY, TagKind.TAG):
            if kind not in spaces:
                continue
            same = [
                c
                for c in pool
                if chosen is None or (c.source, c.weights) == (chosen.source, chosen.weights)
            ]
            heads[kind], best = fit_head(
                inputs, spaces[kind], scalers, same, folds=folds, seed=seed, threshold=threshold
            )
            chosen = chosen or best
        assert chosen is not None
        source = chosen.source
        for kind, head in heads.items():
            _segment_arrays(inputs, spaces[kind], head, segment_scaler, seed, segments)
    return TagModel(
        source=source,
        extractor=extractor,
        extractor_version=extractor_version,
        model_version=model_version if source == Source.EMBEDDING else None,
        audio_dim=inputs.audio_dim,
        video_scaler=chosen.scaler(scalers[source]),
        segment_scaler=segment_scaler,
        heads=heads,
        metrics={"warnings": data.warnings, "videos": len(data)},
    )

"""Where in a video a tag applies: per-segment scores → contiguous spans.

Categories (single label): the video is cut into runs, each of one category, maximising the
summed per-segment log-probabilities minus ``SWITCH_PENALTY`` for every change of category, with
no run shorter than ``MIN_RUN`` segments (an exact dynamic programme over the cut points). A
segment's argmax alone flickers between look-alike classes; a change has to be paid for by the
segments after it, so a video of one scene stays one run and an edited one is cut where it
changes. The penalty was set on real-av: held-out single clips rarely split, joined clips of two
categories split at the join (bench/quality.py ``tags``).

Tags (multi-label): scores are averaged over a window of neighbouring segments, a tag holds
wherever its score passes one half, and runs shorter than ``MIN_RUN`` segments are given to
their neighbours, so one odd frame does not split a scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Segments averaged around each one before its label is read.
SMOOTH = 3
#: Shortest run of segments kept as a span (shorter ones join a neighbour).
MIN_RUN = 2
#: A second category holding at least this share of a video makes its segments disagree.
DISAGREE_SHARE = 0.2
#: Log-probability (nats) a change of category must gain over staying (categories).
SWITCH_PENALTY = 1.5


@dataclass
class Span:
    start_s: float
    end_s: float

    def as_dict(self) -> dict[str, float]:
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3)}


def smooth(scores: np.ndarray, width: int = SMOOTH) -> np.ndarray:
    """Moving average over the segment axis (edges padded with their own values)."""
    if width <= 1 or scores.shape[0] < 2:
        return scores
    pad = width // 2
    padded = np.pad(scores, ((pad, pad), (0, 0)), mode="edge")
    kernel = np.ones(width) / width
    return np.stack(
        [np.convolve(padded[:, c], kernel, mode="valid") for c in range(scores.shape[1])], axis=1
    )


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(label, first, last + 1) of each maximal run of equal labels."""
    runs: list[tuple[int, int, int]] = []
    start = 0
    for i in range(1, labels.shape[0] + 1):
        if i == labels.shape[0] or labels[i] != labels[start]:
            runs.append((int(labels[start]), start, i))
            start = i
    return runs


def absorb_short_runs(labels: np.ndarray, min_run: int = MIN_RUN) -> np.ndarray:
    """Give each run shorter than ``min_run`` to its longer neighbour (repeated until none is
    left or only one run remains)."""
    labels = labels.copy()
    while True:
        runs = _runs(labels)
        short = [i for i, (_, a, b) in enumerate(runs) if b - a < min_run]
        if len(runs) < 2 or not short:
            return labels
        i = min(short, key=lambda j: runs[j][2] - runs[j][1])
        before = runs[i - 1] if i > 0 else None
        after = runs[i + 1] if i + 1 < len(runs) else None
        neighbours = [r for r in (before, after) if r is not None]
        target = max(neighbours, key=lambda r: r[2] - r[1])
        labels[runs[i][1] : runs[i][2]] = target[0]


def category_segments(
    log_scores: np.ndarray, penalty: float = SWITCH_PENALTY, min_run: int = MIN_RUN
) -> np.ndarray:
    """The category index of each segment (single label) from (S, C) per-segment
    log-probabilities: the best cut into runs of one category each (see the module
    docstring)."""
    count = log_scores.shape[0]
    if count == 0:
        return np.zeros(0, np.int64)
    min_run = max(1, min(min_run, count // 2))
    totals = np.vstack([np.zeros(log_scores.shape[1]), np.cumsum(log_scores, axis=0)])
    best = np.full(count + 1, -np.inf)
    best[0] = 0.0
    start = np.zeros(count + 1, np.int64)
    label = np.zeros(count + 1, np.int64)
    for end in range(min_run, count + 1):
        starts = np.arange(0, end - min_run + 1)
        starts = starts[np.isfinite(best[starts])]
        run = totals[end] - totals[starts]  # (starts, C): each run's score per category
        which = run.argmax(axis=1)
        value = best[starts] + run[np.arange(starts.shape[0]), which] - penalty * (starts > 0)
        pick = int(value.argmax())
        best[end], start[end], label[end] = value[pick], starts[pick], which[pick]
    labels = np.zeros(count, np.int64)
    end = count
    while end > 0:
        labels[start[end] : end] = label[end]
        end = int(start[end])
    return labels


def best_split(log_scores: np.ndarray, min_run: int = MIN_RUN) -> np.ndarray:
    """Two runs whatever the evidence: the cut (and the order of the two columns of the (S, 2)
    ``log_scores``) that scores best; for measuring where a join is found when the two
    categories are given."""
    count = log_scores.shape[0]
    if count < 2 or log_scores.shape[1] != 2:
        raise ValueError(f"best_split needs (S >= 2, 2) log-scores, got {log_scores.shape}")
    min_run = max(1, min(min_run, count // 2))
    totals = np.vstack([np.zeros(2), np.cumsum(log_scores, axis=0)])
    cuts = np.arange(min_run, count - min_run + 1)
    first_then_second = totals[cuts, 0] + totals[count, 1] - totals[cuts, 1]
    second_then_first = totals[cuts, 1] + totals[count, 0] - totals[cuts, 0]
    labels = np.zeros(count, np.int64)
    if first_then_second.max() >= second_then_first.max():
        labels[cuts[int(first_then_second.argmax())] :] = 1
    else:
        labels[: cuts[int(second_then_first.argmax())]] = 1
    return labels


def tag_segments(scores: np.ndarray) -> np.ndarray:
    """(S, C) booleans: where each tag holds (multi-label), short runs absorbed per tag."""
    held = smooth(scores) >= 0.5
    out = np.zeros_like(held)
    for c in range(held.shape[1]):
        out[:, c] = absorb_short_runs(held[:, c].astype(np.int64)).astype(bool)
    return out


def spans_of(mask: np.ndarray, bounds: np.ndarray, duration_s: float) -> list[Span]:
    """Spans (seconds) of the true runs of ``mask``; ``bounds`` (S, 2) are each segment's
    start and end as a fraction of the video."""
    return [
        Span(float(bounds[a, 0]) * duration_s, float(bounds[b - 1, 1]) * duration_s)
        for value, a, b in _runs(mask.astype(np.int64))
        if value
    ]

"""Where in a video a tag applies: per-segment scores → smoothed → contiguous spans.

Segment scores are noisy frame by frame, so they are averaged over a window of neighbouring
segments first; a category is the best-scoring one of each segment (single label), a tag holds
wherever its score passes one half (multi-label). Runs shorter than ``MIN_RUN`` segments are
given to their neighbours, so one odd frame does not split a scene.
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


def category_segments(scores: np.ndarray) -> np.ndarray:
    """The category index of each segment (single label): best smoothed score, short runs
    absorbed."""
    labels = smooth(scores).argmax(axis=1)
    return absorb_short_runs(labels, min(MIN_RUN, max(1, scores.shape[0] // 4)))


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

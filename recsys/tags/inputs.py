"""What the tags classifier reads: a video's pooled vector and its per-segment rows.

Both come from stage A (:class:`~recsys.features.VideoFeatures`): the pooled visual and audio
vectors, and one row per sampled frame (or clip) joined with the audio window playing at the
same time. Frames are sampled at the centres of equal slices of the video, so segment ``i`` of
``n`` covers ``[i, i + 1) * duration / n``; audio windows are spread over the track the same
way. Each modality block is standardised with statistics fitted on the training videos and
L2-normalised, so neither modality dominates by scale (the content baseline's recipe), and a
missing audio track is a zero block. A served stage-B embedding is one more block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.features import VideoFeatures

#: Smallest norm a block is divided by (an all-zero block stays zero).
EPS = 1e-9


@dataclass
class BlockScaler:
    """Per-block standardisation then L2 normalisation, fitted once on training rows.

    ``sizes`` are the widths of the consecutive blocks of a row; ``weights`` scale each
    normalised block (0 leaves a modality out: on some catalogs one modality alone classifies
    better than both, and cross-validation says which)."""

    sizes: list[int]
    mean: np.ndarray
    std: np.ndarray
    weights: list[float] = field(default_factory=list)

    def weight(self, block: int) -> float:
        return self.weights[block] if self.weights else 1.0

    @classmethod
    def fit(cls, rows: np.ndarray, sizes: Sequence[int], present: np.ndarray) -> BlockScaler:
        """``present`` (n, blocks) says which blocks of which rows hold data (a silent video's
        audio block does not): statistics come from present blocks only."""
        mean = np.zeros(rows.shape[1], np.float64)
        std = np.ones(rows.shape[1], np.float64)
        start = 0
        for b, size in enumerate(sizes):
            block = rows[present[:, b], start : start + size].astype(np.float64)
            if block.shape[0]:
                mean[start : start + size] = block.mean(axis=0)
                spread = block.std(axis=0)
                spread[spread < 1e-6] = 1.0
                std[start : start + size] = spread
            start += size
        return cls(list(sizes), mean, std)

    def transform(self, rows: np.ndarray, present: np.ndarray) -> np.ndarray:
        out = np.zeros(rows.shape, np.float32)
        start = 0
        for b, size in enumerate(self.sizes):
            part = (rows[:, start : start + size] - self.mean[start : start + size]) / self.std[
                start : start + size
            ]
            norms = np.linalg.norm(part, axis=1, keepdims=True)
            part = part / np.maximum(norms, EPS)
            part[~present[:, b]] = 0.0
            part *= self.weight(b)
            out[:, start : start + size] = part
            start += size
        return out


def _width(array: np.ndarray | None) -> int:
    return 0 if array is None else int(np.asarray(array).reshape(array.shape[0], -1).shape[1])


def pooled_rows(
    features: Sequence[VideoFeatures], audio_dim: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Pooled ``[visual | audio]`` rows, which blocks are present, and the block widths.

    ``audio_dim``: the audio width the model expects (None: the first video with audio)."""
    visual_dim = int(features[0].visual.shape[0])
    if audio_dim is None:
        audio_dim = next((int(f.audio.shape[0]) for f in features if f.audio is not None), 0)
    rows = np.zeros((len(features), visual_dim + audio_dim), np.float32)
    present = np.zeros((len(features), 2), bool)
    for i, f in enumerate(features):
        rows[i, :visual_dim] = f.visual
        present[i, 0] = True
        if f.audio is not None and audio_dim and f.audio.shape[0] == audio_dim:
            rows[i, visual_dim:] = f.audio
            present[i, 1] = True
    return rows, present, [visual_dim, audio_dim]


def segment_rows(
    features: VideoFeatures, audio_dim: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ``[frame | audio window at that time]`` row per sampled segment, which blocks are
    present, and each segment's ``(start, end)`` as a fraction of the video."""
    visual = np.asarray(features.visual_seq, np.float32)
    visual = visual.reshape(visual.shape[0], -1)
    count = visual.shape[0]
    rows = np.zeros((count, visual.shape[1] + audio_dim), np.float32)
    rows[:, : visual.shape[1]] = visual
    present = np.zeros((count, 2), bool)
    present[:, 0] = True
    audio = features.audio_seq
    if audio is not None and audio_dim and _width(audio) == audio_dim and audio.shape[0] > 0:
        windows = np.asarray(audio, np.float32).reshape(audio.shape[0], -1)
        centres = (np.arange(count) + 0.5) / count
        nearest = np.minimum((centres * windows.shape[0]).astype(np.int64), windows.shape[0] - 1)
        rows[:, visual.shape[1] :] = windows[nearest]
        present[:, 1] = True
    edges = np.arange(count + 1, dtype=np.float64) / count
    return rows, present, np.stack([edges[:-1], edges[1:]], axis=1)

"""Batch samplers that fill each batch with several related items per anchor.

Each sampler yields ``Batch(items, groups, views)``: the video indices to embed, a group label per
item (same group = positive pair for the loss) and the share of segments each item's view keeps
(1.0 = the whole video).

- :class:`CategoryBatches`: pytorch-metric-learning's ``MPerClassSampler`` (m videos per category).
- :class:`PairBatches`: weighted related pairs, no video twice in a batch; each drawn pair is
  one positive group, and items linked by another edge or a shared neighbour are kept out of
  each other's negatives.
- :class:`SelfBatches`: two segment windows of the same video (self-supervised).
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from training.data import TrainingData
from training.errors import TrainingError


def _m_per_class_sampler() -> type:
    """pytorch-metric-learning's ``MPerClassSampler``, imported without its side effect.

    Its ``samplers`` package imports ``faiss.contrib.torch_utils``, which replaces ``search``
    on every faiss index class with a torch-aware version that takes no ``params``: every later
    filtered search in the process (the demo and the refresh train, then index and serve) would
    fail. Nothing here uses faiss on torch tensors, so the module is marked as already imported
    (an empty module) unless something imported the real one first.
    """
    if "faiss.contrib.torch_utils" not in sys.modules:
        sys.modules["faiss.contrib.torch_utils"] = types.ModuleType("faiss.contrib.torch_utils")
    from pytorch_metric_learning.samplers import MPerClassSampler

    return MPerClassSampler


@dataclass
class Batch:
    items: np.ndarray  # int64 indices into TrainingData.features
    groups: np.ndarray  # int64 positive-group label per item
    views: np.ndarray  # float share of segments kept per item
    not_negative: np.ndarray | None = None  # (B, B) bool: never use j as a negative of i


class SelfBatches:
    """Two random windows of each video; a batch holds ``batch_size // 2`` videos."""

    def __init__(self, n: int, batch_size: int, view_fraction: float = 0.5) -> None:
        if n < 2:
            raise TrainingError(
                f"self-supervised training needs at least 2 videos, got {n}; ingest more videos"
            )
        self.n = n
        self.per_batch = max(2, min(batch_size // 2, n))
        self.view_fraction = view_fraction

    def __len__(self) -> int:
        return max(1, int(np.ceil(self.n / self.per_batch)))

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        order = rng.permutation(self.n)
        for start in range(0, len(self) * self.per_batch, self.per_batch):
            chosen = order[start : start + self.per_batch]
            if chosen.shape[0] < 2:
                chosen = np.concatenate([chosen, rng.choice(self.n, 2, replace=False)])[:2]
            items = np.repeat(chosen, 2)
            groups = np.repeat(np.arange(chosen.shape[0]), 2)
            yield Batch(items, groups, np.full(items.shape[0], self.view_fraction))


class CategoryBatches:
    """``MPerClassSampler`` over labelled videos; items get random views with ``augment``."""

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        m_per_class: int = 4,
        augment: float = 0.5,
        view_fraction: float = 0.5,
    ) -> None:
        self.index = np.flatnonzero(labels >= 0)
        self.labels = labels[self.index]
        classes = np.unique(self.labels)
        if classes.shape[0] < 2:
            raise TrainingError(
                "category training needs videos of at least 2 categories; give the videos "
                "categories in the manifest, or train with --pairs related/self"
            )
        self.m = m_per_class
        size = min(batch_size, classes.shape[0] * m_per_class)
        self.batch_size = max(self.m * 2, size - size % self.m)
        self.augment = augment
        self.view_fraction = view_fraction

    def __len__(self) -> int:
        return max(1, int(np.ceil(self.index.shape[0] / self.batch_size)))

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        MPerClassSampler = _m_per_class_sampler()
        from pytorch_metric_learning.utils import common_functions

        sampler = MPerClassSampler(
            self.labels,
            m=self.m,
            batch_size=self.batch_size,
            length_before_new_iter=len(self) * self.batch_size,
        )
        # The sampler draws from pytorch-metric-learning's module-level numpy RNG: swap in a
        # seeded one while the epoch's order is drawn, so runs (and resumes) are reproducible.
        previous = common_functions.NUMPY_RANDOM
        common_functions.NUMPY_RANDOM = np.random.RandomState(int(rng.integers(0, 2**31)))
        try:
            order = np.fromiter(iter(sampler), dtype=np.int64)
        finally:
            common_functions.NUMPY_RANDOM = previous
        for start in range(0, order.shape[0] - self.batch_size + 1, self.batch_size):
            chosen = order[start : start + self.batch_size]
            views = np.where(rng.random(chosen.shape[0]) < self.augment, self.view_fraction, 1.0)
            yield Batch(self.index[chosen], self.labels[chosen], views)


class PairBatches:
    """Related pairs drawn by weight; ``batch_size // 2`` pairs per batch, no repeated video."""

    def __init__(
        self,
        data: TrainingData,
        batch_size: int,
        augment: float = 0.5,
        view_fraction: float = 0.5,
    ) -> None:
        if len(data.pairs) == 0:
            raise TrainingError(
                "no related pairs among the training videos: import co-watch pairs with "
                "`recsys ingest` or train with --pairs categories/self"
            )
        self.pairs = data.pairs
        weights = np.clip(data.weights if len(data.weights) else np.ones(len(data.pairs)), 0, None)
        self.p = weights / weights.sum() if weights.sum() > 0 else None
        self.per_batch = max(2, batch_size // 2)
        self.neighbours: dict[int, set[int]] = {}
        for a, b in data.pairs:
            self.neighbours.setdefault(int(a), set()).add(int(b))
            self.neighbours.setdefault(int(b), set()).add(int(a))
        self.augment = augment
        self.view_fraction = view_fraction

    def __len__(self) -> int:
        return max(1, int(np.ceil(len(self.pairs) / self.per_batch)))

    def epoch(self, rng: np.random.Generator) -> Iterator[Batch]:
        for _ in range(len(self)):
            draws = rng.choice(len(self.pairs), size=self.per_batch * 4, p=self.p)
            used: set[int] = set()
            items: list[int] = []
            for k in draws:
                a, b = (int(x) for x in self.pairs[k])
                if a in used or b in used:
                    continue
                used.update((a, b))
                items.extend((a, b))
                if len(items) >= 2 * self.per_batch:
                    break
            chosen = np.array(items, dtype=np.int64)
            views = np.where(rng.random(chosen.shape[0]) < self.augment, self.view_fraction, 1.0)
            groups = np.repeat(np.arange(chosen.shape[0] // 2), 2)
            yield Batch(chosen, groups, views, self._related_in_batch(chosen))

    def _related_in_batch(self, items: np.ndarray) -> np.ndarray:
        """(B, B) mask of items linked by an edge or a shared neighbour (two hops).

        They are likely related, so they must not serve as each other's negatives; they are not
        made positives either (merging groups along edges would chain most of a large batch
        into one group and leave no negatives at all).
        """
        hoods = [self.neighbours.get(int(i), set()) for i in items]
        n = items.shape[0]
        mask = np.zeros((n, n), dtype=bool)
        for i in range(n):
            for j in range(i + 1, n):
                if int(items[j]) in hoods[i] or hoods[i] & hoods[j]:
                    mask[i, j] = mask[j, i] = True
        return mask

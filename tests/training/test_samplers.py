"""Batch samplers: several related items per anchor, and no likely-related negatives."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from recsys.features import VideoFeatures
from training.data import TrainingData
from training.samplers import CategoryBatches, PairBatches, SelfBatches


def _data(n: int, pairs: list[tuple[int, int]]) -> TrainingData:
    empty = np.zeros(2, np.float32)
    return TrainingData(
        features=[VideoFeatures("content", "content-1", empty, empty[None]) for _ in range(n)],
        labels=np.arange(n) % 4,
        pairs=np.array(pairs, dtype=np.int64),
        weights=np.ones(len(pairs)),
    )


def test_pair_batches_keep_groups_small_and_mask_linked_items() -> None:
    # a chain 0-1-2-3-...-39: merging along edges would make one group of the whole batch
    data = _data(40, [(i, i + 1) for i in range(39)])
    sampler = PairBatches(data, batch_size=16)
    for batch in sampler.epoch(np.random.default_rng(0)):
        assert len(set(batch.items.tolist())) == len(batch.items)  # no video twice
        assert np.bincount(batch.groups).max() == 2 and len(np.unique(batch.groups)) > 1
        mask = batch.not_negative
        assert mask is not None and not mask.diagonal().any()
        for i, a in enumerate(batch.items):
            for j, b in enumerate(batch.items):
                if batch.groups[i] != batch.groups[j]:
                    assert mask[i, j] == (abs(int(a) - int(b)) <= 2)  # an edge or two hops


def test_category_and_self_batches() -> None:
    data = _data(24, [])
    batches = list(
        CategoryBatches(data.labels, batch_size=8, m_per_class=2).epoch(np.random.default_rng(0))
    )
    assert batches and all(np.bincount(b.groups).max() >= 2 for b in batches)
    again = list(
        CategoryBatches(data.labels, batch_size=8, m_per_class=2).epoch(np.random.default_rng(0))
    )
    assert [b.items.tolist() for b in batches] == [b.items.tolist() for b in again]  # seeded
    for batch in SelfBatches(24, batch_size=8, view_fraction=0.5).epoch(np.random.default_rng(0)):
        assert (np.bincount(batch.groups) == 2).all() and (batch.views == 0.5).all()
        assert (batch.items[::2] == batch.items[1::2]).all()  # two windows of one video


def test_category_batches_leave_faiss_search_parameters_working() -> None:
    """pytorch-metric-learning's samplers import ``faiss.contrib.torch_utils``, which replaces
    every faiss ``search`` with one that takes no ``params``: a process that trains on
    categories and then searches an index under a filter (the demo, the refresh) must still work.
    Run in a fresh interpreter, since the patch is process-wide."""
    code = """
import faiss, numpy as np
from training.samplers import CategoryBatches
batches = CategoryBatches(np.arange(8) % 2, batch_size=4, m_per_class=2)
next(iter(batches.epoch(np.random.default_rng(0))))
index = faiss.IndexFlatIP(2)
index.add(np.eye(2, dtype=np.float32))
selector = faiss.IDSelectorBatch(np.array([1], dtype=np.int64))
params = faiss.SearchParameters(sel=selector)
_, ids = index.search(np.eye(2, dtype=np.float32)[:1], 1, params=params)
assert ids.tolist() == [[1]], ids
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

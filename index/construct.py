"""Turning (video keys, vectors) into a trained faiss index that finds every vector by key.

Training uses a seeded sample (k-means cost grows with the sample, not the catalog); vectors are
added under the videos' int64 keys (:data:`recsys.ids.VideoKey`, the faiss ids). Flat and HNSW
indexes are wrapped in ``IndexIDMap2`` and IVF indexes get a hash-table direct map, so
``reconstruct(video_key)`` and ``remove_ids`` work on the saved CPU index. On a GPU the k-means
and the assignment of vectors to lists run there; the result is copied back to the CPU for
saving.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np

from index.choose import IndexChoice
from index.errors import IndexBuildError
from index.gpu import to_cpu, to_gpu
from index.source import ArraySource, Chunk, VectorSource

log = logging.getLogger(__name__)


@dataclass
class Constructed:
    """A built CPU index and what it cost."""

    index: faiss.Index
    train_ids: np.ndarray  # positions of the training sample (to hold queries out of it)
    timings: dict[str, float] = field(default_factory=dict)
    on_gpu: bool = False


def is_ivf(index: faiss.Index) -> bool:
    return faiss.try_extract_index_ivf(index) is not None


def make_index(factory: str, dim: int) -> faiss.Index:
    """The empty index for a factory string, ids attached (IDMap2 unless IVF stores them)."""
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise IndexBuildError(f"faiss rejects factory string {factory!r}: {error}") from error
    if not is_ivf(index):
        index = faiss.IndexIDMap2(index)
    return index


def enable_id_lookup(index: faiss.Index) -> None:
    """Let an IVF index reconstruct and remove by id (hash table: ids are arbitrary int64)."""
    ivf = faiss.try_extract_index_ivf(index)
    hashtable = faiss.DirectMap.Hashtable  # type: ignore[attr-defined]
    if ivf is not None and ivf.direct_map.type != hashtable:
        ivf.set_direct_map_type(hashtable)


def training_positions(
    count: int, index: faiss.Index, choice: IndexChoice, seed: int = 0
) -> np.ndarray:
    """Sorted positions of the seeded training sample (empty when nothing is to train)."""
    if index.is_trained:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    size = min(count, max(choice.train_size, 1))
    return np.sort(rng.choice(count, size=size, replace=False))


def construct_index(
    source: VectorSource | np.ndarray,
    video_keys: np.ndarray | None = None,
    choice: IndexChoice | None = None,
    *,
    gpu: bool = False,
    seed: int = 0,
    index: faiss.Index | None = None,
    train_ids: np.ndarray | None = None,
    on_chunk: Callable[[Chunk], None] | None = None,
) -> Constructed:
    """Train on a seeded sample, add every vector under its video key, return the CPU index.

    ``source`` streams the vectors (:mod:`index.source`); a matrix with ``video_keys`` is
    wrapped in an :class:`~index.source.ArraySource`. ``index`` and ``train_ids`` (from
    :func:`training_positions`) let the caller know the sample before the add pass;
    ``on_chunk`` sees every added chunk (the recall gate's exact search rides on that pass).
    """
    if choice is None:
        raise IndexBuildError("construct_index needs an IndexChoice")
    if isinstance(source, np.ndarray):
        if video_keys is None:
            raise IndexBuildError("construct_index over a matrix needs its video keys")
        source = ArraySource(video_keys, source)
    keys = source.keys
    if np.unique(keys).size != keys.size:
        raise IndexBuildError("duplicate video keys in the embeddings; each video needs one vector")
    count, dim = source.count, source.dim
    index = index if index is not None else make_index(choice.factory, dim)
    timings: dict[str, float] = {}
    if train_ids is None:
        train_ids = training_positions(count, index, choice, seed)
    ivf = faiss.try_extract_index_ivf(index)
    if not index.is_trained:
        started = time.perf_counter()
        sample = source.take(train_ids)
        timings["sample_s"] = time.perf_counter() - started
        if ivf is not None:
            ivf.cp.seed = seed
            if gpu:
                # k-means dominates training; run its nearest-centroid search on the GPU
                flat = (
                    faiss.IndexFlatIP(ivf.d) if ivf.metric_type == 0 else faiss.IndexFlatL2(ivf.d)
                )
                ivf.clustering_index = to_gpu(flat, float16=False)
        started = time.perf_counter()
        try:
            index.train(sample)
        except RuntimeError as error:
            raise IndexBuildError(f"training {choice.factory} failed: {error}") from error
        finally:
            if ivf is not None:
                ivf.clustering_index = None  # type: ignore[assignment]
        del sample
        timings["train_s"] = time.perf_counter() - started
    started = time.perf_counter()
    on_gpu = False
    target = index
    if gpu and ivf is not None:
        try:
            target = to_gpu(index, float16=False)
            on_gpu = True
        except RuntimeError as error:  # e.g. an index type the GPU cloner does not know
            log.warning("adding on the CPU: cannot move %s to the GPU (%s)", choice.factory, error)
    seen = 0
    for chunk in source.chunks():
        target.add_with_ids(chunk.vectors, chunk.keys)
        seen += int(chunk.keys.shape[0])
        if on_chunk is not None:
            on_chunk(chunk)
    if seen != count:
        raise IndexBuildError(f"the source gave {seen} vectors, {count} expected")
    if on_gpu:
        index = to_cpu(target)
    timings["add_s"] = time.perf_counter() - started
    enable_id_lookup(index)
    return Constructed(index=index, train_ids=train_ids, timings=timings, on_gpu=on_gpu)

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
from dataclasses import dataclass, field

import faiss
import numpy as np

from index.choose import IndexChoice
from index.errors import IndexBuildError
from index.gpu import to_cpu, to_gpu

log = logging.getLogger(__name__)
ADD_BATCH = 65_536


@dataclass
class Constructed:
    """A built CPU index and what it cost."""

    index: faiss.Index
    train_ids: np.ndarray  # positions of the training sample (to hold queries out of it)
    timings: dict[str, float] = field(default_factory=dict)
    on_gpu: bool = False


def normalized(vectors: np.ndarray) -> np.ndarray:
    """float32 C-contiguous rows of unit norm (copied only when they are not already)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    if vectors.size and np.all(np.abs(norms - 1.0) < 1e-3):
        return vectors
    if np.any(norms == 0):
        raise IndexBuildError(
            f"{int(np.sum(norms == 0))} embeddings are all-zero and cannot be normalised; "
            "re-embed those videos"
        )
    out = vectors.copy()
    faiss.normalize_L2(out)
    return out


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


def construct_index(
    vectors: np.ndarray,
    video_keys: np.ndarray,
    choice: IndexChoice,
    *,
    gpu: bool = False,
    seed: int = 0,
) -> Constructed:
    """Train on a sample, add every vector under its video key, and return the CPU index."""
    vectors = normalized(vectors)
    keys = np.ascontiguousarray(video_keys, dtype=np.int64)
    if vectors.shape[0] != keys.shape[0]:
        raise IndexBuildError(f"{keys.shape[0]} video keys for {vectors.shape[0]} vectors")
    if np.unique(keys).size != keys.size:
        raise IndexBuildError("duplicate video keys in the embeddings; each video needs one vector")
    count, dim = vectors.shape
    index = make_index(choice.factory, dim)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}
    train_ids = np.zeros(0, dtype=np.int64)
    ivf = faiss.try_extract_index_ivf(index)
    if not index.is_trained:
        size = min(count, max(choice.train_size, 1))
        train_ids = np.sort(rng.choice(count, size=size, replace=False))
        sample = vectors[train_ids]
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
    for start in range(0, count, ADD_BATCH):
        end = min(start + ADD_BATCH, count)
        target.add_with_ids(vectors[start:end], keys[start:end])
    if on_gpu:
        index = to_cpu(target)
    timings["add_s"] = time.perf_counter() - started
    enable_id_lookup(index)
    return Constructed(index=index, train_ids=train_ids, timings=timings, on_gpu=on_gpu)

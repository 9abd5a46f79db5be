"""The int64 video ids held by an index, read from the index itself, and where an IVF index
keeps each one (written beside a published index as ``id_map.npy``: API workers map it
instead of each holding faiss' id hash table, ~40 bytes per video)."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np


def index_ids(index: faiss.Index) -> np.ndarray:
    """Sorted unique ids stored in an ``IndexIDMap(2)`` or an IVF index (possibly wrapped)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    locations = ivf_locations(index)
    if locations is None:
        raise ValueError(
            f"{type(index).__name__} keeps no ids; indexes must be IDMap2-wrapped or IVF"
        )
    return locations[0].copy()  # the ids, ascending (one walk over the inverted lists)


def ivf_locations(index: faiss.Index) -> np.ndarray | None:
    """For an IVF index: a (2, n) int64 array, row 0 the stored ids ascending, row 1 where each
    lives (``list_no << 32 | offset``, faiss' ``lo_build``); None for other index types."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        return None
    invlists: Any = ivf.invlists
    keys, places = [], []
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            pointer = invlists.get_ids(list_no)
            keys.append(faiss.rev_swig_ptr(pointer, size).copy())
            invlists.release_ids(list_no, pointer)
            places.append((np.int64(list_no) << 32) | np.arange(size, dtype=np.int64))
    if not keys:
        return np.zeros((2, 0), dtype=np.int64)
    all_keys = np.concatenate(keys).astype(np.int64)
    all_places = np.concatenate(places)
    order = np.argsort(all_keys, kind="stable")
    return np.stack([all_keys[order], all_places[order]])

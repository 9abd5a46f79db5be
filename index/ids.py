"""The int64 video ids held by an index, read from the index itself (not a side file)."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np


def index_ids(index: faiss.Index) -> np.ndarray:
    """Sorted unique ids stored in an ``IndexIDMap(2)`` or an IVF index (possibly wrapped)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2):
        return np.sort(faiss.vector_to_array(index.id_map).astype(np.int64))
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None:
        raise ValueError(
            f"{type(index).__name__} keeps no ids; indexes must be IDMap2-wrapped or IVF"
        )
    invlists: Any = ivf.invlists
    parts = []
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            pointer = invlists.get_ids(list_no)
            parts.append(faiss.rev_swig_ptr(pointer, size).copy())
            invlists.release_ids(list_no, pointer)
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(parts).astype(np.int64))

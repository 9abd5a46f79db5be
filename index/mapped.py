"""Reading a published index mapped from its file, so every API worker shares one copy.

The published file never changes (a new version is a new directory), so workers open it
read-only and let the kernel's page cache hold it once for all of them, instead of each
reading it into private memory. faiss offers two mappings, each for its own index family:

- inverted-file indexes (IVF-Flat, IVF-SQ8, IVF-PQ, with or without OPQ): ``IO_FLAG_MMAP``
  maps the inverted lists (the codes and ids, nearly all of the bytes) in place, as
  ``OnDiskInvertedLists`` over the very file that was written by ``write_index``;
- flat-code indexes (Flat, SQ, PQ, and the storage of HNSW): ``IO_FLAG_MMAP_IFC`` maps the
  codes array. (The two cannot be combined: the second reads through a mapping, the first
  needs a file.)

What stays private per worker is small beside the codes: centroids, the OPQ matrix, the
id → list hash map (about 40 bytes per vector) and HNSW's graph links. A mapped index is
read-only: adding or removing vectors raises, so :func:`index.update.update_index` reads its
own private copy.
"""

from __future__ import annotations

import logging
import mmap
from pathlib import Path

import faiss
import numpy as np

log = logging.getLogger(__name__)

IVF_FLAGS = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
CODES_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


def map_array(path: Path) -> np.ndarray:
    """A ``.npy`` file mapped read-only, as a plain ``ndarray`` view of the mapping.

    ``np.memmap`` answers every scalar index through Python-level ``__getitem__`` and
    ``__array_finalize__`` (about a microsecond each); a request reads dozens of such values
    (catalog columns, the id map), so the plain view keeps the page-cache sharing without
    that cost. The view holds the mapping open for as long as it lives.
    """
    return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)


def is_mapped(array: np.ndarray) -> bool:
    """Whether ``array`` views a file mapping (as :func:`map_array` gives), not private memory."""
    base: object = array
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return True
        base = base.base
    return isinstance(base, mmap.mmap)


def read_mapped(path: Path) -> tuple[faiss.Index, str]:
    """The index in ``path`` mapped read-only: ``(index, how)``, ``how`` one of ``"ivf"``
    (inverted lists mapped), ``"codes"`` (flat codes mapped) or ``"private"`` (faiss maps
    nothing of this index type; read into memory). Raises ``RuntimeError`` like
    ``faiss.read_index`` when the file is unreadable."""
    errors: list[str] = []
    for flags, how in ((IVF_FLAGS, "ivf"), (CODES_FLAGS, "codes")):
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as error:
            errors.append(str(error).splitlines()[0])
            continue
        if how == "ivf":
            lists = _mapped_lists(index)
            if lists is None:
                continue  # not an IVF index: try the flat-code mapping
            # The lists are mapped and live in the page cache: faiss' default prefetch starts
            # 32 threads per search to read them ahead, which costs more than the search
            # (measured at 1M: 2,050 vs 7,770 single queries/s on 8 threads) and grows
            # every worker's private memory with thread arenas.
            lists.prefetch_nthread = 0
        return index, how
    log.info("index %s cannot be mapped (%s); reading it into memory", path, "; ".join(errors))
    return faiss.read_index(str(path)), "private"


def _mapped_lists(index: faiss.Index) -> faiss.OnDiskInvertedLists | None:
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or ivf.invlists is None:
        return None
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    return lists if isinstance(lists, faiss.OnDiskInvertedLists) else None


__all__ = ["read_mapped"]

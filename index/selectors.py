"""Filters inside the index: sets of video keys as faiss ID selectors.

A filtered query (a category, a duration range) hands faiss the set of keys it may return, so
the index scans the same lists or graph nodes as an unfiltered query and keeps only the allowed
ids, instead of returning unfiltered neighbours that the caller throws away and asks again for,
deeper and deeper. A set is a bitmap over the key space (one bit per key: 1.25 MB at 10M keys,
one shift and mask per candidate) when the keys are compact, as autoincrement keys are, and a
hash set (``IDSelectorBatch``) when they are sparse.

:class:`KeySelector` owns the numpy buffer the faiss object points into, so the selector stays
valid for as long as the Python object lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

# A bitmap is used while it is at most this many bytes per allowed key (else a hash set).
BITMAP_BYTES_PER_KEY = 64


@dataclass(frozen=True)
class KeySelector:
    """The video keys a search may return, as a faiss ``IDSelector``."""

    selector: faiss.IDSelector
    count: int  # how many keys are allowed
    _refs: tuple[Any, ...] = field(default=(), repr=False)

    @classmethod
    def of_keys(cls, video_keys: np.ndarray) -> KeySelector:
        """A selector that allows exactly ``video_keys`` (int64, any order, no negatives)."""
        keys = np.ascontiguousarray(video_keys, dtype=np.int64)
        if keys.size and int(keys.min()) < 0:
            raise ValueError("video keys are never negative")
        top = int(keys.max()) + 1 if keys.size else 0
        if top // 8 + 1 <= BITMAP_BYTES_PER_KEY * max(1, keys.size):
            # bit (key & 7) of byte key >> 3, set in one pass over the keys (not the key space)
            bitmap = np.zeros(top // 8 + 1, dtype=np.uint8)
            np.bitwise_or.at(bitmap, keys >> 3, np.left_shift(1, keys & 7).astype(np.uint8))
            return cls._of_bitmap(bitmap, int(np.unique(keys).size))
        batch = faiss.IDSelectorBatch(keys)  # copies the keys into its own hash set
        return cls(batch, int(np.unique(keys).size))

    @classmethod
    def of_mask(cls, allowed: np.ndarray) -> KeySelector:
        """A selector from a boolean mask over the key space (``allowed[key]``)."""
        mask = np.asarray(allowed, dtype=bool)
        bitmap = np.packbits(mask, bitorder="little")  # faiss reads bit (key & 7) of byte key >> 3
        return cls._of_bitmap(bitmap, int(np.count_nonzero(mask)))

    @classmethod
    def _of_bitmap(cls, bitmap: np.ndarray, count: int) -> KeySelector:
        if bitmap.size == 0:
            bitmap = np.zeros(1, dtype=np.uint8)
        # faiss' Python wrapper takes (n bytes, pointer) from one uint8 array
        selector = faiss.IDSelectorBitmap(bitmap)  # type: ignore[call-arg, arg-type]
        return cls(selector, count, (bitmap,))

    def both(self, other: faiss.IDSelector | None) -> tuple[faiss.IDSelector, tuple[Any, ...]]:
        """This selector AND ``other`` (None: this one), with the objects to keep alive."""
        if other is None:
            return self.selector, (self,)
        combined = faiss.IDSelectorAnd(self.selector, other)
        return combined, (self, other, combined)


__all__ = ["KeySelector"]

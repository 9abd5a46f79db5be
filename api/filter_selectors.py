"""Category and duration filters as faiss ID selectors over the served catalog snapshot.

``/similar?category=…`` used to ask the index for unfiltered neighbours and throw away those of
other categories, asking again four times deeper until ``k`` were left: a filter that keeps 1 %
of the catalog needed ~100× deeper searches. Here the filter becomes the set of video keys it
admits (:class:`index.selectors.KeySelector`, a bitmap over the keys), handed to faiss, which
scans the same lists as an unfiltered query and returns only admitted videos. The bounded
widening of :func:`api.search.nearest` stays as the fallback for when the probed lists hold
fewer than ``k`` admitted videos.

Selectors are built from the snapshot's columns (one vectorised pass over the catalog: ~1 ms
per million videos) and cached per snapshot and filter; a metadata refresh that changes a row
bumps the snapshot's generation, which empties the cache.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections import OrderedDict

import numpy as np

from api.catalog_cache import CatalogSnapshot
from index.selectors import KeySelector

CACHED_FILTERS = 64  # per snapshot; a category bitmap is 1.25 MB at 10M videos

FilterKey = tuple[int | None, float | None, float | None]


class _Cache:
    def __init__(self) -> None:
        self.generation = -1
        self.entries: OrderedDict[FilterKey, KeySelector] = OrderedDict()


_caches: dict[int, _Cache] = {}
_lock = threading.Lock()


def _cache_of(catalog: CatalogSnapshot) -> _Cache:
    key = id(catalog)
    with _lock:
        cache = _caches.get(key)
        if cache is None:
            cache = _caches[key] = _Cache()
            weakref.finalize(catalog, _caches.pop, key, None)
        if cache.generation != catalog.generation:
            cache.entries.clear()
            cache.generation = catalog.generation
        return cache


def admitted_positions(
    catalog: CatalogSnapshot,
    category_code: int | None,
    min_duration: float | None,
    max_duration: float | None,
) -> np.ndarray:
    """Boolean mask over catalog positions: servable and passing every given filter."""
    mask = catalog.servable.copy()
    if category_code is not None:
        mask &= catalog.category_codes == category_code
    if min_duration is not None or max_duration is not None:
        durations = catalog.durations
        known = ~np.isnan(durations)
        mask &= known
        if min_duration is not None:
            mask &= np.where(known, durations, -math.inf) >= min_duration
        if max_duration is not None:
            mask &= np.where(known, durations, math.inf) <= max_duration
    return mask


def filter_selector(
    catalog: CatalogSnapshot,
    category_code: int | None,
    min_duration: float | None,
    max_duration: float | None,
) -> KeySelector:
    """The video keys a filtered query may return, as a faiss selector (cached)."""
    key: FilterKey = (category_code, min_duration, max_duration)
    cache = _cache_of(catalog)
    with _lock:
        found = cache.entries.get(key)
        if found is not None:
            cache.entries.move_to_end(key)
            return found
    mask = admitted_positions(catalog, category_code, min_duration, max_duration)
    selector = KeySelector.of_keys(catalog.video_keys[mask])
    with _lock:
        cache.entries[key] = selector
        while len(cache.entries) > CACHED_FILTERS:
            cache.entries.popitem(last=False)
    return selector


__all__ = ["admitted_positions", "filter_selector"]

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

# Cached selectors per snapshot: at least this many, else as many as fit CACHE_BYTES (a bitmap
# costs one bit per video key: 125 KB at 1M videos, 1.25 MB at 10M).
CACHED_FILTERS = 64
CACHE_BYTES = 128 << 20

FilterKey = tuple[int | None, float | None, float | None]


class _Cache:
    def __init__(self) -> None:
        self.generation = -1
        self.entries: OrderedDict[FilterKey, KeySelector] = OrderedDict()
        # per-category lists: positions sorted by category code, and where each code starts
        self.lists: tuple[np.ndarray, np.ndarray] | None = None


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
            cache.lists = None
            cache.generation = catalog.generation
        return cache


def prepare(catalog: CatalogSnapshot) -> None:
    """Build the per-category lists now (off the request path, with the snapshot), so the
    first filtered queries do not pay for the sort (about a second at 10M videos)."""
    if len(catalog) and catalog.category_names:
        _category_positions(catalog, _cache_of(catalog), 0)


def _category_positions(catalog: CatalogSnapshot, cache: _Cache, code: int) -> np.ndarray:
    """Ascending catalog positions of one category, from per-category lists built once per
    snapshot generation (one stable sort of the codes), so a selective filter costs its own
    size, not a pass over the catalog."""
    lists = cache.lists
    if lists is None:
        codes = catalog.category_codes
        order = np.argsort(codes, kind="stable")
        starts = np.searchsorted(codes[order], np.arange(len(catalog.category_names) + 1))
        lists = cache.lists = (order, starts)
    order, starts = lists
    if code + 1 >= starts.shape[0]:  # a category first seen by a refresh after the lists
        return np.flatnonzero(catalog.category_codes == code)
    return order[starts[code] : starts[code + 1]]


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
    if category_code is None:
        positions = np.flatnonzero(admitted_positions(catalog, None, min_duration, max_duration))
    else:
        positions = _category_positions(catalog, cache, category_code)
        keep = catalog.servable[positions]
        if min_duration is not None or max_duration is not None:
            durations = catalog.durations[positions]
            keep &= ~np.isnan(durations)
            if min_duration is not None:
                keep &= np.nan_to_num(durations, nan=-math.inf) >= min_duration
            if max_duration is not None:
                keep &= np.nan_to_num(durations, nan=math.inf) <= max_duration
        positions = positions[keep]
    selector = KeySelector.of_keys(catalog.video_keys[positions])
    with _lock:
        cache.entries[key] = selector
        limit = max(CACHED_FILTERS, CACHE_BYTES // max(1, len(catalog) // 8))
        while len(cache.entries) > limit:
            cache.entries.popitem(last=False)
    return selector


def is_cached(
    catalog: CatalogSnapshot,
    category: str | None,
    min_duration: float | None,
    max_duration: float | None,
) -> bool:
    """Whether the selector of these filters is ready (a query then costs about an
    unfiltered one and can run inline; building one is a pass over the catalog)."""
    code = catalog.category_code(category) if category is not None else None
    if category is not None and code is None:
        return True  # an unknown category: answered empty at once
    cache = _cache_of(catalog)
    with _lock:
        return (code, min_duration, max_duration) in cache.entries


__all__ = ["admitted_positions", "filter_selector", "is_cached", "prepare"]

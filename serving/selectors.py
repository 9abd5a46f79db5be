"""Catalog filters (category, channel, duration) as faiss ID selectors over a catalog snapshot.

A filter becomes the set of video keys it admits (:class:`index.selectors.KeySelector`, a
bitmap over the keys), handed to faiss, which scans the same lists as an unfiltered query and
returns only admitted videos; the bounded widening of :func:`serving.search.nearest` stays as
the fallback for when the probed lists hold fewer than ``k`` admitted videos.

Selectors are built from the snapshot's columns (one vectorised pass over the catalog: ~1 ms
per million videos) and kept by the snapshot that made them (:class:`FilterSelectors`, one per
snapshot); a metadata refresh that changes a row bumps the snapshot's generation, which empties
its cache.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from index.selectors import KeySelector

# Cached selectors per snapshot: at least this many, else as many as fit CACHE_BYTES (a bitmap
# costs one bit per video key: 125 KB at 1M videos, 1.25 MB at 10M).
CACHED_FILTERS = 64
CACHE_BYTES = 128 << 20


@dataclass(frozen=True)
class FilterCodes:
    """A catalog filter in the snapshot's codes (None: no such filter)."""

    category: int | None = None
    channel: int | None = None
    not_channels: tuple[int, ...] = ()  # sorted
    min_duration: float | None = None
    max_duration: float | None = None

    @property
    def narrowing(self) -> bool:
        """Whether the filter may leave out videos (so a selector is worth building)."""
        return (
            self.category is not None
            or self.channel is not None
            or bool(self.not_channels)
            or self.min_duration is not None
            or self.max_duration is not None
        )


class Columns(Protocol):
    """What a selector is built from (a :class:`serving.catalog.CatalogSnapshot`)."""

    video_keys: np.ndarray
    category_codes: np.ndarray
    channel_codes: np.ndarray
    durations: np.ndarray
    servable: np.ndarray
    category_names: list[str]
    generation: int

    def __len__(self) -> int: ...


class FilterSelectors:
    """The selectors one snapshot has built, least recently used dropped first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = -1
        self._entries: OrderedDict[FilterCodes, KeySelector] = OrderedDict()
        # per-category lists: positions sorted by category code, and where each code starts
        self._lists: tuple[np.ndarray, np.ndarray] | None = None

    def _current(self, columns: Columns) -> None:
        """Forget what an older generation of the snapshot's rows built (under the lock)."""
        if self._generation != columns.generation:
            self._entries.clear()
            self._lists = None
            self._generation = columns.generation

    def prepare(self, columns: Columns) -> None:
        """Build the per-category lists now (off the request path, with the snapshot), so the
        first filtered queries do not pay for the sort (about a second at 10M videos)."""
        if len(columns) and columns.category_names:
            self._category_positions(columns, 0)

    def is_cached(self, columns: Columns, codes: FilterCodes) -> bool:
        """Whether the selector of ``codes`` is ready (a query then costs about an unfiltered
        one and can run inline; building one is a pass over the catalog)."""
        with self._lock:
            self._current(columns)
            return codes in self._entries

    def selector(self, columns: Columns, codes: FilterCodes) -> KeySelector:
        """The video keys a query filtered by ``codes`` may return (servable ones only)."""
        with self._lock:
            self._current(columns)
            found = self._entries.get(codes)
            if found is not None:
                self._entries.move_to_end(codes)
                return found
        if codes.category is None:
            positions = np.flatnonzero(columns.servable)
        else:
            positions = self._category_positions(columns, codes.category)
            positions = positions[columns.servable[positions]]
        positions = positions[admitted(columns, positions, codes)]
        selector = KeySelector.of_keys(columns.video_keys[positions])
        with self._lock:
            self._entries[codes] = selector
            limit = max(CACHED_FILTERS, CACHE_BYTES // max(1, len(columns) // 8))
            while len(self._entries) > limit:
                self._entries.popitem(last=False)
        return selector

    def _category_positions(self, columns: Columns, code: int) -> np.ndarray:
        """Ascending catalog positions of one category, from per-category lists built once per
        snapshot generation (one stable sort of the codes), so a selective filter costs its own
        size, not a pass over the catalog."""
        with self._lock:
            self._current(columns)
            lists = self._lists
        if lists is None:
            codes = columns.category_codes
            order = np.argsort(codes, kind="stable")
            starts = np.searchsorted(codes[order], np.arange(len(columns.category_names) + 1))
            lists = (order, starts)
            with self._lock:
                if self._generation == columns.generation:
                    self._lists = lists
        order, starts = lists
        if code + 1 >= starts.shape[0]:  # a category first seen by a refresh after the lists
            return np.flatnonzero(columns.category_codes == code)
        return order[starts[code] : starts[code + 1]]


def admitted(columns: Columns, positions: np.ndarray, codes: FilterCodes) -> np.ndarray:
    """Boolean mask over ``positions`` (all known): passing every filter of ``codes``."""
    safe = np.where(positions >= 0, positions, 0)
    keep = np.ones(positions.shape, dtype=bool)
    if codes.category is not None:
        keep &= columns.category_codes[safe] == codes.category
    if codes.channel is not None or codes.not_channels:
        channels = columns.channel_codes[safe]
        if codes.channel is not None:
            keep &= channels == codes.channel
        for code in codes.not_channels:
            keep &= channels != code
    if codes.min_duration is not None or codes.max_duration is not None:
        durations = columns.durations[safe]
        known = ~np.isnan(durations)
        keep &= known
        if codes.min_duration is not None:
            keep &= np.where(known, durations, -math.inf) >= codes.min_duration
        if codes.max_duration is not None:
            keep &= np.where(known, durations, math.inf) <= codes.max_duration
    return keep


def admitted_positions(columns: Columns, codes: FilterCodes) -> np.ndarray:
    """Boolean mask over every catalog position: servable and passing every filter."""
    return columns.servable & admitted(columns, np.arange(len(columns)), codes)


__all__ = ["FilterCodes", "FilterSelectors", "admitted", "admitted_positions"]

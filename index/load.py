"""Loading a published index for serving, and searching it safely from many threads.

:func:`load_index` refuses anything it cannot vouch for (missing or corrupt file, checksum,
dimension, count or model-version mismatch) with an :class:`IndexLoadError` that names the
directory and the fix. :class:`LoadedIndex` hides ids that must never be served (deleted or
failed videos) with an id selector on the CPU, or by searching deeper and dropping them on the
GPU, so a delete takes effect at once without a rebuild.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from index.cowatch import COWATCH_FILE
from index.errors import IndexLoadError, IndexNotFoundError
from index.gather import MappedCodes
from index.gpu import to_gpu, use_gpu
from index.ids import index_ids
from index.manifest import EXCLUDED_FILE, ID_MAP_FILE, IndexManifest, read_manifest
from index.mapped import map_array, read_mapped
from index.params import SelectorParams, apply_search_params, effort_limit
from index.pointer import current_version, version_dir
from index.selectors import KeySelector
from index.verified import verified_sha256
from recsys.choices import GpuMode, IndexVerify
from recsys.events.hybrid import NeighbourLists
from recsys.ids import VideoKey, dense_positions, positions_in
from recsys.settings import Settings

log = logging.getLogger(__name__)
GPU_MAX_K = 2048  # faiss GPU search limit on k


def _sorted_position(keys: np.ndarray, key: int) -> int | None:
    """Where ``key`` sits in the sorted array ``keys`` (None: absent). The array method, not
    ``np.searchsorted``: the function adds a Python dispatch layer per call."""
    position = int(keys.searchsorted(key))
    if position < keys.size and int(keys[position]) == key:
        return position
    return None


class LoadedIndex:
    """A verified, read-only index plus the set of video keys hidden from search results.

    Every id it takes or returns is a :data:`~recsys.ids.VideoKey` (the internal int64 key),
    never the external ``video_id`` string.
    """

    def __init__(
        self,
        directory: Path,
        manifest: IndexManifest,
        index: faiss.Index,
        *,
        excluded: np.ndarray | None = None,
        gpu_index: faiss.Index | None = None,
        cowatch: NeighbourLists | None = None,
        places: np.ndarray | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.version: str = manifest.version
        self.model_version: str = manifest.model_version
        self.dim: int = manifest.dim
        self.search_params: dict[str, int] = dict(manifest.search_params)
        # (selectivity, knob) the gate measured for filtered searches, most selective last
        self._filtered_knobs = _filtered_knobs(manifest)
        self.index = index
        #: The co-watch neighbour lists published with this version (None: no graph).
        self.cowatch = cowatch
        self._gpu_index = gpu_index
        # places: (2, n) ids ascending and their IVF (list << 32 | offset), mapped from the
        # version's id map; without it the ids are read from the index (private copy)
        self._places = places[1] if places is not None else None
        self._ids = places[0] if places is not None else index_ids(index)
        # key -> position in _ids in one gather where keys are compact (None: binary search)
        self._dense = dense_positions(self._ids)
        # vectors by place in one gather over the mapped lists (None: not one mapping)
        self._codes = MappedCodes.of(index) if places is not None else None
        # the inverted lists hold the vectors themselves (a search can return them as read)
        self._flat_lists = isinstance(faiss.downcast_index(index), faiss.IndexIVFFlat)
        self._lock = threading.Lock()
        self._max_effort: int | None = None
        self._excluded = np.zeros(0, dtype=np.int64)
        self._selector: SelectorParams | None = None
        if excluded is not None and excluded.size:
            self.remove_ids(excluded)

    # -- membership ---------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        """Sorted video keys that searches can return (stored keys minus hidden ones)."""
        excluded = self._excluded
        if not excluded.size:
            return self._ids
        return self._ids[~np.isin(self._ids, excluded)]

    @property
    def excluded(self) -> np.ndarray:
        return self._excluded

    @property
    def ntotal(self) -> int:
        excluded = self._excluded
        if not excluded.size:
            return int(self._ids.size)
        return int(self._ids.size - np.isin(excluded, self._ids).sum())

    @property
    def on_gpu(self) -> bool:
        return self._gpu_index is not None

    def _position(self, video_key: int) -> int | None:
        """Where a stored key sits in :attr:`_ids` (None: not stored)."""
        dense = self._dense
        if dense is None:
            return _sorted_position(self._ids, video_key)
        if 0 <= video_key < dense.shape[0]:
            position = int(dense[video_key])
            return position if position >= 0 else None
        return None

    def _positions(self, keys: np.ndarray) -> np.ndarray:
        """Where each stored key sits in :attr:`_ids`; KeyError naming the version if any key
        is not stored."""
        positions = positions_in(self._ids, self._dense, keys)
        if keys.size and int(positions.min()) < 0:
            raise KeyError(f"index {self.version} does not hold every key asked for")
        return positions

    def _hidden(self, video_key: int) -> bool:
        return bool(self._excluded.size) and _sorted_position(self._excluded, video_key) is not None

    def contains(self, video_key: VideoKey) -> bool:
        """Whether a search can return this video key."""
        key = int(video_key)
        return self._position(key) is not None and not self._hidden(key)

    def reconstruct(self, video_key: VideoKey) -> np.ndarray | None:
        """The stored vector of one video (approximate for PQ indexes), None if not served."""
        key = int(video_key)
        position = self._position(key)
        if position is None or self._hidden(key):
            return None
        if self._places is None:
            return np.asarray(self.index.reconstruct(key), dtype=np.float32)
        if self._codes is not None:
            return self._codes.vector(int(self._places[position]))
        return self._from_offsets([int(self._places[position])])[0]

    def reconstruct_batch(self, video_keys: np.ndarray) -> np.ndarray:
        """The stored vectors of keys the index holds (e.g. a search's results), one row each:
        one call instead of a membership check and a faiss call per key."""
        keys = np.ascontiguousarray(video_keys, dtype=np.int64).reshape(-1)
        if self._places is None:
            stored = self.index.reconstruct_batch(keys)
            return np.asarray(stored, dtype=np.float32).reshape(keys.size, self.dim)
        positions = self._positions(keys)
        if self._codes is not None:  # one gather over the mapped lists
            return self._codes.vectors(self._places[positions])
        return self._from_offsets(self._places[positions].tolist())

    def search_with_vectors(
        self, query: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`search` of one query (``(1, dim)``) at effort 1, with the stored vectors of
        its results, row for row (rows of ``-1`` ids are undefined). An IVF-Flat index with
        nothing hidden reads them in the search itself (its codes are the vectors, so they are
        the bytes :meth:`reconstruct_batch` gives); any other, with a gather after it."""
        if self._flat_lists and self._gpu_index is None and not self._excluded.size:
            query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
            scores, ids, vectors = self.index.search_and_reconstruct(query, k)
            if int(ids[0, -1]) < 0:  # faiss pads a short list at its end
                scores, ids = _finish(scores, ids)
            return scores, ids, vectors[0]
        scores, ids = self.search(query, k)
        vectors = np.zeros((ids.shape[1], self.dim), dtype=np.float32)
        found = ids[0] >= 0
        vectors[found] = self.reconstruct_batch(ids[0][found])
        return scores, ids, vectors

    def _from_offsets(self, places: list[int]) -> np.ndarray:
        """Vectors at IVF places (``list << 32 | offset``), one faiss call each: lists that
        are not one mapping (:class:`~index.gather.MappedCodes` reads those in one pass)."""
        out = np.empty((len(places), self.dim), dtype=np.float32)
        ivf = faiss.extract_index_ivf(self.index)
        outer = faiss.downcast_index(self.index)
        chain: Any = outer.reverse_chain if isinstance(outer, faiss.IndexPreTransform) else None
        stored = np.empty(int(ivf.d), dtype=np.float32)
        for row, place in enumerate(places):
            target = stored if chain is not None else out[row]
            ivf.reconstruct_from_offset(place >> 32, place & 0xFFFFFFFF, faiss.swig_ptr(target))
            if chain is not None:  # OPQ: back to the input space
                chain(1, faiss.swig_ptr(stored), faiss.swig_ptr(out[row]))
        return out

    def remove_ids(self, video_keys: np.ndarray | Sequence[VideoKey]) -> int:
        """Hide video keys from every later search (at once); returns how many are hidden.

        The file on disk is not changed: ``recsys index update`` removes them for good.
        """
        new = np.unique(np.asarray(video_keys, dtype=np.int64))
        with self._lock:
            merged = np.union1d(self._excluded, new).astype(np.int64)
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(merged))
            params = SelectorParams(self.index, selector)
            # Swap both at once: readers see either the old or the new pair.
            self._selector, self._excluded = params, merged
            return int(merged.size)

    # -- search -------------------------------------------------------------------------
    @property
    def max_effort(self) -> int:
        """The ``effort`` at which :meth:`search` covers the whole index (1 when exact): read
        once, since a loaded index keeps the search parameters it was loaded with (asking
        faiss each time cost a tenth of a diversity query)."""
        known = self._max_effort
        if known is None:
            known = self._max_effort = effort_limit(self.index)
        return known

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        effort: int = 1,
        allow: KeySelector | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product (cosine on normalised vectors), hidden ids left out.

        Returns ``(scores float32 (n, k), ids int64 (n, k))``, ids ``-1`` where fewer than k:
        at ``effort`` 1 an approximate index only looks at the lists or graph nodes its tuned
        ``nprobe``/``efSearch`` reach, so ``-1`` means "nothing more there", not "nothing more
        at all"; callers that need more widen the search with a larger ``effort`` (up to
        :attr:`max_effort`, where it sees everything).
        """
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries.reshape(1, -1)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(
                f"queries must have shape (n, {self.dim}) for index {self.version}, "
                f"got {queries.shape}"
            )
        excluded, selector = self._excluded, self._selector
        if allow is not None:  # a filter inside the index (``allow``: the keys it admits)
            hidden = selector.selector if selector is not None and excluded.size else None
            combined, _keep = allow.both(hidden)
            knob = self.filtered_knob(allow.count)
            params = SelectorParams(self.index, combined, effort, knob)
            scores, ids = self.index.search(queries, k, params=params.params)
            return _finish(scores, ids)
        if effort > 1:
            wider = SelectorParams(self.index, selector.selector if selector else None, effort)
            scores, ids = self.index.search(queries, k, params=wider.params)
            return _finish(scores, ids)
        if self._gpu_index is not None:
            depth = k + int(excluded.size)
            if depth <= GPU_MAX_K:
                scores, ids = self._gpu_index.search(queries, depth)
                return _finish(*_drop(scores, ids, excluded, k))
        if selector is None or not excluded.size:
            scores, ids = self.index.search(queries, k)
        else:
            scores, ids = self.index.search(queries, k, params=selector.params)
        return _finish(scores, ids)

    def filtered_knob(self, admitted: int) -> int | None:
        """The ``nprobe``/``efSearch`` a search admitting ``admitted`` keys starts from: the
        gate's value for the nearest measured selectivity at or below this one (the most
        selective one below all of them), never less than the unfiltered value; None: the
        unfiltered value (nothing measured)."""
        knobs = self._filtered_knobs
        if not knobs:
            return None
        share = admitted / max(1, self.ntotal)
        chosen = knobs[-1][1]
        for selectivity, knob in knobs:
            if selectivity <= share:
                chosen = knob
                break
        return chosen

    def __repr__(self) -> str:
        return (
            f"LoadedIndex(version={self.version!r}, model={self.model_version!r}, "
            f"factory={self.manifest.factory!r}, ntotal={self.ntotal}, dim={self.dim})"
        )


def _filtered_knobs(manifest: IndexManifest) -> list[tuple[float, int]]:
    """The manifest's filtered knobs as (selectivity, value), least selective first, each at
    least the unfiltered value."""
    name = next(iter(manifest.search_params), None)
    if name is None:
        return []
    floor = int(manifest.search_params[name])
    out = []
    for item in manifest.filtered_search_params:
        try:
            out.append((float(item["selectivity"]), max(floor, int(item[name]))))
        except (KeyError, TypeError, ValueError):
            continue  # written for another knob or malformed: the unfiltered value serves
    return sorted(out, reverse=True)


def _drop(
    scores: np.ndarray, ids: np.ndarray, excluded: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first ``k`` results of each row whose id is not excluded."""
    if not excluded.size:
        return scores[:, :k], ids[:, :k]
    keep = ~np.isin(ids, excluded) & (ids >= 0)
    out_scores = np.full((ids.shape[0], k), -np.inf, dtype=np.float32)
    out_ids = np.full((ids.shape[0], k), -1, dtype=np.int64)
    for row in range(ids.shape[0]):
        chosen = np.flatnonzero(keep[row])[:k]
        out_scores[row, : chosen.size] = scores[row, chosen]
        out_ids[row, : chosen.size] = ids[row, chosen]
    return out_scores, out_ids


def _finish(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.asarray(ids, dtype=np.int64)
    missing = ids < 0
    if missing.any():
        scores = scores.copy()
        scores[missing] = -np.inf
        ids = ids.copy()
        ids[missing] = -1
    return scores, ids


def load_index(
    directory: Path | str,
    *,
    expected_model_version: str | None = None,
    expected_dim: int | None = None,
    gpu: GpuMode | str = GpuMode.OFF,
    verify: IndexVerify | str = IndexVerify.ONCE,
    mmap: bool = False,
) -> LoadedIndex:
    """Load and verify one version directory; raises :class:`IndexLoadError` when unfit.

    ``verify``: each file's checksum is computed at its first load and trusted afterwards while
    the file is unchanged (``once``, :mod:`index.verified`), or computed every time (``always``).

    ``mmap``: map the file read-only (:mod:`index.mapped`), so the processes that serve the
    same version share one copy in the page cache; such an index cannot be modified.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise IndexNotFoundError(f"index directory {directory} does not exist")
    manifest = read_manifest(directory)
    _check_manifest(directory, manifest, expected_model_version, expected_dim)
    path = directory / manifest.index_file
    index = _read_index_file(path, manifest, verify, mmap=mmap)
    apply_search_params(index, manifest.search_params)
    excluded = _read_excluded(directory, manifest, verify)
    cowatch = _read_cowatch(directory, manifest, verify)
    places = _map_places(directory, manifest, index, verify) if mmap else None
    gpu_index = _gpu_copy(index, manifest, gpu)
    try:
        return LoadedIndex(
            directory,
            manifest,
            index,
            excluded=excluded,
            gpu_index=gpu_index,
            cowatch=cowatch,
            places=places,
        )
    except ValueError as error:
        raise IndexLoadError(f"index file {path} cannot be served: {error}") from error


def _check_manifest(
    directory: Path,
    manifest: IndexManifest,
    expected_model_version: str | None,
    expected_dim: int | None,
) -> None:
    version = manifest.version
    if version != directory.name:
        raise IndexLoadError(
            f"manifest in {directory} names version {version!r}; the directory was renamed or "
            "its manifest replaced"
        )
    if expected_model_version is not None and manifest.model_version != expected_model_version:
        raise IndexLoadError(
            f"index {version} was built for model {manifest.model_version}, not "
            f"{expected_model_version}; build one for that model with "
            f"`recsys index build --model {expected_model_version}`"
        )
    if expected_dim is not None and manifest.dim != expected_dim:
        raise IndexLoadError(
            f"index {version} has dimension {manifest.dim} but {expected_dim} was expected"
        )


def _read_index_file(
    path: Path, manifest: IndexManifest, verify: IndexVerify | str, *, mmap: bool = False
) -> faiss.Index:
    if not path.is_file():
        raise IndexLoadError(f"index file {path} is missing; rebuild or activate another version")
    actual = verified_sha256(path, manifest.sha256, verify)
    if actual != manifest.sha256:
        raise IndexLoadError(
            f"index file {path} fails its checksum (sha256 {actual[:12]}…, manifest says "
            f"{manifest.sha256[:12]}…): the file is corrupt or was replaced; "
            "rebuild it or activate another version"
        )
    try:
        index = read_mapped(path)[0] if mmap else faiss.read_index(str(path))
    except RuntimeError as error:
        raise IndexLoadError(f"faiss cannot read index file {path}: {error}") from error
    if int(index.d) != manifest.dim:
        raise IndexLoadError(
            f"index file {path} has dimension {index.d}, its manifest says {manifest.dim}"
        )
    if int(index.ntotal) != manifest.count:
        raise IndexLoadError(
            f"index file {path} holds {index.ntotal} vectors, its manifest says {manifest.count}"
        )
    return index


def _gpu_copy(
    index: faiss.Index, manifest: IndexManifest, gpu: GpuMode | str
) -> faiss.Index | None:
    if not use_gpu(gpu):
        return None
    try:
        gpu_index = to_gpu(index, float16=manifest.gpu_float16)
    except RuntimeError as error:  # e.g. HNSW has no GPU version
        if gpu == GpuMode.ON:
            raise IndexLoadError(
                f"index {manifest.version} ({manifest.factory}) cannot run on the GPU: {error}"
            ) from error
        log.warning("serving index %s from the CPU: %s", manifest.version, error)
        return None
    apply_search_params(gpu_index, manifest.search_params)
    return gpu_index


def _read_excluded(
    directory: Path, manifest: IndexManifest, verify: IndexVerify | str
) -> np.ndarray | None:
    checksum = manifest.excluded_sha256
    if not checksum:
        return None
    path = directory / EXCLUDED_FILE
    if not path.is_file():
        raise IndexLoadError(f"{path} is listed in the manifest but missing")
    if verified_sha256(path, checksum, verify) != checksum:
        raise IndexLoadError(f"{path} fails its checksum; rebuild the index")
    return np.load(path, allow_pickle=False).astype(np.int64)


def _map_places(
    directory: Path, manifest: IndexManifest, index: faiss.Index, verify: IndexVerify | str
) -> np.ndarray | None:
    """The version's IVF id map, mapped read-only (shared by every worker), after dropping
    faiss' private id hash table (~40 bytes per video); None when there is none."""
    checksum = manifest.id_map_sha256
    ivf = faiss.try_extract_index_ivf(index)
    if not checksum or ivf is None:
        return None
    path = directory / ID_MAP_FILE
    if not path.is_file():
        raise IndexLoadError(f"{path} is listed in the manifest but missing; rebuild the index")
    if verified_sha256(path, checksum, verify) != checksum:
        raise IndexLoadError(f"{path} fails its checksum; rebuild the index")
    places = map_array(path)
    if places.ndim != 2 or places.shape[0] != 2 or places.shape[1] != int(index.ntotal):
        raise IndexLoadError(f"{path} does not match its index; rebuild the index")
    # a fresh, empty map in place of faiss' id hash table: its memory is freed
    ivf.direct_map = faiss.DirectMap()  # type: ignore[attr-defined]
    _return_freed_memory()
    return places


def _return_freed_memory() -> None:
    """Hand freed heap back to the OS (glibc keeps the hash table's nodes otherwise)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _read_cowatch(
    directory: Path, manifest: IndexManifest, verify: IndexVerify | str
) -> NeighbourLists | None:
    checksum = manifest.cowatch_sha256
    if not checksum:
        return None
    path = directory / COWATCH_FILE
    if not path.is_file():
        raise IndexLoadError(f"{path} is listed in the manifest but missing; rebuild the index")
    if verified_sha256(path, checksum, verify) != checksum:
        raise IndexLoadError(f"{path} fails its checksum; rebuild the index")
    try:
        return NeighbourLists.load(path)
    except (OSError, ValueError, KeyError) as error:
        raise IndexLoadError(f"{path} is unreadable ({error}); rebuild the index") from error


def load_active(settings: Settings, *, gpu: GpuMode | str = GpuMode.OFF) -> LoadedIndex | None:
    """The index named by ``CURRENT``, verified; None when nothing was published yet."""
    version = current_version(settings)
    if version is None:
        return None
    return load_index(version_dir(settings, version), gpu=gpu, verify=settings.index_verify)

"""What one worker serves: a loaded index plus the catalog metadata and the per-modality
vectors of the same model version, built together off the request path and swapped as one."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from recsys.db import Database
from recsys.events.hybrid import NeighbourLists
from recsys.ids import VideoKey
from recsys.settings import Settings
from recsys.store import EmbeddingStore, StoreError
from serving.catalog import CatalogSnapshot, refreshed_or_loaded
from serving.derived import DamagedFile
from serving.moments import SegmentFeatures
from serving.vectors import mapped_modalities

if TYPE_CHECKING:
    from index import LoadedIndex

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    """Immutable once published by the holder; requests keep the one they started with."""

    index: LoadedIndex
    catalog: CatalogSnapshot
    modality_keys: np.ndarray  # int64 sorted video keys of the modality rows
    modalities: dict[str, np.ndarray] = field(default_factory=dict)
    segments: SegmentFeatures | None = None  # per-segment features for matched moments
    #: Why explanations are off although the store should have their vectors (None: not off).
    explanations_off: str | None = None
    load_seconds: float = 0.0
    loaded_at: float = field(default_factory=time.time)

    @property
    def index_version(self) -> str:
        return str(self.index.version)

    @property
    def model_version(self) -> str:
        return str(self.index.model_version)

    @property
    def cowatch(self) -> NeighbourLists | None:
        """The co-watch neighbour lists published with the served index (None: no graph)."""
        return self.index.cowatch

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def vector(self, video_key: VideoKey) -> np.ndarray | None:
        """The indexed vector of one video (None when the index does not hold it)."""
        vector = self.index.reconstruct(video_key)  # None when not served
        if vector is None:
            return None
        return np.asarray(vector, dtype=np.float32).reshape(-1)

    def modality_rows(self, video_keys: np.ndarray) -> np.ndarray:
        """Rows of ``modalities`` for video keys; -1 where there is none."""
        n = int(self.modality_keys.shape[0])
        if n == 0:
            return np.full(video_keys.shape, -1, dtype=np.int64)
        rows = np.minimum(np.searchsorted(self.modality_keys, video_keys), n - 1)
        return np.where(self.modality_keys[rows] == video_keys, rows, -1)


def load_modalities(
    settings: Settings, database: Database, model_version: str
) -> tuple[np.ndarray, dict[str, np.ndarray], str | None]:
    """Video keys and per-modality vectors of a model version for ``explain`` (empty when the
    store has none), and why explanations are off (None unless the store cannot be read: they
    are an extra, the index serves without them).

    The fused vectors are not read: the index holds them.
    """
    nothing = np.zeros(0, dtype=np.int64)
    try:
        if settings.index_mmap:  # one mapped copy for all workers
            keys, mapped = mapped_modalities(settings, database, model_version)
            return keys, mapped, None
        with database.session() as session:
            store = EmbeddingStore(settings)
            if not store.has_modalities(session, model_version):
                return nothing, {}, None
            matrix = store.load(session, model_version, with_modalities=True, with_vectors=False)
    except (StoreError, OSError, DamagedFile) as error:
        reason = f"the per-modality vectors of model {model_version} cannot be read: {error}"
        log.warning("explanations off: %s", reason)
        return nothing, {}, reason
    modalities = {name: np.ascontiguousarray(m) for name, m in matrix.modalities.items()}
    video_keys = matrix.video_keys
    del matrix
    if not modalities:
        return nothing, {}, None
    return video_keys, modalities, None


def build_state(
    settings: Settings,
    database: Database,
    loaded: LoadedIndex,
    previous: CatalogSnapshot | None = None,
) -> ServingState:
    """Catalog snapshot and modality vectors for an already loaded index; the ``previous``
    snapshot is kept (refreshed in place) when only metadata changed since it was read."""
    start = time.perf_counter()
    with database.session() as session:
        # mapped like the index: keys, ids and titles once in the page cache for all workers
        shared = settings.indexes_dir / ".catalog" if settings.index_mmap else None
        catalog = refreshed_or_loaded(session, previous, shared)
    catalog.selectors.prepare(catalog)
    modality_keys, modalities, off = load_modalities(settings, database, str(loaded.model_version))
    return ServingState(
        index=loaded,
        catalog=catalog,
        modality_keys=modality_keys,
        modalities=modalities,
        explanations_off=off,
        segments=SegmentFeatures(settings, database, str(loaded.model_version)),
        load_seconds=time.perf_counter() - start,
    )

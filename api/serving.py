"""What one worker serves: a loaded index plus the catalog metadata and the per-modality
vectors of the same model version, built together off the request path and swapped as one."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from api.catalog_cache import CatalogSnapshot, load_catalog
from recsys.db import Database
from recsys.settings import Settings
from recsys.store import EmbeddingStore, StoreError

if TYPE_CHECKING:
    from index import LoadedIndex

log = logging.getLogger(__name__)


@dataclass
class ServingState:
    """Immutable once published by the holder; requests keep the one they started with."""

    index: LoadedIndex
    catalog: CatalogSnapshot
    modality_ids: np.ndarray  # int64 sorted internal ids of the modality rows
    modalities: dict[str, np.ndarray] = field(default_factory=dict)
    load_seconds: float = 0.0
    loaded_at: float = field(default_factory=time.time)

    @property
    def index_version(self) -> str:
        return str(self.index.version)

    @property
    def model_version(self) -> str:
        return str(self.index.model_version)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def vector(self, internal_id: int) -> np.ndarray | None:
        """The indexed vector of one video (None when the index does not hold it)."""
        vector = self.index.reconstruct(internal_id)  # None when not served
        if vector is None:
            return None
        return np.asarray(vector, dtype=np.float32).reshape(-1)

    def modality_rows(self, internal_ids: np.ndarray) -> np.ndarray:
        """Rows of ``modalities`` for internal ids; -1 where there is none."""
        n = int(self.modality_ids.shape[0])
        if n == 0:
            return np.full(internal_ids.shape, -1, dtype=np.int64)
        rows = np.minimum(np.searchsorted(self.modality_ids, internal_ids), n - 1)
        return np.where(self.modality_ids[rows] == internal_ids, rows, -1)


def load_modalities(
    settings: Settings, database: Database, model_version: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-modality vectors of a model version for ``explain``; empty when the store has none.

    The fused vectors are not read: the index holds them.
    """
    try:
        with database.session() as session:
            store = EmbeddingStore(settings)
            if not store.has_modalities(session, model_version):
                return np.zeros(0, dtype=np.int64), {}
            matrix = store.load(session, model_version, with_modalities=True, with_vectors=False)
    except StoreError as error:
        log.warning("explanations off for model %s: %s", model_version, error)
        return np.zeros(0, dtype=np.int64), {}
    modalities = {name: np.ascontiguousarray(m) for name, m in matrix.modalities.items()}
    ids = matrix.ids
    del matrix
    if not modalities:
        return np.zeros(0, dtype=np.int64), {}
    return ids, modalities


def build_state(settings: Settings, database: Database, loaded: LoadedIndex) -> ServingState:
    """Catalog snapshot and modality vectors for an already loaded index."""
    start = time.perf_counter()
    with database.session() as session:
        catalog = load_catalog(session)
    modality_ids, modalities = load_modalities(settings, database, str(loaded.model_version))
    return ServingState(
        index=loaded,
        catalog=catalog,
        modality_ids=modality_ids,
        modalities=modalities,
        load_seconds=time.perf_counter() - start,
    )

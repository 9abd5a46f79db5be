"""Re-ranking reads the stored vectors of a search's results in one batch, from every kind of
published index (a mapped IVF reads them through its id map)."""

from __future__ import annotations

import numpy as np
import pytest

from index import current_version, load_index, version_dir
from recsys.db import Database
from recsys.settings import Settings
from serving.search import stored_vectors
from serving.state import build_state
from tests.serving.catalog import build_catalog


@pytest.mark.parametrize("factory", [None, "IVF4,Flat", "OPQ4,IVF4,Flat"])
@pytest.mark.parametrize("mmap", [False, True])
def test_stored_vectors_are_the_embeddings(
    sqlite_settings: Settings, factory: str | None, mmap: bool
) -> None:
    from recsys.db import open_database

    database: Database = open_database(sqlite_settings)
    try:
        catalog = build_catalog(sqlite_settings, database, n=300, index_factory=factory)
        loaded = load_index(
            version_dir(sqlite_settings, current_version(sqlite_settings) or ""), mmap=mmap
        )
        state = build_state(sqlite_settings, database, loaded)
        videos = ["v003", "v000", "v041"]
        keys = np.array([catalog.video_keys[v] for v in videos], dtype=np.int64)
        expected = np.stack([catalog.vectors[v] for v in videos])
        assert np.allclose(stored_vectors(state, keys), expected, atol=1e-5)
        # a key the index does not hold: zeros for it, the others as stored
        missing = np.array([catalog.video_keys["failed1"], keys[0]], dtype=np.int64)
        both = stored_vectors(state, missing)
        assert not both[0].any() and np.allclose(both[1], expected[0], atol=1e-5)
    finally:
        database.dispose()

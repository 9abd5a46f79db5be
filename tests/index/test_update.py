"""Deleted and failed videos never come back; new embeddings join without a rebuild."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from index import BuildOptions, build_index, current_version, load_active, update_index
from recsys.db import Database, VideoStatus
from recsys.settings import Settings
from tests.index.catalog import (
    add_videos,
    clustered_vectors,
    make_catalog,
    register_model,
    set_status,
)

COUNT, DIM = 1200, 32


def _assert_never_returned(settings: Settings, vectors: np.ndarray, gone: np.ndarray) -> None:
    loaded = load_active(settings)
    assert loaded is not None
    _, found = loaded.search(vectors, 50)
    assert not np.isin(found, gone).any()
    assert not any(loaded.contains(int(i)) for i in gone)
    assert all(loaded.reconstruct(int(i)) is None for i in gone)


def test_build_leaves_out_deleted_and_failed(settings: Settings, database: Database) -> None:
    ids, vectors = make_catalog(settings, database, COUNT, DIM)
    set_status(database, ids[:10], VideoStatus.DELETED)
    set_status(database, ids[10:20], VideoStatus.FAILED)
    result = build_index(settings, database, BuildOptions(gpu="off"))
    assert result.count == COUNT - 20
    _assert_never_returned(settings, vectors[:40], ids[:20])


@pytest.mark.parametrize("kind", ["flat", "ivfflat", "ivfsq", "hnsw"])
def test_update_removes_deleted_videos(settings: Settings, database: Database, kind: str) -> None:
    ids, vectors = make_catalog(settings, database, COUNT, DIM)
    first = build_index(settings, database, BuildOptions(kind=kind, gpu="off"))
    gone = ids[100:130]
    set_status(database, gone[:15], VideoStatus.DELETED)
    set_status(database, gone[15:], VideoStatus.FAILED)
    result = update_index(settings, database)
    assert result.version is not None and result.version != first.version
    assert current_version(settings) == result.version
    assert result.removed == gone.size and result.recall_at_10 >= 0.95
    if kind == "hnsw":
        assert result.hidden == gone.size  # a graph cannot drop nodes: filtered at search time
    else:
        assert result.hidden == 0
    loaded = load_active(settings)
    assert loaded is not None and loaded.ntotal == COUNT - gone.size
    _assert_never_returned(settings, vectors[95:135], gone)
    again = update_index(settings, database)
    assert again.version is None and "up to date" in again.reason


@pytest.mark.parametrize("kind", ["flat", "ivfflat"])
def test_update_adds_newly_embedded_videos(
    settings: Settings, database: Database, kind: str
) -> None:
    ids, _ = make_catalog(settings, database, COUNT, DIM)
    build_index(settings, database, BuildOptions(kind=kind, gpu="off"))
    fresh = clustered_vectors(150, DIM, seed=7)
    new_ids = add_videos(settings, database, fresh, prefix="new")
    result = update_index(settings, database)
    assert result.added == 150 and not result.rebuild_needed
    loaded = load_active(settings)
    assert loaded is not None and loaded.ntotal == COUNT + 150
    assert all(loaded.contains(int(i)) for i in new_ids)
    _, found = loaded.search(fresh[:10], 1)
    assert np.array_equal(found[:, 0], new_ids[:10])
    np.testing.assert_allclose(loaded.reconstruct(int(new_ids[3])), fresh[3], atol=1e-6)


def test_update_replaces_re_embedded_vectors(settings: Settings, database: Database) -> None:
    ids, vectors = make_catalog(settings, database, COUNT, DIM)
    build_index(settings, database, BuildOptions(kind="ivfflat", gpu="off"))
    changed = clustered_vectors(5, DIM, seed=99)
    from recsys.store import EmbeddingStore

    with database.session() as session:
        EmbeddingStore(settings).write_batch(
            session, "m1", ids[:5].tolist(), [f"hv{i}" for i in range(5)], "1", changed
        )
    result = update_index(settings, database)
    assert result.version is not None and result.added == 5
    loaded = load_active(settings)
    assert loaded is not None and loaded.ntotal == COUNT
    np.testing.assert_allclose(loaded.reconstruct(int(ids[2])), changed[2], atol=1e-6)


def test_update_says_when_a_rebuild_is_needed(settings: Settings, database: Database) -> None:
    make_catalog(settings, database, COUNT, DIM)
    first = build_index(settings, database, BuildOptions(gpu="off"))
    register_model(database, "m2", DIM)  # a new active model: its index must be built anew
    result = update_index(settings, database)
    assert result.rebuild_needed and "m2" in result.reason and "index build" in result.reason
    assert result.version is None and current_version(settings) == first.version


def test_update_without_an_index_asks_for_a_build(settings: Settings, database: Database) -> None:
    result = update_index(settings, database)
    assert result.rebuild_needed and "recsys index build" in result.reason


def test_remove_ids_hides_at_once_while_other_threads_search(
    settings: Settings, database: Database
) -> None:
    ids, vectors = make_catalog(settings, database, COUNT, DIM)
    build_index(settings, database, BuildOptions(kind="ivfflat", gpu="off"))
    loaded = load_active(settings)
    assert loaded is not None
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                scores, found = loaded.search(vectors[:8], 10)
                assert found.shape == (8, 10)
        except BaseException as error:  # noqa: BLE001 - surfaced below
            errors.append(error)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for thread in threads:
        thread.start()
    for start in range(0, 40, 10):
        loaded.remove_ids(ids[start : start + 10])
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    assert loaded.ntotal == COUNT - 40
    _, found = loaded.search(vectors[:60], 10)
    assert not np.isin(found, ids[:40]).any()
    assert np.array_equal(found[40:, 0], ids[40:60])

"""Deleted and failed videos never come back; new embeddings join without a rebuild."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import index.evaluate
from index import (
    BuildOptions,
    GateOptions,
    UpdateOptions,
    build_index,
    current_version,
    list_indexes,
    load_active,
    update_index,
)
from index.evaluate import GroundTruth
from index.manifest import MANIFEST_FILE
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
    assert result.removed == gone.size and result.recall_at_k is not None
    assert result.recall_at_k >= 0.95 and result.k == 10
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


def _spy_on_gate(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(k, number of queries) of every recall measurement from now on."""
    seen: list[tuple[int, int]] = []
    real = index.evaluate.recall_at_k

    def spy(truth: GroundTruth, found_ids: np.ndarray) -> float:
        seen.append((truth.k, int(truth.queries.shape[0])))
        return real(truth, found_ids)

    monkeypatch.setattr(index.evaluate, "recall_at_k", spy)
    return seen


def _manifest(settings: Settings, version: str) -> dict[str, object]:
    return json.loads((settings.indexes_dir / version / MANIFEST_FILE).read_text())


def test_update_gates_with_the_options_of_the_build(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: update measured recall@10 on 1000 queries whatever the build's gate was."""
    ids, _ = make_catalog(settings, database, COUNT, DIM)
    gate = {"k": 5, "queries": 60, "min_recall": 0.9, "seed": 2}
    first = build_index(settings, database, BuildOptions(kind="ivfflat", gpu="off", **gate))
    set_status(database, ids[:10], VideoStatus.DELETED)
    seen = _spy_on_gate(monkeypatch)
    result = update_index(settings, database)
    assert result.version is not None and result.removed == 10
    assert seen and set(seen) == {(5, 60)}
    manifest = _manifest(settings, result.version)
    assert {key: manifest[key] for key in gate} == gate
    assert manifest["recall_queries"] == 60 and manifest["recall_at_k"] == result.recall_at_k
    assert result.k == 5 and result.recall_at_10 is None
    assert manifest["previous_version"] == first.version
    assert "parent_version" not in manifest and "updated_from" not in manifest
    assert "recall_at_10" not in manifest and manifest["format"] == 2


def test_update_takes_the_same_gate_options_as_build(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids, _ = make_catalog(settings, database, COUNT, DIM)
    build_index(settings, database, BuildOptions(kind="ivfflat", gpu="off"))
    set_status(database, ids[:10], VideoStatus.DELETED)
    seen = _spy_on_gate(monkeypatch)
    options = UpdateOptions(gate=GateOptions(k=3, queries=25, min_recall=0.9, seed=1))
    result = update_index(settings, database, options)
    assert result.version is not None and set(seen) == {(3, 25)}
    manifest = _manifest(settings, result.version)
    assert (manifest["k"], manifest["queries"], manifest["min_recall"]) == (3, 25, 0.9)


def test_update_refused_by_the_gate_keeps_the_served_index(
    settings: Settings, database: Database
) -> None:
    ids, _ = make_catalog(settings, database, COUNT, DIM)
    coarse = BuildOptions(factory="IVF16,PQ2x4", gpu="off", min_recall=0.1)  # recall ~0.25
    first = build_index(settings, database, coarse)
    set_status(database, ids[:10], VideoStatus.DELETED)
    result = update_index(settings, database, UpdateOptions(gate=GateOptions(min_recall=1.0)))
    assert result.version is None and result.rebuild_needed
    assert "recall@10" in result.reason and "recsys index build" in result.reason
    assert result.recall_at_k is not None and result.recall_at_k < 1.0
    assert current_version(settings) == first.version
    rejected = [e for e in list_indexes(settings, database) if e["status"] == "rejected"]
    assert len(rejected) == 1 and not rejected[0]["on_disk"]
    assert f"update of {first.version}" in rejected[0]["status_reason"]

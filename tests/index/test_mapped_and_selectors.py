"""A published index mapped read-only answers like the one read into memory, and
filters passed into the index as ID selectors answer like brute force over the admitted set."""

from __future__ import annotations

import numpy as np
import pytest

from index import BuildOptions, build_index, load_index
from index.manifest import INDEX_FILE
from index.mapped import read_mapped
from index.selectors import KeySelector
from recsys.db import Database
from recsys.ids import VideoKey
from recsys.settings import Settings
from tests.index.catalog import add_videos, clustered_vectors, register_model

COUNT, DIM = 6_000, 32
FACTORIES = {
    "Flat": "codes",
    "IVF64,Flat": "ivf",
    "IVF64,SQ8": "ivf",
    "IVF64,SQfp16": "ivf",
    "OPQ8,IVF64,PQ8": "ivf",
    "HNSW16,Flat": "codes",
}


@pytest.fixture
def catalog(sqlite_settings: Settings) -> tuple[Settings, Database, np.ndarray, np.ndarray]:
    from recsys.db import open_database

    database = open_database(sqlite_settings)
    register_model(database, dim=DIM)
    vectors = clustered_vectors(COUNT, DIM, seed=3)
    keys = add_videos(sqlite_settings, database, vectors)
    yield sqlite_settings, database, keys, vectors
    database.dispose()


def _build(settings: Settings, database: Database, factory: str):  # type: ignore[no-untyped-def]
    options = BuildOptions(gpu="off", factory=factory, min_recall=0.0, queries=100)
    return build_index(settings, database, options)


@pytest.mark.parametrize("factory", sorted(FACTORIES))
def test_mapped_index_answers_like_the_one_in_memory(catalog, factory: str) -> None:  # type: ignore[no-untyped-def]
    settings, database, keys, vectors = catalog
    result = _build(settings, database, factory)
    private = load_index(result.directory)
    mapped = load_index(result.directory, mmap=True)
    assert read_mapped(result.directory / INDEX_FILE)[1] == FACTORIES[factory]
    assert mapped.search_params == private.search_params and mapped.ntotal == COUNT
    queries = vectors[::97]
    for effort in (1, 4):
        expected = private.search(queries, 10, effort=effort)
        got = mapped.search(queries, 10, effort=effort)
        assert np.array_equal(got[1], expected[1])
        assert np.allclose(got[0], expected[0], atol=1e-6)
    if factory != "HNSW16,Flat":  # IDMap2 around HNSW reconstructs too, but via the storage
        for key in keys[::397]:
            assert np.allclose(mapped.reconstruct(int(key)), private.reconstruct(int(key)))
    # IVF: the mapped index finds vectors through the version's shared id map, not a private
    # faiss hash table (dropped at load)
    is_ivf = FACTORIES[factory] == "ivf"
    assert (mapped.manifest.id_map_sha256 is not None) == is_ivf
    assert (mapped._places is not None) == is_ivf
    if is_ivf:  # read in one gather over the mapped lists: the same floats as one by one
        assert mapped._codes is not None
        some = np.sort(np.random.default_rng(1).choice(keys, size=100, replace=False))
        batch = mapped.reconstruct_batch(some)
        assert batch.dtype == np.float32 and batch.shape == (100, DIM)
        one_by_one = np.stack([private.reconstruct(int(k)) for k in some])
        single = mapped.reconstruct(VideoKey(int(some[7])))
        if factory.startswith("OPQ"):
            # Undoing the rotation is one matrix product for the batch and a matrix-vector
            # product for one vector: BLAS may sum in another order (the last bit differs on
            # some runs), so the same floats up to rounding.
            assert np.allclose(batch, one_by_one, rtol=0, atol=1e-6)
            assert np.allclose(batch[7], single, rtol=0, atol=1e-6)
        else:  # copies or per-element decoding: bit for bit
            assert np.array_equal(batch, one_by_one)
            assert np.array_equal(batch[7], single)
        assert mapped.reconstruct_batch(some[:0]).shape == (0, DIM)
        for absent in (int(keys.max()) + 1, 0, -1):  # past the end, a gap, below the start
            with pytest.raises(KeyError):
                mapped.reconstruct_batch(np.array([int(keys[0]), absent]))
            assert mapped.reconstruct(VideoKey(absent)) is None
        # compact keys are found with one gather; keys too sparse for a table, by a binary
        # search: the same vectors and the same refusals
        assert mapped._dense is not None
        searched = load_index(result.directory, mmap=True)
        searched._dense = None
        assert np.array_equal(searched.reconstruct_batch(some), batch)
        assert np.array_equal(searched.reconstruct(VideoKey(int(some[7]))), single)
        with pytest.raises(KeyError):
            searched.reconstruct_batch(np.array([int(keys.max()) + 1]))
    assert np.array_equal(mapped.ids, private.ids) and mapped.contains(int(keys[3]))
    # hiding ids works the same on the mapped (read-only) index: a selector, no write
    hidden = keys[:50]
    private.remove_ids(hidden)
    mapped.remove_ids(hidden)
    assert np.array_equal(mapped.search(queries, 10)[1], private.search(queries, 10)[1])
    assert not np.isin(mapped.search(queries, 10)[1], hidden).any()


def _brute_force(vectors: np.ndarray, keys: np.ndarray, allowed: np.ndarray, queries, k: int):  # type: ignore[no-untyped-def]
    inside = np.isin(keys, allowed)
    scores = queries @ vectors[inside].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return keys[inside][order], np.take_along_axis(scores, order, axis=1)


@pytest.mark.parametrize("factory", ["Flat", "IVF64,Flat", "IVF64,SQ8"])
def test_selector_filtered_search_equals_brute_force(catalog, factory: str) -> None:  # type: ignore[no-untyped-def]
    settings, database, keys, vectors = catalog
    result = _build(settings, database, factory)
    loaded = load_index(result.directory, mmap=True)
    rng = np.random.default_rng(0)
    allowed = np.sort(rng.choice(keys, size=COUNT // 100, replace=False))  # 1 % selective
    hidden = allowed[:7]  # deleted meanwhile: hidden from every search
    loaded.remove_ids(hidden)
    queries = vectors[rng.choice(COUNT, size=40, replace=False)]
    admitted = np.setdiff1d(allowed, hidden)
    expected_keys, expected_scores = _brute_force(vectors, keys, admitted, queries, 10)
    selector = KeySelector.of_keys(allowed)
    assert selector.count == allowed.size
    # the whole index (an exact index at effort 1, an IVF one at its widest) gives brute force
    scores, found = loaded.search(queries, 10, effort=loaded.max_effort, allow=selector)
    assert np.isin(found, admitted).all()
    if factory == "IVF64,SQ8":  # 8-bit codes: scores are approximate, the sets nearly equal
        overlap = np.mean(
            [np.intersect1d(a, b).size / 10 for a, b in zip(found, expected_keys, strict=True)]
        )
        assert overlap >= 0.9
    else:
        assert np.array_equal(found, expected_keys)
        assert np.allclose(scores, expected_scores, atol=1e-5)
    # at the tuned effort everything returned is still admitted, and most of the true top 10
    _, found = loaded.search(queries, 10, allow=selector)
    assert np.isin(found[found >= 0], admitted).all()


def test_sparse_keys_use_a_hash_set_and_admit_the_same_keys() -> None:
    sparse = np.array([3, 2**40 + 1, 2**50], dtype=np.int64)
    selector = KeySelector.of_keys(sparse)
    dense = KeySelector.of_keys(np.array([1, 5, 9], dtype=np.int64))
    assert selector.count == 3 and dense.count == 3
    assert [selector.selector.is_member(int(k)) for k in (3, 2**40 + 1, 2**50, 4)] == [
        True,
        True,
        True,
        False,
    ]
    assert [dense.selector.is_member(k) for k in (1, 5, 9, 0, 2, 10, 1 << 20)] == [
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    with pytest.raises(ValueError):
        KeySelector.of_keys(np.array([-1], dtype=np.int64))

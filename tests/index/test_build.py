"""Build → recall gate → atomic publish → load, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sqlalchemy import select

from index import (
    BuildOptions,
    IndexBuildError,
    RecallTooLow,
    activate_index,
    build_index,
    current_version,
    index_info,
    list_indexes,
    load_active,
    load_index,
)
from index.manifest import INDEX_FILE, MANIFEST_FILE
from recsys.checksums import sha256_file
from recsys.db import Database
from recsys.db.models import IndexBuild
from recsys.settings import Settings
from tests.index.catalog import make_catalog

COUNT, DIM = 1500, 32


def _rows(database: Database) -> dict[str, IndexBuild]:
    with database.session() as session:
        return {row.version: row for row in session.scalars(select(IndexBuild))}


def test_build_publishes_a_verified_index(settings: Settings, database: Database) -> None:
    ids, vectors = make_catalog(settings, database, COUNT, DIM)
    result = build_index(settings, database, BuildOptions(gpu="off"))
    assert result.published and result.factory == "Flat"
    assert current_version(settings) == result.version
    assert (settings.indexes_dir / "CURRENT").read_text().strip() == result.version
    manifest = json.loads((result.directory / MANIFEST_FILE).read_text())
    assert manifest["recall_at_k"] >= 0.95 and manifest["k"] == 10
    assert manifest["format"] == 2 and manifest["previous_version"] is None
    assert "recall_at_10" not in manifest and "recall_k" not in manifest
    assert manifest["model_version"] == "m1"
    assert (manifest["count"], manifest["dim"], manifest["metric"]) == (COUNT, DIM, "inner_product")
    assert manifest["sha256"] == sha256_file(result.directory / INDEX_FILE)
    for key in ("version", "factory", "search_params", "build_seconds", "created_at"):
        assert key in manifest
    row = _rows(database)[result.version]
    assert row.is_active and row.status == "published" and row.recall_at_10 >= 0.95

    loaded = load_active(settings)
    assert loaded is not None and loaded.version == result.version and loaded.ntotal == COUNT
    scores, found = loaded.search(vectors[:20], 10)
    assert found.dtype == np.int64 and scores.dtype == np.float32 and found.shape == (20, 10)
    assert np.array_equal(found[:, 0], ids[:20])  # a video's nearest neighbour is itself
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # higher is better, sorted
    np.testing.assert_allclose(loaded.reconstruct(int(ids[7])), vectors[7], atol=1e-6)
    assert loaded.contains(int(ids[0])) and not loaded.contains(int(ids.max()) + 1000)
    assert loaded.reconstruct(int(ids.max()) + 1000) is None


@pytest.mark.parametrize("kind", ["ivfflat", "ivfsq", "hnsw"])
def test_approximate_kinds_are_tuned_to_the_recall_gate(
    settings: Settings, database: Database, kind: str
) -> None:
    ids, vectors = make_catalog(settings, database, COUNT, DIM)
    result = build_index(settings, database, BuildOptions(kind=kind, gpu="off", min_recall=0.95))
    assert result.recall_at_k >= 0.95 and result.k == 10
    knob = "efSearch" if kind == "hnsw" else "nprobe"
    assert knob in result.search_params
    loaded = load_active(settings)
    assert loaded is not None and loaded.search_params == result.search_params
    tolerance = 0.02 if kind == "ivfsq" else 1e-6  # 8-bit codes reconstruct approximately
    np.testing.assert_allclose(loaded.reconstruct(int(ids[3])), vectors[3], atol=tolerance)
    _, found = loaded.search(vectors[:5], 3)
    assert np.array_equal(found[:, 0], ids[:5])


def test_recall_gate_refuses_and_keeps_the_served_index(
    settings: Settings, database: Database
) -> None:
    make_catalog(settings, database, COUNT, DIM)
    good = build_index(settings, database, BuildOptions(gpu="off"))
    with pytest.raises(RecallTooLow) as refused:
        build_index(
            settings, database, BuildOptions(factory="IVF4,PQ2x4", gpu="off", min_recall=0.95)
        )
    assert refused.value.recall < 0.95
    assert "served index is unchanged" in str(refused.value)
    assert current_version(settings) == good.version
    rows = _rows(database)
    rejected = rows[refused.value.version]
    assert rejected.status == "rejected" and not rejected.is_active
    assert "recall@10" in (rejected.status_reason or "")
    assert not (settings.indexes_dir / refused.value.version).exists()
    assert rows[good.version].is_active


def test_no_publish_builds_beside_the_served_index(settings: Settings, database: Database) -> None:
    make_catalog(settings, database, COUNT, DIM)
    first = build_index(settings, database, BuildOptions(gpu="off"))
    second = build_index(settings, database, BuildOptions(gpu="off", publish=False))
    assert current_version(settings) == first.version
    assert _rows(database)[second.version].status == "built"
    activate_index(settings, database, second.version)
    assert current_version(settings) == second.version
    activate_index(settings, database, first.version)  # rollback
    assert current_version(settings) == first.version
    rows = _rows(database)
    assert rows[first.version].is_active and not rows[second.version].is_active
    listing = list_indexes(settings, database)
    assert [e["version"] for e in listing] == [second.version, first.version]
    assert [e["active"] for e in listing] == [False, True]
    info = index_info(settings, database)
    assert info["version"] == first.version and info["checksum_ok"]


def test_keeps_only_the_last_builds(settings: Settings, database: Database) -> None:
    settings.index_keep = 2
    make_catalog(settings, database, 300, DIM)
    versions = [build_index(settings, database, BuildOptions(gpu="off")).version for _ in range(4)]
    on_disk = sorted(p.name for p in settings.indexes_dir.iterdir() if p.is_dir())
    assert on_disk == sorted(versions[-2:])
    rows = _rows(database)
    assert [rows[v].status for v in versions[:2]] == ["removed", "removed"]
    assert current_version(settings) == versions[-1]


def test_missing_model_or_embeddings_is_a_clear_error(
    settings: Settings, database: Database
) -> None:
    with pytest.raises(IndexBuildError, match="no active model"):
        build_index(settings, database, BuildOptions(gpu="off"))
    make_catalog(settings, database, 10, DIM)
    with pytest.raises(IndexBuildError, match="not registered"):
        build_index(settings, database, BuildOptions(model_version="nope", gpu="off"))


def test_gpu_on_without_a_gpu_is_refused(settings: Settings, database: Database) -> None:
    from index.gpu import gpu_count

    if gpu_count() > 0:
        pytest.skip("this machine has a GPU")
    make_catalog(settings, database, 50, DIM)
    with pytest.raises(IndexBuildError, match="no GPU"):
        build_index(settings, database, BuildOptions(gpu="on"))
    assert current_version(settings) is None


def test_load_index_checks_the_expected_model(settings: Settings, database: Database) -> None:
    make_catalog(settings, database, 100, DIM)
    result = build_index(settings, database, BuildOptions(gpu="off"))
    assert load_index(result.directory, expected_model_version="m1").ntotal == 100
    from index import IndexLoadError

    with pytest.raises(IndexLoadError, match="built for model m1"):
        load_index(result.directory, expected_model_version="m2")
    with pytest.raises(IndexLoadError, match="dimension"):
        load_index(result.directory, expected_dim=64)


def test_tight_budget_builds_a_compressed_index(settings: Settings, database: Database) -> None:
    make_catalog(settings, database, COUNT, DIM)
    # full vectors need ~0.2 MB here: a 0.1 MB budget forces 8-bit codes
    result = build_index(settings, database, BuildOptions(memory_budget="100K", gpu="off"))
    assert result.kind == "ivfsq" and result.factory.endswith(",SQ8")
    assert result.recall_at_k >= 0.95
    assert result.manifest is not None and result.manifest.estimated_bytes <= 100 * 1024


def test_manifest_records_recall_at_the_gate_k(settings: Settings, database: Database) -> None:
    """Bug: the manifest said ``recall_at_10`` whatever k the gate measured (``recall_k``)."""
    make_catalog(settings, database, 400, DIM)
    result = build_index(
        settings, database, BuildOptions(kind="ivfflat", gpu="off", k=5, queries=60, seed=3)
    )
    manifest = json.loads((result.directory / MANIFEST_FILE).read_text())
    assert manifest["k"] == 5 and "recall_at_10" not in manifest
    assert manifest["recall_at_k"] == result.recall_at_k >= 0.95
    assert (manifest["queries"], manifest["recall_queries"], manifest["seed"]) == (60, 60, 3)
    assert result.k == 5 and result.recall_at_10 is None
    payload = result.as_dict()
    assert payload["recall_at_k"] == result.recall_at_k and payload["recall_at_10"] is None
    # the database column is recall at 10: it stays empty rather than hold recall@5
    assert _rows(database)[result.version].recall_at_10 is None
    listed = {e["version"]: e for e in list_indexes(settings, database)}[result.version]
    assert (listed["recall_at_k"], listed["k"]) == (result.recall_at_k, 5)


def test_a_factory_string_builds(settings: Settings, database: Database) -> None:
    make_catalog(settings, database, 800, DIM)
    options = BuildOptions(factory="IVF16,Flat", gpu="off")
    assert options.kind == "auto" and options.factory == "IVF16,Flat"
    result = build_index(settings, database, options)
    assert result.factory == "IVF16,Flat" and result.kind == "custom"

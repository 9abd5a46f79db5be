"""One lifecycle: typed options, the manifest (old formats included), the pointer as the one
truth about what is served, and errors of the recsys kinds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from index import (
    BuildOptions,
    GateOptions,
    IndexActivationError,
    IndexBuildError,
    IndexLoadError,
    IndexManifest,
    IndexNotFoundError,
    InvalidIndexVersion,
    NoActiveIndex,
    RecallTooLow,
    RecsysIndexError,
    UnknownIndexVersion,
    UpdateOptions,
    activate_index,
    active_manifest,
    build_index,
    current_version,
    index_info,
    list_indexes,
    load_active,
    load_index,
    read_manifest,
    update_index,
)
from index.build import build_from_vectors
from index.gpu import use_gpu
from index.manifest import FORMAT_VERSION, INDEX_FILE, MANIFEST_FILE
from index.pointer import set_current
from recsys.catalog import active_index
from recsys.choices import GpuMode, IndexKind
from recsys.db import Database, VideoStatus
from recsys.db.models import IndexBuild
from recsys.errors import ConflictError, NotFoundError, RecsysError, UserError
from recsys.index_pointer import read_pointer
from recsys.settings import Settings
from recsys.status import catalog_status
from tests.index.catalog import clustered_vectors, make_catalog, set_status

DIM = 32
GATE_FIELDS = ("min_recall", "k", "queries", "seed")


# -- options ---------------------------------------------------------------------------------
def test_build_options_are_typed_and_checked_when_made() -> None:
    options = BuildOptions(kind="ivfflat", gpu="off")
    assert options.kind is IndexKind.IVFFLAT and options.gpu is GpuMode.OFF
    assert options.factory is None
    assert options.gate == GateOptions()
    assert BuildOptions(min_recall=0.9, k=5, queries=7, seed=2).gate == GateOptions(
        min_recall=0.9, k=5, queries=7, seed=2
    )
    custom = BuildOptions(factory=" IVF16,Flat ")
    assert custom.kind is IndexKind.AUTO and custom.factory == "IVF16,Flat"
    with pytest.raises(IndexBuildError, match="--kind must be one of auto, flat"):
        BuildOptions(kind="IVF16,Flat")  # a factory string goes in `factory`
    with pytest.raises(IndexBuildError, match="--gpu must be one of auto, on, off"):
        BuildOptions(gpu="sometimes")
    with pytest.raises(IndexBuildError, match="exclude each other"):
        BuildOptions(kind="flat", factory="IVF16,Flat")
    with pytest.raises(IndexBuildError, match="--factory is empty"):
        BuildOptions(factory="  ")
    with pytest.raises(IndexBuildError, match="--min-recall"):
        BuildOptions(min_recall=1.5)
    with pytest.raises(IndexBuildError, match="--k"):
        GateOptions(k=0)
    with pytest.raises(IndexBuildError, match="--queries"):
        UpdateOptions(gate=GateOptions(queries=0))
    with pytest.raises(IndexBuildError, match="--gpu"):
        use_gpu("maybe")


def test_build_and_update_share_the_gate_defaults() -> None:
    build_fields = BuildOptions.__dataclass_fields__
    gate_fields = GateOptions.__dataclass_fields__
    for name in GATE_FIELDS:
        assert build_fields[name].default == gate_fields[name].default
    assert UpdateOptions().gate is None  # the gate the active index passed
    assert isinstance(UpdateOptions(gate=GateOptions(k=3)).gate, GateOptions)


# -- errors ----------------------------------------------------------------------------------
def test_index_errors_are_recsys_errors_of_the_right_kind(
    settings: Settings, database: Database
) -> None:
    for cls in (
        RecsysIndexError,
        IndexLoadError,
        IndexBuildError,
        RecallTooLow,
        IndexActivationError,
        IndexNotFoundError,
        NoActiveIndex,
        InvalidIndexVersion,
        UnknownIndexVersion,
    ):
        assert issubclass(cls, RecsysError)
    with pytest.raises(NoActiveIndex) as nothing:
        index_info(settings, database)
    assert isinstance(nothing.value, ConflictError) and "recsys index build" in str(nothing.value)
    make_catalog(settings, database, 300, DIM)
    served = build_index(settings, database, BuildOptions(gpu="off"))
    unknown = "20990101T000000.000000Z-nope00"
    with pytest.raises(NotFoundError, match="does not exist") as missing:
        activate_index(settings, database, unknown)
    assert isinstance(missing.value, IndexActivationError)
    assert f"{served.version} stays active" in str(missing.value)
    with pytest.raises(NotFoundError, match="unknown"):
        index_info(settings, database, unknown)
    with pytest.raises(IndexNotFoundError):
        load_index(settings.indexes_dir / unknown)
    with pytest.raises(UserError, match="invalid"):
        activate_index(settings, database, "../escape")
    with pytest.raises(ValueError, match="invalid"):  # still a ValueError for old callers
        index_info(settings, database, "../escape")
    with pytest.raises(RecallTooLow) as refused:
        build_index(settings, database, BuildOptions(factory="IVF4,PQ2x4", gpu="off"))
    assert isinstance(refused.value, UserError) and "--memory-budget" in str(refused.value)
    spare = build_index(settings, database, BuildOptions(gpu="off", publish=False))
    assert spare.directory is not None
    (spare.directory / INDEX_FILE).write_bytes(b"not an index")
    with pytest.raises(UserError, match="stays active"):
        activate_index(settings, database, spare.version)


# -- the pointer is the one truth ------------------------------------------------------------
def test_status_reports_the_index_the_pointer_serves(
    settings: Settings, database: Database
) -> None:
    """Bug: ``recsys status`` reported the row flagged ``is_active``, not what is served."""
    make_catalog(settings, database, 300, DIM)
    first = build_index(settings, database, BuildOptions(gpu="off"))
    second = build_index(settings, database, BuildOptions(gpu="off", publish=False, k=5))
    # The pointer moved but the bookkeeping did not (a crash before the commit, a manual fix).
    set_current(settings, second.version)
    report = catalog_status(settings, database)["active_index"]
    assert report["version"] == second.version and report["recorded"]
    assert (report["count"], report["dim"], report["model_version"]) == (300, DIM, "m1")
    assert report["recall_at_10"] is None  # its gate measured recall@5
    with database.session() as session:
        version, row = active_index(session, settings)
        assert version == second.version and row is not None and row.version == second.version
        assert session.get(IndexBuild, first.version).is_active  # stale, and not consulted
    # what API workers read is the same
    loaded = load_active(settings)
    assert loaded is not None and loaded.version == second.version
    (settings.indexes_dir / "CURRENT").unlink()
    assert catalog_status(settings, database)["active_index"] is None
    # a served version the database has no record of is still reported
    set_current(settings, first.version)
    with database.session() as session:
        for row in session.scalars(select(IndexBuild)):
            session.delete(row)
    report = catalog_status(settings, database)["active_index"]
    assert report["version"] == first.version and not report["recorded"]
    assert report["count"] is None and report["path"] == str(first.directory)


def test_activation_makes_the_bookkeeping_follow_the_pointer(
    settings: Settings, database: Database
) -> None:
    make_catalog(settings, database, 300, DIM)
    first = build_index(settings, database, BuildOptions(gpu="off"))
    second = build_index(settings, database, BuildOptions(gpu="off", publish=False))
    activate_index(settings, database, second.version)
    with database.session() as session:
        flags = {row.version: row.is_active for row in session.scalars(select(IndexBuild))}
    assert flags == {first.version: False, second.version: True}
    assert read_pointer(settings) == second.version == current_version(settings)
    manifest = active_manifest(settings)
    assert manifest is not None and manifest.version == second.version


def test_a_candidate_refused_at_activation_leaves_nothing_behind(
    settings: Settings, database: Database
) -> None:
    """The lifecycle's last steps: a written version that activation refuses is removed."""
    make_catalog(settings, database, 300, DIM)
    served = build_index(settings, database, BuildOptions(gpu="off"))
    keys = np.arange(10_000, 10_100, dtype=np.int64)
    with pytest.raises(IndexActivationError, match="ghost is not registered") as refused:
        build_from_vectors(
            settings, database, "ghost", keys, clustered_vectors(100, DIM), BuildOptions(gpu="off")
        )
    assert current_version(settings) == served.version
    listing = {entry["model_version"]: entry for entry in list_indexes(settings, database)}
    ghost = listing["ghost"]
    assert ghost["status"] == "rejected" and not ghost["on_disk"]
    assert "not registered" in ghost["status_reason"]
    assert "stays active" in str(refused.value)


# -- the manifest ----------------------------------------------------------------------------
def _as_format_1(directory: Path, **extra: object) -> None:
    """Rewrite a manifest as format 1 wrote it (recall_at_10 + recall_k, two parent fields)."""
    path = directory / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["format"] = 1
    manifest["recall_at_10"] = manifest.pop("recall_at_k")
    manifest["recall_k"] = manifest.pop("k")
    for key in ("previous_version", "queries", "seed"):
        manifest.pop(key)
    manifest.update(extra)
    path.write_text(json.dumps(manifest))


def test_a_format_1_manifest_still_loads_and_updates_write_the_new_format(
    settings: Settings, database: Database
) -> None:
    ids, vectors = make_catalog(settings, database, 1200, DIM)
    built = build_index(
        settings, database, BuildOptions(kind="ivfflat", gpu="off", k=5, min_recall=0.9)
    )
    assert built.directory is not None
    _as_format_1(built.directory, parent_version="older", updated_from="older")
    old = read_manifest(built.directory)
    assert isinstance(old, IndexManifest) and old.format == 1
    assert (old.recall_at_k, old.k, old.previous_version) == (built.recall_at_k, 5, "older")
    assert old.queries is None and old.gate() == GateOptions(min_recall=0.9, k=5)
    loaded = load_active(settings)
    assert loaded is not None and loaded.manifest.k == 5
    _, found = loaded.search(vectors[:5], 1)
    assert np.array_equal(found[:, 0], ids[:5])
    assert {e["version"]: e for e in list_indexes(settings, database)}[built.version]["k"] == 5
    assert index_info(settings, database)["manifest"]["recall_at_k"] == built.recall_at_k

    set_status(database, ids[:10], VideoStatus.DELETED)
    result = update_index(settings, database)
    assert result.version is not None and result.k == 5
    new = json.loads((settings.indexes_dir / result.version / MANIFEST_FILE).read_text())
    assert new["format"] == FORMAT_VERSION and new["previous_version"] == built.version
    assert (new["k"], new["min_recall"], new["queries"]) == (5, 0.9, 1000)
    for key in ("recall_at_10", "recall_k", "parent_version", "updated_from"):
        assert key not in new
    # an old-format version can still be activated (rollback to it)
    activate_index(settings, database, built.version)
    assert current_version(settings) == built.version


def test_a_newer_manifest_format_is_refused_with_what_to_do(
    settings: Settings, database: Database
) -> None:
    make_catalog(settings, database, 300, DIM)
    built = build_index(settings, database, BuildOptions(gpu="off", publish=False))
    assert built.directory is not None
    path = built.directory / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["format"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match="upgrade recsys"):
        load_index(built.directory)
    manifest.update(format=FORMAT_VERSION, count="many")
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexLoadError, match="malformed"):
        read_manifest(built.directory)


def test_manifest_round_trips_through_json() -> None:
    manifest = IndexManifest(
        version="v1",
        model_version="m1",
        factory="Flat",
        count=3,
        dim=4,
        search_params={"nprobe": 2},
        k=7,
        recall_at_k=0.9,
        previous_version="v0",
    )
    data = json.loads(json.dumps(manifest.to_json()))
    assert IndexManifest.from_json({**data, "sha256": "x"}) == IndexManifest(
        **{**data, "sha256": "x"}
    )
    with pytest.raises(Exception, match="frozen|cannot assign"):
        manifest.k = 10  # type: ignore[misc]

"""A corrupt or inconsistent index is refused at load and at activate; the old one stays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from index import (
    BuildOptions,
    IndexActivationError,
    IndexLoadError,
    activate_index,
    build_index,
    current_version,
    load_active,
    load_index,
)
from index.manifest import INDEX_FILE, MANIFEST_FILE
from orchestration.cli.main import app
from recsys.db import Database
from recsys.settings import Settings
from tests.index.catalog import make_catalog, register_model


def _two_builds(settings: Settings, database: Database) -> tuple[str, Path]:
    """An active index and a second, unpublished one to tamper with."""
    make_catalog(settings, database, 400, 32)
    served = build_index(settings, database, BuildOptions(gpu="off"))
    spare = build_index(settings, database, BuildOptions(gpu="off", publish=False))
    assert spare.directory is not None
    return served.version, spare.directory


def _flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))


def _edit_manifest(directory: Path, **changes: object) -> None:
    path = directory / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_corrupt_file_is_refused_and_the_old_index_stays(
    settings: Settings, database: Database
) -> None:
    served, spare = _two_builds(settings, database)
    _flip_bytes(spare / INDEX_FILE)
    with pytest.raises(IndexLoadError, match="checksum"):
        load_index(spare)
    with pytest.raises(IndexActivationError, match=f"checksum.*{served} stays active"):
        activate_index(settings, database, spare.name)
    assert current_version(settings) == served
    loaded = load_active(settings)
    assert loaded is not None and loaded.version == served


def test_truncated_file_is_refused(settings: Settings, database: Database) -> None:
    served, spare = _two_builds(settings, database)
    path = spare / INDEX_FILE
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(IndexActivationError, match="checksum"):
        activate_index(settings, database, spare.name)
    # even with the checksum updated to match, faiss itself refuses the file
    from recsys.checksums import sha256_file

    _edit_manifest(spare, sha256=sha256_file(path))
    with pytest.raises(IndexLoadError, match="cannot read"):
        load_index(spare)
    assert current_version(settings) == served


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dim": 64}, "dimension"),
        ({"count": 5}, "holds 400 vectors"),
        ({"model_version": "m-unknown"}, "not registered"),
        ({"metric": "l2"}, "metric"),
    ],
)
def test_inconsistent_manifest_is_refused(
    settings: Settings, database: Database, changes: dict[str, object], message: str
) -> None:
    served, spare = _two_builds(settings, database)
    _edit_manifest(spare, **changes)
    with pytest.raises(IndexActivationError, match=message):
        activate_index(settings, database, spare.name)
    assert current_version(settings) == served


def test_model_version_mismatch_with_the_recorded_build(
    settings: Settings, database: Database
) -> None:
    served, spare = _two_builds(settings, database)
    register_model(database, "m2", 32)  # a real model, but not the one this build used
    _edit_manifest(spare, model_version="m2")
    with pytest.raises(IndexActivationError, match="disagrees with the recorded build"):
        activate_index(settings, database, spare.name)
    assert current_version(settings) == served


def test_unknown_or_missing_versions(settings: Settings, database: Database) -> None:
    served, spare = _two_builds(settings, database)
    with pytest.raises(IndexActivationError, match="does not exist"):
        activate_index(settings, database, "20990101T000000.000000Z-nope")
    with pytest.raises(IndexActivationError, match="invalid"):
        activate_index(settings, database, "../escape")
    (spare / MANIFEST_FILE).unlink()
    with pytest.raises(IndexActivationError, match="manifest"):
        activate_index(settings, database, spare.name)
    assert current_version(settings) == served


def test_load_active_refuses_a_corrupt_served_file(settings: Settings, database: Database) -> None:
    make_catalog(settings, database, 200, 32)
    result = build_index(settings, database, BuildOptions(gpu="off"))
    assert result.directory is not None
    _flip_bytes(result.directory / INDEX_FILE)
    with pytest.raises(IndexLoadError, match="checksum"):
        load_active(settings)


def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    env = {"RECSYS_DATABASE_URL": settings.database_url or "", "COLUMNS": "200"}
    result = CliRunner().invoke(app, [*args, "--home", str(settings.home)], env=env)
    return result.exit_code, result.output


def test_cli_build_corrupt_activate_keeps_the_old_index(
    settings: Settings, database: Database
) -> None:
    make_catalog(settings, database, 600, 32)
    code, output = _cli(settings, "index", "build", "--kind", "ivfflat", "--gpu", "off")
    assert code == 0, output
    first = json.loads(output[output.index("{") :])
    assert first["published"] and first["recall_at_k"] >= 0.95 and first["k"] == 10
    code, output = _cli(settings, "index", "build", "--no-publish", "--gpu", "off")
    assert code == 0, output
    second = json.loads(output[output.index("{") :])
    assert current_version(settings) == first["version"]

    _flip_bytes(Path(second["directory"]) / INDEX_FILE)
    code, output = _cli(settings, "index", "activate", second["version"])
    assert code == 1
    assert "checksum" in output and f"{first['version']} stays active" in " ".join(output.split())
    assert current_version(settings) == first["version"]

    code, output = _cli(settings, "index", "info", second["version"])
    assert code == 0 and '"checksum_ok": false' in output
    code, output = _cli(settings, "index", "list")
    assert code == 0
    listing = json.loads(output[output.index("[") :])
    assert [entry["active"] for entry in listing] == [False, True]
    code, output = _cli(settings, "index", "update")
    assert code == 0 and "up to date" in output

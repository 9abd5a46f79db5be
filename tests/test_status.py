"""``recsys status``: counts by status, per-model embedding state, active model and index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import Database
from recsys.db.models import IndexBuild, ModelVersion, Video
from recsys.index_pointer import write_pointer
from recsys.ingest import ingest_paths
from recsys.settings import Settings
from recsys.status import catalog_status
from recsys.store.embeddings import EmbeddingStore
from recsys.synth import write_test_video


def test_empty_catalog(settings: Settings, database: Database) -> None:
    report = catalog_status(settings, database)
    assert report["videos"] == {"total": 0, "ready": 0, "stale": 0, "failed": 0, "deleted": 0}
    assert report["models"] == [] and report["active_model"] is None
    assert report["active_index"] is None


def test_counts_models_and_index(settings: Settings, database: Database, tmp_path: Path) -> None:
    paths = [write_test_video(tmp_path / f"v{i}.mp4", seconds=0.5, seed=i) for i in range(4)]
    (tmp_path / "broken.mp4").write_bytes(b"")
    ingest_paths(settings, database, [*paths, tmp_path / "broken.mp4"])
    with database.session() as session:
        session.add(
            ModelVersion(
                version="m1",
                fusion="late",
                extractor="content",
                extractor_version="1",
                dim=4,
                path=str(settings.models_dir / "m1"),
                is_active=True,
            )
        )
        session.add(
            IndexBuild(
                version="i1",
                model_version="m1",
                factory="Flat",
                count=2,
                dim=4,
                path=str(settings.indexes_dir / "i1"),
                recall_at_10=1.0,
                is_active=True,
                status="published",
            )
        )
    write_pointer(settings, "i1")  # what is served is what CURRENT names; the row adds details
    with database.session() as session:
        videos = session.scalars(
            select(Video).where(Video.status == "ready").order_by(Video.id)
        ).all()
        embedded = videos[:2]
        EmbeddingStore(settings).write_batch(
            session,
            "m1",
            [v.id for v in embedded],
            [v.content_hash or "" for v in embedded],
            "1",
            np.eye(2, 4, dtype=np.float32),
        )
        videos[3].status = "deleted"
    report = catalog_status(settings, database)
    assert report["videos"] == {"total": 5, "ready": 3, "stale": 0, "failed": 1, "deleted": 1}
    assert report["active_model"] == "m1"
    (model,) = report["models"]
    assert model["model_version"] == "m1" and model["is_active"]
    assert (model["embedded"], model["outdated"], model["missing"], model["failed"]) == (2, 0, 1, 1)
    assert "stale" not in model  # "stale" is a video status; embeddings are "outdated"
    assert report["active_index"]["version"] == "i1"
    assert report["active_index"]["model_version"] == "m1"

    home = ["--home", str(settings.resolved_home)]
    env = {"RECSYS_DATABASE_URL": settings.database_url or ""}
    result = CliRunner().invoke(app, ["status", "--json", *home], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["videos"]["total"] == 5
    table = CliRunner().invoke(app, ["status", *home], env=env)
    assert table.exit_code == 0 and "m1" in table.stdout and "i1" in table.stdout


def test_home_flags_beat_the_environment(tmp_path: Path) -> None:
    runner = CliRunner(env={"RECSYS_HOME": str(tmp_path / "env"), "RECSYS_DATABASE_URL": ""})
    for args, expected in (
        (["status", "--json"], "env"),
        (["--home", str(tmp_path / "global"), "status", "--json"], "global"),
        (["status", "--json", "--home", str(tmp_path / "command")], "command"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["home"] == str((tmp_path / expected).resolve())


@pytest.mark.parametrize("command", [["status"], ["models", "list"], ["index", "list"]])
def test_read_only_commands_where_nothing_was_ingested_create_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("RECSYS_HOME", "RECSYS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    assert "nothing was ingested" in " ".join(result.output.split())
    assert list(tmp_path.iterdir()) == []
    elsewhere = tmp_path / "home"
    result = CliRunner().invoke(app, [*command, "--home", str(elsewhere)])
    assert result.exit_code == 1 and not elsewhere.exists()

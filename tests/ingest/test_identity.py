"""The identity of a file: one video per content (copies are aliases), ids that do not depend
on how the file was found, hidden files skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import Database
from recsys.db.models import Video, VideoAlias
from recsys.ingest import ingest_paths
from recsys.settings import Settings
from recsys.synth import write_test_video

SMALL = {"seconds": 0.5, "width": 32, "height": 24, "fps": 4.0}


def _videos(database: Database) -> dict[str, str]:
    with database.session() as session:
        return {v.video_id: v.uri for v in session.scalars(select(Video))}


def _aliases(database: Database) -> dict[str, str]:
    """{alias uri: the video_id it is a copy of}."""
    with database.session() as session:
        rows = session.execute(
            select(VideoAlias.uri, Video.video_id).join(Video, Video.id == VideoAlias.video)
        )
        return {uri: video_id for uri, video_id in rows}


def test_a_copy_is_recorded_as_an_alias_unless_copies_are_allowed(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    original = write_test_video(tmp_path / "clips" / "a.mp4", seed=1, **SMALL)
    copy = tmp_path / "elsewhere" / "b.mp4"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    first = ingest_paths(settings, database, [tmp_path / "clips"])
    assert first.counts()["added"] == 1
    second = ingest_paths(settings, database, [copy])
    (item,) = second.items
    assert second.ok and item.outcome == "alias" and item.video_id == "a"
    assert item.reason is not None and "--allow-copies" in item.reason
    assert set(_videos(database)) == {"a"}
    assert _aliases(database) == {str(copy.resolve()): "a"}
    again = ingest_paths(settings, database, [copy])  # the same alias again: nothing new
    assert [i.outcome for i in again.items] == ["alias"] and len(_aliases(database)) == 1
    kept = ingest_paths(settings, database, [copy], allow_copies=True)
    assert [i.outcome for i in kept.items] == ["added"]
    assert set(_videos(database)) == {"a", "b"}


def test_copies_in_one_folder_are_one_video(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "library"
    write_test_video(folder / "one.mp4", seed=3, **SMALL)
    shutil.copyfile(folder / "one.mp4", folder / "two.mp4")
    report = ingest_paths(settings, database, [folder])
    assert sorted(i.outcome for i in report.items) == ["added", "alias"]
    assert set(_videos(database)) == {"one"}
    assert _aliases(database) == {str((folder / "two.mp4").resolve()): "one"}


def test_ids_do_not_depend_on_how_the_file_was_found(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    library = tmp_path / "library"
    clip = write_test_video(library / "clips" / "9e77.mp4", seed=5, **SMALL)
    beside = library / "manifest.csv"
    beside.write_text("file,title\nclips/9e77.mp4,A clip\n", encoding="utf-8")
    away = tmp_path / "lists" / "manifest.csv"
    away.parent.mkdir()
    away.write_text(f"file\n{clip.resolve()}\n", encoding="utf-8")
    found = ingest_paths(settings, database, [library])
    assert [(i.video_id, i.outcome) for i in found.items] == [("clips/9e77", "added")]
    for how in (beside, away, clip):
        report = ingest_paths(settings, database, [how])
        assert [i.video_id for i in report.items] == ["clips/9e77"], how
        assert report.ok and report.items[0].outcome in {"unchanged", "updated"}, how
    assert set(_videos(database)) == {"clips/9e77"}


def test_hidden_files_and_folders_are_skipped(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "library"
    write_test_video(folder / "shown.mp4", seed=7, **SMALL)
    write_test_video(folder / ".hidden.mp4", seed=8, **SMALL)
    write_test_video(folder / ".cache" / "inside.mp4", seed=9, **SMALL)
    write_test_video(folder / "sub" / "._resource.mp4", seed=10, **SMALL)
    report = ingest_paths(settings, database, [folder])
    assert [i.video_id for i in report.items] == ["shown"]
    assert set(_videos(database)) == {"shown"}


def test_cli_allow_copies(settings: Settings, database: Database, tmp_path: Path) -> None:
    original = write_test_video(tmp_path / "a.mp4", seed=11, **SMALL)
    copy = tmp_path / "b.mp4"
    shutil.copyfile(original, copy)
    env = {"RECSYS_DATABASE_URL": settings.database_url or "", "COLUMNS": "200"}
    home = ["--home", str(settings.resolved_home)]
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(original), str(copy), *home], env=env)
    assert first.exit_code == 0, first.output
    assert "alias" in first.output and "--allow-copies" in " ".join(first.output.split())
    assert set(_videos(database)) == {"a"}
    kept = runner.invoke(app, ["ingest", str(copy), "--allow-copies", *home], env=env)
    assert kept.exit_code == 0, kept.output
    assert set(_videos(database)) == {"a", "b"}

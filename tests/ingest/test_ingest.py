"""Ingest on SQLite and PostgreSQL: good corpora, every bad input, manifests, related pairs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys import media
from recsys.db import Database
from recsys.db.models import RelatedPair, Video
from recsys.ingest import ingest_paths, load_related
from recsys.settings import Settings
from recsys.synth import generate_corpus, write_bad_inputs, write_test_video
from recsys.synth.badfiles import AWKWARD, BROKEN

SMALL = {"width": 32, "height": 24, "fps": 4.0}


def _videos(database: Database) -> dict[str, Video]:
    with database.session() as session:
        return {v.video_id: v for v in session.scalars(select(Video))}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return generate_corpus(tmp_path_factory.mktemp("corpus"), 8, 4, 1.0, 2, **SMALL)


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bad")
    write_bad_inputs(directory)
    return directory


def test_manifest_ingest_registers_and_is_idempotent(
    settings: Settings, database: Database, corpus
) -> None:  # type: ignore[no-untyped-def]
    report = ingest_paths(settings, database, [corpus.manifest])
    assert report.ok and report.counts()["added"] == 8
    videos = _videos(database)
    assert set(videos) == {v.video_id for v in corpus.videos}
    for entry in corpus.videos:
        video = videos[entry.video_id]
        assert video.status == "ready" and video.status_reason is None
        assert video.category == entry.category and video.title == entry.title
        assert video.uri == str((corpus.out_dir / entry.file).resolve())
        assert video.content_hash == media.content_hash(video.uri)
        assert video.has_audio == entry.has_audio
        assert (video.width, video.height, video.video_codec) == (32, 24, "h264")
        assert video.duration_s == pytest.approx(1.0, abs=0.3)
        assert video.thumbnail_path and (settings.thumbnails_dir / video.thumbnail_path).is_file()
    again = ingest_paths(settings, database, [corpus.manifest])
    assert again.ok and again.counts()["unchanged"] == 8
    after = _videos(database)
    assert {k: (v.id, v.updated_at) for k, v in after.items()} == {
        k: (v.id, v.updated_at) for k, v in videos.items()
    }
    gone = corpus.videos[0]
    with database.session() as session:
        row = session.scalars(select(Video).where(Video.video_id == gone.video_id)).one()
        row.status = "deleted"
    third = ingest_paths(settings, database, [corpus.manifest])
    skipped = [item for item in third.items if item.video_id == gone.video_id]
    assert [item.outcome for item in skipped] == ["skipped"]
    assert _videos(database)[gone.video_id].content_hash == videos[gone.video_id].content_hash


def test_changed_file_gets_new_hash_and_stale(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    path = write_test_video(tmp_path / "clip.mp4", seconds=1.0, seed=1)
    assert ingest_paths(settings, database, [path]).counts()["added"] == 1
    old = _videos(database)["clip"]
    write_test_video(path, seconds=2.0, seed=2, width=48, height=32)
    report = ingest_paths(settings, database, [path])
    assert report.counts()["stale"] == 1 and report.ok
    new = _videos(database)["clip"]
    assert new.id == old.id
    assert new.content_hash != old.content_hash
    assert new.content_hash == media.content_hash(path)
    assert new.status == "stale" and (new.width, new.height) == (48, 32)
    assert new.thumbnail_path != old.thumbnail_path


def test_every_bad_input_fails_alone(
    settings: Settings, database: Database, bad_dir: Path, corpus
) -> None:  # type: ignore[no-untyped-def]
    missing = bad_dir / "does_not_exist.mp4"
    paths = [bad_dir, corpus.out_dir / corpus.videos[0].file, missing]
    report = ingest_paths(settings, database, paths)
    videos = _videos(database)
    for name, word in BROKEN.items():
        video = videos[name]
        assert video.status == "failed", name
        assert word in (video.status_reason or "").lower(), (name, video.status_reason)
        assert video.uri == str(bad_dir / f"{name}.mp4")
    for name in AWKWARD:
        assert videos[name].status == "ready", (name, videos[name].status_reason)
        assert videos[name].thumbnail_path
    assert videos["rotated"].rotation == 90
    from PIL import Image

    with Image.open(settings.thumbnails_dir / videos["rotated"].thumbnail_path) as thumb:
        assert thumb.size == (48, 64)  # a 64x48 frame shown rotated by 90 degrees
    assert videos["video_only"].has_audio is False
    assert (videos["large"].width, videos["large"].height) == (3840, 2160)
    assert videos["does_not_exist"].status == "failed"
    assert "file not found" in (videos["does_not_exist"].status_reason or "")
    assert videos[corpus.videos[0].video_id].status == "ready"
    assert report.counts()["failed"] == len(BROKEN) + 1
    assert {i.video_id for i in report.failures} == set(BROKEN) | {"does_not_exist"}
    # Re-running is safe: same outcome, nothing duplicated, valid videos untouched.
    again = ingest_paths(settings, database, paths)
    assert again.counts()["failed"] == len(BROKEN) + 1
    assert again.counts()["unchanged"] == len(AWKWARD) + 1
    assert len(_videos(database)) == len(videos)


def _write_csv(path: Path, text: bytes) -> Path:
    path.write_bytes(text)
    return path


def test_manifest_problems_are_reported_per_row(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    (folder / "clips").mkdir(parents=True)
    for name in ("a", "b", "c", "d"):
        write_test_video(folder / "clips" / f"{name}.mp4", seconds=0.5, seed=ord(name))
    manifest = _write_csv(
        folder / "manifest.csv",
        b"file,video_id,title,category,tags\n"
        b"clips/a.mp4,vid-a,Alpha,cats,x|y\n"
        b"clips/b.mp4,vid-a,Duplicate,cats,\n"  # duplicate id: first row wins
        b"clips/c.mp4,vid-c,Caf\xe9 latin-1,drinks,\n"  # not UTF-8
        b",vid-e,No file,none,\n"  # empty file value
        b"clips/missing.mp4,vid-m,Missing,none,\n"
        b"clips/d.mp4,,,dogs,\n",  # id from its path under the manifest's folder
    )
    no_columns = _write_csv(tmp_path / "bad.csv", b"name,title\nx,y\n")
    report = ingest_paths(settings, database, [manifest, no_columns])
    reasons = {(i.source.rsplit(" ", 1)[-1], i.outcome): i.reason for i in report.items}
    assert "duplicate video_id 'vid-a'" in reasons[("3", "failed")]
    assert "not valid UTF-8" in reasons[("4", "failed")]
    assert "empty 'file'" in reasons[("5", "failed")]
    assert any("no 'file' or 'uri' column" in (i.reason or "") for i in report.failures)
    videos = _videos(database)
    assert set(videos) == {"vid-a", "vid-m", "clips/d"}
    assert videos["vid-a"].title == "Alpha" and videos["vid-a"].tags == ["x", "y"]
    assert videos["vid-a"].status == "ready" and videos["clips/d"].category == "dogs"
    assert videos["vid-m"].status == "failed" and "not found" in videos["vid-m"].status_reason
    assert not report.ok
    # Fixing the file and re-running picks the video up; the rest is unchanged.
    write_test_video(folder / "clips" / "missing.mp4", seconds=0.5)
    report = ingest_paths(settings, database, [manifest])
    assert _videos(database)["vid-m"].status == "ready"
    assert report.counts()["unchanged"] == 2


def test_manifest_uri_column_and_metadata_update(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    clip = write_test_video(tmp_path / "x.mp4", seconds=0.5)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"uri,video_id,category\n{clip.as_uri()},x1,old\n", encoding="utf-8")
    assert ingest_paths(settings, database, [manifest]).counts()["added"] == 1
    manifest.write_text(f"uri,video_id,category\n{clip.as_uri()},x1,new\n", encoding="utf-8")
    report = ingest_paths(settings, database, [manifest])
    assert report.counts()["updated"] == 1
    assert _videos(database)["x1"].category == "new"
    manifest.write_text("uri,video_id\nhttps://example.com/v.mp4,remote\n", encoding="utf-8")
    report = ingest_paths(settings, database, [manifest])
    assert "not supported" in (report.failures[0].reason or "")


def test_related_pairs_load_idempotently(
    settings: Settings, database: Database, corpus, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ingest_paths(settings, database, [corpus.manifest])
    ids = [v.video_id for v in corpus.videos]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "video_a,video_b,weight\n"
        f"{ids[0]},{ids[1]},2\n"
        f"{ids[1]},{ids[0]},3\n"  # same undirected pair: summed
        f"{ids[2]},{ids[3]},1.5\n"
        f"{ids[2]},ghost,1\n"
        f"{ids[4]},{ids[4]},1\n"
        f"{ids[5]},{ids[6]},many\n",
        encoding="utf-8",
    )
    first = load_related(settings, database, pairs)
    assert first.pairs == 2 and first.inserted == 2
    assert first.unknown_ids == ["ghost"] and first.self_pairs == 1
    assert len(first.bad_rows) == 1 and "not a number" in first.bad_rows[0]
    second = load_related(settings, database, pairs)
    assert second.inserted == 0 and second.unchanged == 2
    with database.session() as session:
        stored = session.scalars(select(RelatedPair).order_by(RelatedPair.weight)).all()
        assert [p.weight for p in stored] == [1.5, 5.0]
        assert {p.source for p in stored} == {"cowatch"}
    other = load_related(settings, database, pairs, source="curated")
    assert other.inserted == 2
    cowatch = load_related(settings, database, corpus.cowatch)
    assert cowatch.ok and cowatch.pairs == len(corpus.pairs)


def test_missing_columns_in_related_csv(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    bad = tmp_path / "r.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    report = load_related(settings, database, bad)
    assert not report.ok and "missing column" in report.bad_rows[0]


def test_unreadable_related_csv_is_reported_not_raised(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.csv"
    huge.write_text("video_a,video_b\n" + "x" * 200_000 + ",y\n", encoding="utf-8")
    report = load_related(settings, database, huge)  # a field over csv's limit
    assert not report.ok and "CSV syntax error" in report.bad_rows[0]
    missing = load_related(settings, database, tmp_path / "absent.csv")
    assert not missing.ok and "file not found" in missing.bad_rows[0]


def test_cli_ingest_status_and_exit_codes(
    settings: Settings, database: Database, corpus, bad_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = {"RECSYS_DATABASE_URL": settings.database_url or ""}
    home = ["--home", str(settings.resolved_home)]
    ok = runner.invoke(
        app, ["ingest", str(corpus.manifest), "--related", str(corpus.cowatch), *home], env=env
    )
    assert ok.exit_code == 0, ok.output
    status = runner.invoke(app, ["status", "--json", *home], env=env)
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["videos"]["total"] == 8
    bad = runner.invoke(app, ["ingest", str(bad_dir / "zero_byte.mp4"), "--json", *home], env=env)
    assert bad.exit_code == 1
    payload = json.loads(bad.stdout)
    assert payload["ingest"]["counts"]["failed"] == 1
    assert "empty file" in payload["ingest"]["items"][0]["reason"]


@pytest.mark.realdata
def test_real_clips_manifest(sqlite_settings: Settings, real_av_dir: Path) -> None:
    from recsys.db import open_database

    database = open_database(sqlite_settings)
    try:
        report = ingest_paths(sqlite_settings, database, [real_av_dir / "manifest.csv"])
        assert report.ok, report.failures
        with (real_av_dir / "manifest.csv").open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        videos = _videos(database)
        assert len(videos) == len(rows) == 37
        for row in rows:
            # the id is the path under the manifest's folder, as a scan of that folder gives
            video = videos[Path(row["file"]).with_suffix("").as_posix()]
            assert video.category == row["category"] and video.status == "ready"
            assert video.has_audio == (row["has_audio"] == "True")
    finally:
        database.dispose()


def test_cli_reports_every_bad_input(
    settings: Settings, database: Database, bad_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    env = {"RECSYS_DATABASE_URL": settings.database_url or ""}
    home = ["--home", str(settings.resolved_home)]
    manifest = tmp_path / "m.csv"
    manifest.write_bytes(
        b"file,video_id\n"
        + f"{bad_dir / 'one_frame.mp4'},ok1\n".encode()
        + f"{bad_dir / 'tiny_2x2.mp4'},ok1\n".encode()
        + b"caf\xe9.mp4,latin\n"
    )
    no_file_column = tmp_path / "cols.csv"
    no_file_column.write_text("path,video_id\nx.mp4,x\n", encoding="utf-8")
    # ok1 names a scanned file again: registered as a video of its own only with --allow-copies
    args = [
        "ingest",
        str(bad_dir),
        str(manifest),
        str(no_file_column),
        "--allow-copies",
        "--json",
        *home,
    ]
    for _run in range(2):  # re-running is safe and reports the same failures
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 1, result.output
        items = json.loads(result.stdout)["ingest"]["items"]
        failed = {(i["video_id"], i["reason"]) for i in items if i["outcome"] == "failed"}
        reasons = " | ".join(str(r) for _, r in failed)
        for name, word in BROKEN.items():
            assert any(v == name and word in str(r).lower() for v, r in failed), name
        assert "duplicate video_id 'ok1'" in reasons
        assert "not valid UTF-8" in reasons
        assert "no 'file' or 'uri' column" in reasons
    videos = _videos(database)
    assert all(videos[name].status == "ready" for name in AWKWARD)
    assert videos["ok1"].status == "ready" and videos["ok1"].uri.endswith("one_frame.mp4")
    assert "latin" not in videos


def test_directory_ids_are_relative_paths(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    root = tmp_path / "library"
    write_test_video(root / "a" / "clip.mp4", seconds=0.5, seed=1)
    write_test_video(root / "b" / "clip.MP4", seconds=0.5, seed=2)
    (root / "notes.txt").write_text("not a video", encoding="utf-8")
    report = ingest_paths(settings, database, [root])
    assert report.ok and report.counts()["added"] == 2
    assert set(_videos(database)) == {"a/clip", "b/clip"}


def test_cli_related_with_unknown_ids_fails(
    settings: Settings, database: Database, corpus, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ingest_paths(settings, database, [corpus.manifest])
    pairs = tmp_path / "p.csv"
    first = corpus.videos[0].video_id
    pairs.write_text(f"video_a,video_b\n{first},nobody\n", encoding="utf-8")
    env = {"RECSYS_DATABASE_URL": settings.database_url or ""}
    result = CliRunner().invoke(
        app, ["ingest", "--related", str(pairs), "--home", str(settings.resolved_home)], env=env
    )
    assert result.exit_code == 1
    assert "nobody" in result.output

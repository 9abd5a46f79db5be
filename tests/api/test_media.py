"""GET /media and /thumbnails serve only servable videos, only from the media roots (issue 12,
item 1), for every id ingest assigns (item 2); on SQLite and PostgreSQL, over a real ingest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from api.factory import create_app
from recsys.db import Database
from recsys.db.models import MediaRoot, Video, VideoStatus
from recsys.ingest import IngestReport, ingest_paths
from recsys.settings import Settings, load_settings
from recsys.synth import write_test_video

SMALL = {"seconds": 0.5, "width": 32, "height": 24}


@dataclass
class Library:
    folder: Path  # a scanned folder: clip.mp4, sub/deep.mp4, leak*.mp4 symlinks
    manifest: Path  # rows: /etc/passwd, a clip beside the manifest, one outside every root
    outside: Path  # a real video outside every root
    report: IngestReport


def _reasons(report: IngestReport) -> dict[str | None, str]:
    by_id = {item.video_id: item.reason or "" for item in report.items}
    by_source: dict[str | None, str] = {
        Path(item.source.split(" row ")[0]).name: item.reason or "" for item in report.items
    }
    return {**by_source, **by_id}


def _database_file(settings: Settings) -> Path:
    """The SQLite database, or on PostgreSQL another state file of the home (a model file)."""
    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    state = settings.models_dir / "m1" / "model.pt"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(b"model weights")
    return state


@pytest.fixture
def library(settings: Settings, database: Database, tmp_path: Path) -> Library:
    folder = tmp_path / "library"
    write_test_video(folder / "clip.mp4", seed=1, **SMALL)
    write_test_video(folder / "sub" / "deep.mp4", seed=2, **SMALL)
    outside = write_test_video(tmp_path / "elsewhere" / "private.mp4", seed=3, **SMALL)
    (folder / "leak-db.mp4").symlink_to(_database_file(settings))
    (folder / "leak-video.mp4").symlink_to(outside)
    manifests = tmp_path / "manifests"
    write_test_video(manifests / "listed.mp4", seed=4, **SMALL)
    manifest = manifests / "m.csv"
    manifest.write_text(
        f"file,video_id\n/etc/passwd,passwd\nlisted.mp4,listed\n{outside},private\n",
        encoding="utf-8",
    )
    report = ingest_paths(settings, database, [folder, manifest])
    return Library(folder, manifest, outside, report)


@pytest.fixture
def media_client(settings: Settings, database: Database, library: Library) -> Iterator[TestClient]:
    with TestClient(create_app(settings, database=database), raise_server_exceptions=False) as c:
        yield c


def _status(database: Database, video_id: str) -> str | None:
    with database.session() as session:
        return session.scalar(select(Video.status).where(Video.video_id == video_id))


def _force_ready(database: Database, *video_ids: str) -> None:
    """What an old catalog or a hand-edited row could hold: defence in depth is tested."""
    with database.session() as session:
        session.execute(update(Video).where(Video.video_id.in_(video_ids)).values(status="ready"))


def test_a_manifest_row_naming_a_system_file_is_never_served(
    media_client: TestClient, library: Library, database: Database
) -> None:
    reason = _reasons(library.report)["passwd"]
    assert "outside the media roots" in reason, reason
    assert _status(database, "passwd") == VideoStatus.FAILED
    response = media_client.get("/media/passwd")
    assert response.status_code == 404
    assert "root:" not in response.text and "/etc/passwd" not in response.text
    _force_ready(database, "passwd")
    assert media_client.get("/media/passwd").status_code == 404  # outside every root


def test_a_symlink_out_of_the_scanned_folder_is_refused_and_never_served(
    media_client: TestClient, library: Library, database: Database, settings: Settings
) -> None:
    reasons = _reasons(library.report)
    for video_id in ("leak-db", "leak-video"):
        assert "outside the scanned folder" in reasons[video_id], reasons[video_id]
        assert _status(database, video_id) == VideoStatus.FAILED
        assert media_client.get(f"/media/{video_id}").status_code == 404
    _force_ready(database, "leak-db", "leak-video")
    for video_id in ("leak-db", "leak-video"):
        response = media_client.get(f"/media/{video_id}")
        assert response.status_code == 404, video_id
        assert str(settings.resolved_home) not in response.text


def test_a_manifest_row_outside_the_roots_is_refused(
    media_client: TestClient, library: Library, database: Database
) -> None:
    reason = _reasons(library.report)["private"]
    assert "outside the media roots" in reason and "RECSYS_MEDIA_ROOTS" in reason
    _force_ready(database, "private")
    assert media_client.get("/media/private").status_code == 404


def test_ingested_videos_stream_with_range_requests(
    media_client: TestClient, library: Library
) -> None:
    counts = library.report.counts()
    assert counts["added"] == 3 and counts["failed"] == 4, library.report.as_dict()
    for video_id, path in (
        ("clip", library.folder / "clip.mp4"),
        ("sub/deep", library.folder / "sub" / "deep.mp4"),  # a sub-folder id (item 2)
        ("listed", library.manifest.parent / "listed.mp4"),
    ):
        data = path.read_bytes()
        full = media_client.get(f"/media/{video_id}")
        assert full.status_code == 200 and full.content == data, video_id
        assert full.headers["content-type"] == "video/mp4"
        part = media_client.get(f"/media/{video_id}", headers={"Range": "bytes=10-99"})
        assert part.status_code == 206 and part.content == data[10:100]
        thumb = media_client.get(f"/thumbnails/{video_id}.jpg")
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8", video_id
    assert media_client.get("/media/sub%2Fdeep").status_code == 200


def test_failed_and_deleted_videos_serve_no_file_or_thumbnail(
    media_client: TestClient, database: Database
) -> None:
    for status in ("failed", "deleted"):
        with database.session() as session:
            session.execute(update(Video).where(Video.video_id == "clip").values(status=status))
        assert media_client.get("/media/clip").status_code == 404, status
        assert media_client.get("/thumbnails/clip.jpg").status_code == 404, status


def test_a_file_swapped_for_a_symlink_after_ingest_is_not_served(
    media_client: TestClient, library: Library, settings: Settings
) -> None:
    clip = library.folder / "clip.mp4"
    assert media_client.get("/media/clip").status_code == 200
    clip.unlink()
    clip.symlink_to(_database_file(settings))
    assert media_client.get("/media/clip").status_code == 404
    clip.unlink()
    clip.symlink_to(library.outside)
    assert media_client.get("/media/clip").status_code == 404
    clip.unlink()
    clip.symlink_to(library.folder / "sub" / "deep.mp4")  # inside the root: fine
    assert media_client.get("/media/clip").status_code == 200


def test_thumbnails_are_served_only_from_the_thumbnails_folder(
    media_client: TestClient, database: Database, settings: Settings
) -> None:
    for stored in (
        "/etc/passwd",
        "../recsys.db",
        str(settings.models_dir),
        "../../library/clip.mp4",
    ):
        with database.session() as session:
            session.execute(
                update(Video).where(Video.video_id == "clip").values(thumbnail_path=stored)
            )
        assert media_client.get("/thumbnails/clip.jpg").status_code == 404, stored


def test_media_roots_setting_replaces_the_recorded_roots(
    settings: Settings, database: Database, library: Library, tmp_path: Path
) -> None:
    with database.session() as session:
        recorded = set(session.scalars(select(MediaRoot.path)))
    assert recorded == {str(library.folder.resolve()), str(library.manifest.parent.resolve())}
    elsewhere = library.outside.parent.resolve()
    configured = load_settings(
        settings.resolved_home, database_url=settings.database_url, media_roots=[elsewhere]
    )
    assert configured.resolved_media_roots == [elsewhere]
    # Ingest now takes the row outside the manifest's folder...
    again = ingest_paths(configured, database, [library.manifest])
    assert "outside the media roots (RECSYS_MEDIA_ROOTS)" in _reasons(again)["passwd"]
    assert _status(database, "private") == VideoStatus.READY
    # ...and the server serves from the configured roots only.
    with TestClient(create_app(configured, database=database)) as client:
        assert client.get("/media/private").status_code == 200
        assert client.get("/media/clip").status_code == 404


def test_an_upgraded_catalog_keeps_serving_its_videos(tmp_path: Path) -> None:
    """Migration 0003 records the folder of every servable video of an existing catalog."""
    from sqlalchemy import text

    from recsys.db import open_database
    from recsys.db.session import make_engine, upgrade_schema

    clip = write_test_video(tmp_path / "old" / "clip.mp4", **SMALL)
    home = tmp_path / "home"
    home.mkdir()
    engine = make_engine(f"sqlite:///{home / 'recsys.db'}")
    upgrade_schema(engine, "0002")
    with engine.begin() as connection:
        for video_id, uri, status in (
            ("clip", str(clip), "ready"),
            ("passwd", "/etc/passwd", "failed"),
            ("remote", "https://example.com/v.mp4", "ready"),
        ):
            connection.execute(
                text(
                    "INSERT INTO videos (video_id, uri, tags, status, created_at, updated_at) "
                    "VALUES (:v, :u, '[]', :s, '2026-01-01', '2026-01-01')"
                ),
                {"v": video_id, "u": uri, "s": status},
            )
    engine.dispose()
    settings = load_settings(home)
    database = open_database(settings)
    try:
        with database.session() as session:
            assert set(session.scalars(select(MediaRoot.path))) == {str(clip.parent.resolve())}
        with TestClient(create_app(settings, database=database)) as client:
            assert client.get("/media/clip").status_code == 200
            _force_ready(database, "passwd")
            assert client.get("/media/passwd").status_code == 404
    finally:
        database.dispose()


def test_ingest_records_roots_only_for_registered_inputs(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.mp4").write_bytes(b"not a video")
    report = ingest_paths(settings, database, [broken])
    assert report.counts()["failed"] == 1
    with database.session() as session:
        assert list(session.scalars(select(MediaRoot.path))) == []
    write_test_video(broken / "y.mp4", **SMALL)
    assert ingest_paths(settings, database, [broken]).counts()["added"] == 1
    with database.session() as session:
        assert list(session.scalars(select(MediaRoot.path))) == [os.path.realpath(broken)]

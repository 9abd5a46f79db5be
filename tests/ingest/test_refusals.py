"""What ingest refuses before it registers anything (issue 12): ids the API could never serve
(item 2), special files (item 8), crafted media (item 7); on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import Video
from recsys.ids import unroutable_reason
from recsys.ingest import ingest_paths
from recsys.settings import Settings, load_settings
from recsys.synth import write_test_video
from tests.media.crafted import write_concat_list, write_hls_playlist, write_huge_declared_avi

SMALL = {"seconds": 0.5, "width": 32, "height": 24}


def _videos(database: Database) -> dict[str, Video]:
    with database.session() as session:
        return {v.video_id: v for v in session.scalars(select(Video))}


# ------------------------------------------------------------------- item 2: routable ids


def test_manifest_ids_the_api_could_never_serve_are_refused(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    clip = write_test_video(tmp_path / "clip.mp4", **SMALL)
    bad_ids = ["a/../b", "a//b", "./x", "/lead", "trail/", "tab\tid", "x" * 256]
    rows = [f'{clip.name},"{video_id}"' for video_id in bad_ids]
    rows.append(f"{clip.name},sub/good id?#%")  # odd but routable: URL-encoded
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,video_id\n" + "\n".join(rows) + "\n", encoding="utf-8")
    report = ingest_paths(settings, database, [manifest])
    failures = [item for item in report.failures]
    assert len(failures) == len(bad_ids), report.as_dict()
    for item in failures:
        assert "could never serve it" in (item.reason or "")
        assert "give the row a video_id" in (item.reason or "")
        assert item.video_id is None and item.source.startswith(str(manifest))
    assert set(_videos(database)) == {"sub/good id?#%"}


def test_every_id_directory_ingest_assigns_is_routable(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    root = tmp_path / "library"
    names = [
        "sub/clip.mp4",
        "a b/c#d?.mp4",
        ".hidden/x.mp4",
        "..mp4",
        "sub/...mp4",
        "new\nline.mp4",
    ]
    for i, name in enumerate(names):
        write_test_video(root / name, seed=i, **SMALL)
    report = ingest_paths(settings, database, [root])
    registered = set(_videos(database))
    # names starting with a dot (".hidden/", "..mp4", "...mp4") are hidden: skipped
    assert registered == {"sub/clip", "a b/c#d?"}
    assert all(unroutable_reason(video_id) is None for video_id in registered)
    refused = {Path(item.source).name: item.reason or "" for item in report.failures}
    assert set(refused) == {"new\nline.mp4"}
    for reason in refused.values():
        assert "could never serve it" in reason and "rename the file" in reason


# ------------------------------------------------------------------- item 8: special files


@pytest.mark.timeout(120)
def test_special_files_fail_alone_and_ingest_finishes(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    """The CLI in a child process, so that a regression (a read that never ends) fails on the
    time limit instead of hanging the test run."""
    fifo, named = tmp_path / "pipe.mp4", tmp_path / "named.mp4"
    os.mkfifo(fifo)
    os.mkfifo(named)  # on the command line
    write_test_video(tmp_path / "good.mp4", **SMALL)
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        f"file,video_id\n{fifo},pipe\n/dev/zero,zero\ngood.mp4,good\n", encoding="utf-8"
    )
    # /dev as a media root: the device is refused for what it is, not for where it is.
    roots = os.pathsep.join([str(tmp_path), "/dev"])
    env = {**os.environ, "RECSYS_HOME": str(settings.resolved_home), "RECSYS_MEDIA_ROOTS": roots}
    if settings.database_url:
        env["RECSYS_DATABASE_URL"] = settings.database_url
    command = [sys.executable, "-m", "orchestration.cli.main", "ingest", str(manifest), "--json"]
    try:
        result = subprocess.run(
            [*command, str(named)],
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            cwd=Path(__file__).resolve().parents[2],
        )
    except subprocess.TimeoutExpired:
        pytest.fail("ingest never finished: a FIFO or a device was read")
    assert result.returncode == 1, result.stderr
    items = json.loads(result.stdout)["ingest"]["items"]
    reasons = {item["source"]: item["reason"] for item in items if item["outcome"] == "failed"}
    assert "FIFO (named pipe), not a regular file" in reasons[f"{manifest} row 2"]
    assert "character device, not a regular file" in reasons[f"{manifest} row 3"]
    assert "FIFO" in reasons[str(named)]
    videos = _videos(database)
    assert videos["good"].status == "ready"
    assert videos["pipe"].status == videos["zero"].status == videos["named"].status == "failed"


@pytest.mark.timeout(30)
def test_a_manifest_that_is_a_fifo_is_refused(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    fifo = tmp_path / "m.csv"
    os.mkfifo(fifo)
    report = ingest_paths(settings, database, [fifo])
    assert "not a regular file" in (report.failures[0].reason or "")


# ------------------------------------------------------------------- item 7: crafted media


def test_crafted_media_fails_with_the_reason(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    clip = write_test_video(folder / "clip.mp4", **SMALL)
    write_huge_declared_avi(folder / "huge.avi")
    write_concat_list(folder / "concat.mp4", clip)
    write_hls_playlist(folder / "playlist.m3u8")
    manifest = folder / "m.csv"
    manifest.write_text("file,video_id\nplaylist.m3u8,hls\n", encoding="utf-8")
    ingest_paths(settings, database, [folder, manifest])
    videos = _videos(database)
    assert videos["clip"].status == "ready"
    assert "RECSYS_DECODE_MAX_PIXELS" in (videos["huge"].status_reason or "")
    for video_id in ("concat", "hls"):
        assert videos[video_id].status == "failed"
        assert "container format is not allowed" in (videos[video_id].status_reason or "")


def test_the_pixel_limit_setting_applies_to_ingest(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    clip = write_test_video(tmp_path / "clip.mp4", **SMALL)
    strict = load_settings(
        settings.resolved_home, database_url=settings.database_url, decode_max_pixels=32 * 24 - 1
    )
    report = ingest_paths(strict, database, [clip])
    assert "32x24" in (report.failures[0].reason or "")

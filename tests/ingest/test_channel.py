"""The manifest's optional ``channel`` column: stored per video, updated like the other
metadata; the synthetic corpus names its series as channels."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import Video
from recsys.ingest import ingest_paths
from recsys.settings import Settings
from recsys.synth import generate_corpus, write_test_video


def _channels(database: Database) -> dict[str, str | None]:
    with database.session() as session:
        return {v.video_id: v.channel for v in session.scalars(select(Video))}


def test_manifest_channel_is_stored_and_updated(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    clip = write_test_video(tmp_path / "x.mp4", seconds=0.5)
    other = write_test_video(tmp_path / "y.mp4", seconds=0.6)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"file,video_id,channel\n{clip},x1,first\n{other},x2,\n", encoding="utf-8")
    assert ingest_paths(settings, database, [manifest]).counts()["added"] == 2
    assert _channels(database) == {"x1": "first", "x2": None}
    manifest.write_text(f"file,video_id,channel\n{clip},x1,second\n", encoding="utf-8")
    assert ingest_paths(settings, database, [manifest]).counts()["updated"] == 1
    assert _channels(database)["x1"] == "second"


def test_synthetic_series_are_channels(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    info = generate_corpus(tmp_path / "c", videos=8, topics=2, seconds=0.5, reencodes=2)
    assert ingest_paths(settings, database, [info.manifest]).ok
    channels = _channels(database)
    for video in info.videos:
        assert channels[video.video_id] == video.channel
        assert video.channel.startswith(f"{video.category}-channel-")
    copies = info.duplicate_of
    assert len(copies) == 2 and all(channels[c] == channels[o] for c, o in copies.items())

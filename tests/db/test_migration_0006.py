"""Migration 0006: videos gain an optional, indexed ``channel``; down drops it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from recsys.db.session import MIGRATIONS_DIR, make_engine, upgrade_schema


def test_video_channel_upgrade_and_downgrade(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    engine = make_engine(f"sqlite:///{tmp_path / 'steps.db'}")
    upgrade_schema(engine, "0005")
    insert = (
        "INSERT INTO videos (video_id, uri, tags, status, created_at, updated_at) "
        "VALUES ('a', '/x/a.mp4', '[]', 'ready', '2026-12-07 00:00:00', '2026-12-07 00:00:00')"
    )
    with engine.begin() as connection:
        connection.execute(text(insert))
    upgrade_schema(engine)
    assert "channel" in {c["name"] for c in inspect(engine).get_columns("videos")}
    assert "ix_videos_channel" in {i["name"] for i in inspect(engine).get_indexes("videos")}
    with engine.begin() as connection:
        assert connection.execute(text("SELECT channel FROM videos")).scalars().all() == [None]
        connection.execute(text("UPDATE videos SET channel = 'someone'"))
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
    assert "channel" not in {c["name"] for c in inspect(engine).get_columns("videos")}
    with engine.begin() as connection:
        assert connection.execute(text("SELECT video_id FROM videos")).scalars().all() == ["a"]
    engine.dispose()

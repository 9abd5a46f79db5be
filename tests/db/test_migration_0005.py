"""Migration 0005: feature-cache rows gain ``row`` (their entry in a pack); down drops packs."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text

from recsys.db.session import MIGRATIONS_DIR, make_engine, upgrade_schema


def test_feature_pack_rows_upgrade_and_downgrade(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    engine = make_engine(f"sqlite:///{tmp_path / 'steps.db'}")
    upgrade_schema(engine, "0004")
    insert = (
        "INSERT INTO feature_cache (content_hash, extractor, extractor_version, path, info, "
        "created_at) VALUES (:h, 'content', '4', :p, '{}', '2026-12-03 00:00:00')"
    )
    with engine.begin() as connection:
        connection.execute(text(insert), {"h": "aa", "p": "content/4/aa/aa.safetensors"})
    upgrade_schema(engine)
    assert "row" in {c["name"] for c in inspect(engine).get_columns("feature_cache")}
    with engine.begin() as connection:
        assert connection.execute(text('SELECT "row" FROM feature_cache')).scalars().all() == [
            None
        ]  # an entry of an older cache: still a one-file entry
        connection.execute(
            text(insert.replace("created_at)", 'created_at, "row")').replace("')", "', 0)")),
            {"h": "bb", "p": "content/4/packs/x.safetensors"},
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0004")
    assert "row" not in {c["name"] for c in inspect(engine).get_columns("feature_cache")}
    with engine.begin() as connection:  # packed rows are gone (misses for the older code)
        hashes = connection.execute(text("SELECT content_hash FROM feature_cache")).scalars()
        assert hashes.all() == ["aa"]
    engine.dispose()

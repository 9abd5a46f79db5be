"""The metadata database on SQLite and PostgreSQL: migrations, constraints, the store."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from recsys.db import Database, ModelVersion, RelatedPair, Video, VideoStatus
from recsys.db.models import Embedding
from recsys.errors import RecsysError, UserError
from recsys.store import EmbeddingStore, StoreError
from tests.disk_log import record_disk_ops


def _video(video_id: str, **extra: object) -> Video:
    return Video(
        video_id=video_id, uri=f"/videos/{video_id}.mp4", content_hash="h" + video_id, **extra
    )


def test_migrations_create_every_table(database: Database) -> None:
    tables = set(inspect(database.engine).get_table_names())
    assert {
        "videos",
        "related_pairs",
        "feature_cache",
        "model_versions",
        "embeddings",
        "embedding_shards",
        "index_builds",
        "alembic_version",
    } <= tables


def test_video_ids_are_int64_and_external_ids_unique(database: Database) -> None:
    with database.session() as session:
        session.add_all([_video("a", tags=["x", "y"]), _video("b")])
    with database.session() as session:
        rows = session.scalars(select(Video).order_by(Video.id)).all()
        assert [r.video_id for r in rows] == ["a", "b"]
        assert all(isinstance(r.id, int) and r.id > 0 for r in rows)
        assert rows[0].tags == ["x", "y"]
        assert rows[0].status == VideoStatus.READY
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(_video("a"))


def test_related_pairs_are_unique_per_source(database: Database) -> None:
    with database.session() as session:
        a, b = _video("a"), _video("b")
        session.add_all([a, b])
        session.flush()
        session.add(RelatedPair(video_a=a.id, video_b=b.id, weight=3.0, source="cowatch"))
        session.add(RelatedPair(video_a=a.id, video_b=b.id, weight=1.0, source="manual"))
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(RelatedPair(video_a=a.id, video_b=b.id, weight=2.0, source="cowatch"))


def test_embedding_store_roundtrip_replaces_and_hides_failed(database: Database, settings) -> None:
    store = EmbeddingStore(settings)
    rng = np.random.default_rng(0)
    with database.session() as session:
        videos = [_video(f"v{i}") for i in range(5)]
        session.add_all(videos)
        session.add(
            ModelVersion(
                version="m1",
                fusion="late",
                extractor="content",
                extractor_version="1",
                dim=4,
                path="models/m1",
            )
        )
        session.flush()
        keys = [v.id for v in videos]
        first = rng.standard_normal((5, 4)).astype(np.float32)
        store.write_batch(
            session,
            "m1",
            keys,
            [v.content_hash for v in videos],
            "1",
            first,
            {"visual": first[:, :2]},
        )
    with database.session() as session:
        second = rng.standard_normal((1, 4)).astype(np.float32)
        store.write_batch(session, "m1", [keys[0]], ["changed"], "1", second)
        session.get(Video, keys[4]).status = VideoStatus.FAILED.value
    with database.session() as session:
        matrix = store.load(session, "m1", with_modalities=True)
        assert matrix.video_keys.tolist() == keys[:4]
        stored = session.scalars(select(Embedding).order_by(Embedding.video_key)).all()
        assert [e.video_key for e in stored] == keys
        np.testing.assert_allclose(matrix.vectors[0], second[0])
        np.testing.assert_allclose(matrix.vectors[1:], first[1:4])
        everything = store.load(session, "m1", servable_only=False)
        assert len(everything) == 5
        only_modalities = store.load(session, "m1", with_modalities=True, with_vectors=False)
        assert only_modalities.video_keys.tolist() == keys[:4]
        assert only_modalities.vectors.shape == (4, 0)
        np.testing.assert_allclose(
            only_modalities.modalities["visual"], matrix.modalities["visual"]
        )
        assert store.collect_garbage(session, "m1") == 0


def test_embedding_store_detects_corruption(database: Database, settings) -> None:
    store = EmbeddingStore(settings)
    with database.session() as session:
        video = _video("v")
        session.add(video)
        session.add(
            ModelVersion(
                version="m1",
                fusion="early",
                extractor="content",
                extractor_version="1",
                dim=2,
                path="models/m1",
            )
        )
        session.flush()
        store.write_batch(session, "m1", [video.id], ["h"], "1", np.ones((1, 2), np.float32))
    shard = next((settings.embeddings_dir / "m1").glob("*.npz"))
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with database.session() as session, pytest.raises(StoreError, match="checksum") as caught:
        store.load(session, "m1")
    # A broken store is the engine's error (not the user's input), still a RuntimeError.
    assert isinstance(caught.value, RecsysError) and isinstance(caught.value, RuntimeError)
    assert not isinstance(caught.value, UserError)


def test_embedding_shards_are_durable_before_the_commit(
    database: Database, settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = EmbeddingStore(settings)
    with database.session() as session:
        video = _video("d")
        session.add(video)
        session.add(
            ModelVersion(
                version="m2",
                fusion="late",
                extractor="content",
                extractor_version="1",
                dim=3,
                path="models/m2",
            )
        )
    with record_disk_ops(monkeypatch) as log, database.session() as session:
        name = store.write_batch(
            session, "m2", [video.id], ["hd"], "1", np.ones((1, 3), np.float32)
        )
    shard = settings.embeddings_dir / "m2" / f"{name}.npz"
    synced_dir = log.assert_published_durably(shard)  # file synced, renamed, directory synced
    log.assert_committed_after(synced_dir, shard)  # the rows naming it commit only after that
    # the model's shard directory was new: its creation is durable too
    assert ("fsync", os.path.realpath(settings.embeddings_dir)) in log.events


def test_a_batch_whose_shapes_disagree_is_a_caller_bug(database: Database, settings) -> None:
    store = EmbeddingStore(settings)
    with database.session() as session, pytest.raises(ValueError, match="2 video keys"):
        store.write_batch(session, "m1", [1, 2], ["a", "b"], "1", np.ones((3, 2), np.float32))
    assert not list(settings.embeddings_dir.glob("*/*.npz"))


def test_orphan_shards_are_collected(database: Database, settings) -> None:
    store = EmbeddingStore(settings)
    with database.session() as session:
        video = _video("v")
        session.add(video)
        session.add(
            ModelVersion(
                version="m1",
                fusion="early",
                extractor="content",
                extractor_version="1",
                dim=2,
                path="models/m1",
            )
        )
    # Simulate a process killed after the shard file was written but before the commit.
    try:
        with database.session() as session:
            store.write_batch(session, "m1", [video.id], ["h"], "1", np.ones((1, 2), np.float32))
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    with database.session() as session:
        assert len(store.load(session, "m1")) == 0
        assert store.collect_garbage(session, "m1") == 1
    assert not list((settings.embeddings_dir / "m1").glob("*.npz"))


def test_catalog_counts_and_selection(database: Database, settings) -> None:
    from recsys.catalog import embedding_counts, status_counts, videos_to_embed

    store = EmbeddingStore(settings)
    with database.session() as session:
        model = ModelVersion(
            version="m1",
            fusion="late",
            extractor="content",
            extractor_version="1",
            dim=2,
            path="models/m1",
        )
        videos = [_video(f"v{i}") for i in range(4)]
        videos[3].status = VideoStatus.FAILED.value
        session.add_all([model, *videos])
        session.flush()
        store.write_batch(
            session,
            "m1",
            [videos[0].id, videos[1].id],
            ["hv0", "old-hash"],
            "1",
            np.ones((2, 2), np.float32),
        )
    with database.session() as session:
        model = session.get(ModelVersion, "m1")
        counts = embedding_counts(session, model)
        assert (counts.embedded, counts.outdated, counts.missing, counts.failed) == (1, 1, 1, 1)
        assert counts.as_dict()["outdated"] == 1 and "stale" not in counts.as_dict()
        assert [v.video_id for v in videos_to_embed(session, model)] == ["v1", "v2"]
        retry = videos_to_embed(session, model, retry_failed=True)
        assert [v.video_id for v in retry] == ["v1", "v2", "v3"]
        assert status_counts(session)["failed"] == 1


def test_migrations_upgrade_step_by_step_and_down(tmp_path) -> None:
    from alembic import command
    from alembic.config import Config

    from recsys.db.session import MIGRATIONS_DIR, make_engine, upgrade_schema

    engine = make_engine(f"sqlite:///{tmp_path / 'steps.db'}")
    upgrade_schema(engine, "0001")
    assert "ix_videos_updated_at" not in {i["name"] for i in inspect(engine).get_indexes("videos")}
    upgrade_schema(engine)
    assert "ix_videos_updated_at" in {i["name"] for i in inspect(engine).get_indexes("videos")}
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert "videos" not in inspect(engine).get_table_names()
    engine.dispose()


def test_a_bad_setting_is_a_user_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from recsys.settings import SettingsError, load_settings

    monkeypatch.setenv("RECSYS_FRAMES_PER_VIDEO", "many")
    with pytest.raises(SettingsError, match="RECSYS_FRAMES_PER_VIDEO") as caught:
        load_settings(tmp_path)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    assert "'many'" in str(caught.value)

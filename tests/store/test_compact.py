"""Store compaction: a few large files replace many batch shards, crash-safe at every step."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

import recsys.store.embeddings as embeddings_module
from recsys.db import Database, open_database
from recsys.db.models import EmbeddingShard, Video, VideoStatus
from recsys.settings import Settings
from recsys.store import EmbeddingMatrix, EmbeddingStore, compact_store
from tests.store.helpers import add_model_row

MODEL = "m1"
VIDEOS = 30
BATCH = 3


def _catalog(settings: Settings, database: Database) -> list[int]:
    """30 videos embedded in batches of 3 (10 shards), one re-embedded (an 11th shard), one
    failed: the shapes a real refresh leaves behind."""
    store = EmbeddingStore(settings)
    rng = np.random.default_rng(0)
    with database.session() as session:
        videos = [
            Video(video_id=f"v{i:02d}", uri=f"/videos/v{i:02d}.mp4", content_hash=f"h{i}")
            for i in range(VIDEOS)
        ]
        session.add_all(videos)
        add_model_row(session, MODEL)
        session.flush()
        keys = [video.id for video in videos]
    for start in range(0, VIDEOS, BATCH):
        batch = keys[start : start + BATCH]
        vectors = rng.standard_normal((len(batch), 4)).astype(np.float32)
        with database.session() as session:
            store.write_batch(
                session,
                MODEL,
                batch,
                [f"h{k}" for k in batch],
                "1",
                vectors,
                {"visual": vectors[:, :2] * 2, "audio": vectors[:, 2:] * 3},
            )
    with database.session() as session:
        again = rng.standard_normal((1, 4)).astype(np.float32)
        store.write_batch(
            session,
            MODEL,
            [keys[4]],
            ["changed"],
            "1",
            again,
            {"visual": again[:, :2], "audio": again[:, 2:]},
        )
        session.get(Video, keys[7]).status = VideoStatus.FAILED.value
    return keys


def _snapshot(settings: Settings, database: Database) -> tuple[EmbeddingMatrix, EmbeddingMatrix]:
    store = EmbeddingStore(settings)
    with database.session() as session:
        return (
            store.load(session, MODEL, servable_only=False, with_modalities=True),
            store.load(session, MODEL, with_modalities=True),
        )


def _assert_same(before: tuple[EmbeddingMatrix, ...], after: tuple[EmbeddingMatrix, ...]) -> None:
    for old, new in zip(before, after, strict=True):
        assert new.video_keys.tolist() == old.video_keys.tolist()
        np.testing.assert_array_equal(new.vectors, old.vectors)
        assert sorted(new.modalities) == sorted(old.modalities) == ["audio", "visual"]
        for name in old.modalities:
            np.testing.assert_array_equal(new.modalities[name], old.modalities[name])


def _files(settings: Settings) -> list[str]:
    return sorted(p.name for p in (settings.embeddings_dir / MODEL).iterdir())


def _registered(database: Database) -> list[str]:
    with database.session() as session:
        return sorted(
            Path(p).name
            for p in session.scalars(
                select(EmbeddingShard.path).where(EmbeddingShard.model_version == MODEL)
            )
        )


def test_compaction_leaves_a_few_files_that_read_the_same(
    settings: Settings, database: Database
) -> None:
    _catalog(settings, database)
    before = _snapshot(settings, database)
    assert len(_files(settings)) == 11

    result = compact_store(
        EmbeddingStore(settings), database, MODEL, target_rows=8, min_small_shards=4
    )

    assert (result.shards_before, result.shards_after) == (11, 4)  # 30 live rows / 8 per file
    assert (result.files_written, result.rows_moved, result.files_removed) == (4, 30, 11)
    assert _files(settings) == _registered(database) and len(_files(settings)) == 4
    _assert_same(before, _snapshot(settings, database))

    # New batches after a compaction are merged with the partly filled last file next time.
    again = compact_store(
        EmbeddingStore(settings), database, MODEL, target_rows=8, min_small_shards=4
    )
    assert again.files_written == 0 and again.shards_after == 4  # one small file: nothing to do
    _assert_same(before, _snapshot(settings, database))


def test_too_few_small_shards_are_left_alone(settings: Settings, database: Database) -> None:
    _catalog(settings, database)
    result = compact_store(
        EmbeddingStore(settings), database, MODEL, target_rows=8, min_small_shards=16
    )
    assert result.files_written == 0 and result.shards_after == 11
    assert len(_files(settings)) == 11


def test_a_reader_racing_a_compaction_reads_the_rows_again(
    sqlite_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader has read the rows (old shards) when the compaction commits and deletes the
    old files: it must read the rows again, not fail and not return a mix."""
    database = open_database(sqlite_settings)
    try:
        _catalog(sqlite_settings, database)
        before = _snapshot(sqlite_settings, database)
        real_sha = embeddings_module.sha256_file
        raced: list[bool] = []

        def compact_then_hash(path: Path) -> str:
            if not raced:
                raced.append(True)
                compact_store(
                    EmbeddingStore(sqlite_settings),
                    database,
                    MODEL,
                    target_rows=8,
                    min_small_shards=4,
                )
            return real_sha(path)

        monkeypatch.setattr(embeddings_module, "sha256_file", compact_then_hash)
        with database.session() as session:
            during = EmbeddingStore(sqlite_settings).load(
                session, MODEL, servable_only=False, with_modalities=True
            )
        assert raced and len(_files(sqlite_settings)) == 4
        _assert_same(before[:1], (during,))
    finally:
        database.dispose()


# Each kill point SIGKILLs a real compaction process at one step of its order.
KILL_POINTS = {
    # the first new file is renamed into place and registered, nothing committed
    "file-written": "EmbeddingStore.write_shard",
    # the first file's transaction is committed, the second is being read
    "between-files": "compact_module._read_rows",
    # every file committed, no old shard deleted yet
    "before-collect": "EmbeddingStore.collect_garbage",
    # old shard files being deleted
    "mid-collect": "Path.unlink",
}

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import recsys.store.compact as compact_module
    from recsys.db import open_database
    from recsys.settings import load_settings
    from recsys.store import EmbeddingStore, compact_store

    point, home = sys.argv[1], sys.argv[2]
    owner_name, _, attribute = {target!r}[point].rpartition(".")
    owner = {{"EmbeddingStore": EmbeddingStore, "compact_module": compact_module,
              "Path": Path}}[owner_name]
    real = getattr(owner, attribute)
    calls = []

    def dying(*args, **kwargs):
        calls.append(1)
        # the file is written before it dies; the reading is cut before its second call
        if point == "file-written":
            real(*args, **kwargs)
        if point != "between-files" and point != "mid-collect" or len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    setattr(owner, attribute, dying)
    settings = load_settings(home)
    database = open_database(settings)
    compact_store(EmbeddingStore(settings), database, "m1", target_rows=8, min_small_shards=4)
    sys.exit(3)  # not reached: the kill point is on every path
    """
).format(target=KILL_POINTS)


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_during_compaction_leaves_old_shards_or_new_files_never_neither(
    sqlite_settings: Settings, point: str
) -> None:
    database = open_database(sqlite_settings)
    try:
        _catalog(sqlite_settings, database)
        before = _snapshot(sqlite_settings, database)
    finally:
        database.dispose()

    child = subprocess.run(
        [sys.executable, "-c", CHILD, point, str(sqlite_settings.resolved_home)],
        capture_output=True,
        timeout=120,
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]

    database = open_database(sqlite_settings)
    try:
        _assert_same(before, _snapshot(sqlite_settings, database))  # a reader right after
        result = compact_store(
            EmbeddingStore(sqlite_settings), database, MODEL, target_rows=8, min_small_shards=4
        )
        _assert_same(before, _snapshot(sqlite_settings, database))
        assert _files(sqlite_settings) == _registered(database)  # no orphan, nothing missing
        assert len(_files(sqlite_settings)) <= 5, result
        with database.session() as session:
            assert session.scalar(select(func.count()).select_from(EmbeddingShard)) == len(
                _files(sqlite_settings)
            )
    finally:
        database.dispose()

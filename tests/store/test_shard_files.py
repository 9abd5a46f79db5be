"""Store files: written once with their checksum computed on the way, read by every reader."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from recsys.checksums import sha256_file
from recsys.db import Database
from recsys.db.models import EmbeddingShard, Video
from recsys.ids import VideoKey
from recsys.settings import Settings
from recsys.store import EmbeddingStore
from recsys.store.embeddings import vectors_in_file, write_npz
from tests.store.helpers import add_model_row

MODEL = "m1"


@pytest.mark.parametrize("rows", [0, 1, 7])
def test_a_store_file_hashed_while_written_has_the_checksum_of_its_bytes(
    tmp_path: Path, rows: int
) -> None:
    rng = np.random.default_rng(rows)
    arrays: dict[str, np.ndarray] = {
        "ids": np.arange(rows, dtype=np.int64) * 3,
        "vectors": rng.standard_normal((rows, 5)).astype(np.float32),
        "modality_visual": rng.standard_normal((rows, 2)).astype(np.float16),
    }
    path = tmp_path / "shard.npz"
    digest = write_npz(path, arrays)
    assert digest == sha256_file(path)
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == sorted(arrays)
        for name, array in arrays.items():
            assert data[name].dtype == array.dtype
            np.testing.assert_array_equal(data[name], array)
    offset, shape, dtype = vectors_in_file(path)  # read in place, as the index build does
    assert shape == (rows, 5) and dtype == np.float32
    in_place = np.fromfile(path, dtype=dtype, count=rows * 5, offset=offset).reshape(shape)
    np.testing.assert_array_equal(in_place, arrays["vectors"])


def _model_and_videos(database: Database, count: int) -> list[VideoKey]:
    with database.session() as session:
        videos = [
            Video(video_id=f"v{i}", uri=f"/v{i}.mp4", content_hash=f"h{i}") for i in range(count)
        ]
        session.add_all(videos)
        add_model_row(session, MODEL)
        session.flush()
        return [VideoKey(video.id) for video in videos]


def test_a_shard_written_by_np_savez_still_loads_and_verifies(
    settings: Settings, database: Database
) -> None:
    """Files of older releases (``np.savez``, float32 per-modality vectors) read as before;
    a damaged one still fails its checksum."""
    keys = _model_and_videos(database, 3)
    store = EmbeddingStore(settings)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3, 4)).astype(np.float32)
    visual = rng.standard_normal((3, 2)).astype(np.float32)
    with database.session() as session:
        name = store.write_batch(session, MODEL, keys, ["h0", "h1", "h2"], "1", vectors)
        shard = session.scalars(select(EmbeddingShard).where(EmbeddingShard.name == name)).one()
        path = store.root / shard.path
        with path.open("wb") as handle:  # the layout older releases wrote
            np.savez(
                handle,
                ids=np.asarray(keys, dtype=np.int64),
                vectors=vectors,
                modality_visual=visual,
            )
            handle.flush()
            os.fsync(handle.fileno())
        shard.sha256 = sha256_file(path)
    with database.session() as session:
        matrix = store.load(session, MODEL, with_modalities=True)
    np.testing.assert_array_equal(matrix.vectors, vectors)
    assert matrix.modalities["visual"].dtype == np.float32
    np.testing.assert_array_equal(matrix.modalities["visual"], visual)
    with path.open("r+b") as handle:
        handle.seek(-40, os.SEEK_END)
        handle.write(b"\0" * 8)
    with database.session() as session, pytest.raises(RuntimeError, match="checksum"):
        store.load(session, MODEL)

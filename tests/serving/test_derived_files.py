"""Files derived from the catalog and the embedding store (the shared catalog columns under
``indexes/.catalog``, the mapped per-modality vectors, the store's shards) that are truncated or
corrupted never stop the index from serving: a derived file is checked once per file and
rebuilt from its source, an extra that only a damaged store powers (explanations) is turned off
with a reason naming the file."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from recsys.db import Database
from recsys.db.models import Video
from recsys.settings import Settings
from recsys.store import EmbeddingStore
from tests.serving.catalog import TinyCatalog
from tests.serving.conftest import serving_state


def _only_directory(root: Path) -> Path:
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(found) == 1, found
    return found[0]


def _titles(database: Database) -> dict[str, str | None]:
    with database.session() as session:
        return {row[0]: row[1] for row in session.execute(select(Video.video_id, Video.title))}


def _assert_catalog_is_the_database(settings: Settings, database: Database) -> None:
    state = serving_state(settings, database)  # a worker that starts
    titles = _titles(database)
    assert len(state.catalog) == len(titles)
    for video_id, title in titles.items():
        position = state.catalog.position(video_id)
        assert position is not None and state.catalog.info(position).title == title


def test_a_truncated_catalog_column_is_rebuilt_from_the_database(
    catalog: TinyCatalog, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    serving_state(settings, database)
    column = _only_directory(settings.indexes_dir / ".catalog") / "video_keys.npy"
    column.write_bytes(column.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        _assert_catalog_is_the_database(settings, database)
    assert str(column) in caplog.text
    _assert_catalog_is_the_database(settings, database)  # the rebuilt file serves the next one


def test_a_flipped_byte_in_a_mapped_title_column_is_detected(
    catalog: TinyCatalog, settings: Settings, database: Database
) -> None:
    with database.session() as session:  # rows written long ago: a starting worker re-reads none
        session.execute(update(Video).values(updated_at=datetime(2020, 1, 1, tzinfo=UTC)))
    serving_state(settings, database)
    column = _only_directory(settings.indexes_dir / ".catalog") / "title_data.npy"
    data = bytearray(column.read_bytes())
    data[-1] ^= 0x01  # the last title's last letter, still valid UTF-8
    column.write_bytes(bytes(data))
    _assert_catalog_is_the_database(settings, database)


def _store_modalities(settings: Settings, database: Database, model_version: str) -> dict:
    with database.session() as session:
        stored = EmbeddingStore(settings).load(
            session, model_version, servable_only=False, with_modalities=True
        )
    return {
        name: dict(zip(stored.video_keys.tolist(), matrix, strict=True))
        for name, matrix in stored.modalities.items()
    }


def test_truncated_shared_modality_vectors_are_rebuilt_from_the_store(
    catalog: TinyCatalog, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    first = serving_state(settings, database)
    assert set(first.modalities) == {"visual", "audio"}
    directory = _only_directory(settings.embeddings_dir / ".mapped" / catalog.model_version)
    damaged = directory / "audio.npy"
    damaged.write_bytes(damaged.read_bytes()[:200])
    with caplog.at_level(logging.WARNING):
        state = serving_state(settings, database)
    assert str(damaged) in caplog.text
    expected = _store_modalities(settings, database, catalog.model_version)
    assert set(state.modalities) == {"visual", "audio"} and state.explanations_off is None
    for name, matrix in state.modalities.items():
        for row, key in enumerate(state.modality_keys.tolist()):
            assert np.array_equal(matrix[row], expected[name][key])


def test_a_damaged_store_shard_turns_explanations_off_and_the_index_serves(
    catalog: TinyCatalog, settings: Settings, database: Database
) -> None:
    shard = sorted((settings.embeddings_dir / catalog.model_version).glob("*.npz"))[0]
    shard.write_bytes(shard.read_bytes()[:300])
    state = serving_state(settings, database)
    assert state.modalities == {}
    assert state.explanations_off is not None and str(shard) in state.explanations_off
    assert state.ntotal > 0 and len(state.catalog) > 0
    key = catalog.video_keys[catalog.served[0]]
    assert state.vector(key) is not None

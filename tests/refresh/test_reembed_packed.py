"""A re-embed from a packed feature cache equals the direct computation, on both databases.

Large cached units take the refresh writer's bulk DB-API path; here it is forced on for tiny
batches so that the rows, the store files and the status updates it writes are checked against
what the ORM path and the oracle give.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select, update

import recsys.refresh.local as local_module
import recsys.refresh.writer as writer_module
from recsys.db import Database
from recsys.db.models import Embedding, FeatureCacheEntry, Video, VideoStatus
from recsys.refresh import RefreshOptions, run_refresh
from recsys.settings import Settings
from recsys.synth import CorpusInfo
from tests.refresh.helpers import embedding_rows, make_model, oracle, orphan_files, stored

OPTIONS = {"workers": 2, "batch_size": 5, "progress": False}


@pytest.mark.parametrize(("bulk", "threaded"), [(True, False), (False, False), (True, True)])
def test_reembed_from_packed_cache_equals_direct_embedding(
    settings: Settings,
    database: Database,
    catalog: CorpusInfo,
    model_version: str,
    dims: tuple[int, int],
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    bulk: bool,
    threaded: bool,
) -> None:
    first = run_refresh(settings, database, RefreshOptions(**OPTIONS))  # type: ignore[arg-type]
    assert first.decoded == 12
    with database.session() as session:  # the features were cached in packs, per batch
        rows = session.execute(select(FeatureCacheEntry.path, FeatureCacheEntry.row)).all()
        assert len(rows) == 12 and all(row is not None for _, row in rows)
        assert len({path for path, _ in rows}) < 12
        stale = session.scalars(select(Video).order_by(Video.id)).first()
        assert stale is not None
        session.execute(
            update(Video).where(Video.id == stale.id).values(status=VideoStatus.STALE.value)
        )
        stale_id = stale.video_id
    monkeypatch.setattr(writer_module, "BULK_ROWS", 1 if bulk else 10**9)
    monkeypatch.setattr(local_module, "CACHED_BATCH", 4)  # several cached units
    monkeypatch.setattr(local_module, "BACKGROUND_WRITES", threaded)
    new_version = make_model(settings, database, dims, seed=1, activate=False)
    threads, collections = torch.get_num_threads(), gc.get_threshold()
    summary = run_refresh(
        settings,
        database,
        RefreshOptions(model_version=new_version, **OPTIONS),  # type: ignore[arg-type]
    )
    # The run's settings for the stream (GC, stage-B threads) are its own.
    assert (torch.get_num_threads(), gc.get_threshold()) == (threads, collections)
    assert gc.get_freeze_count() == 0
    assert (summary.embedded, summary.cache_hits, summary.decoded) == (12, 12, 0)
    assert summary.batches == 3  # 12 hits in units of max(batch size 5, CACHED_BATCH 4)
    expected = oracle(settings, database, new_version, files)
    got = stored(settings, database, new_version)
    assert sorted(got) == sorted(expected)
    for name, vector in got.items():
        np.testing.assert_allclose(vector, expected[name], atol=1e-5)
    assert embedding_rows(database, new_version) == (12, 12)
    assert orphan_files(settings, database, new_version) == []
    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == stale_id)).one()
        assert video.status == VideoStatus.READY.value  # servable again
        created = session.scalars(
            select(Embedding.created_at).where(Embedding.model_version == new_version)
        ).all()
        assert len(created) == 12 and all(c is not None for c in created)
    again = run_refresh(
        settings,
        database,
        RefreshOptions(model_version=new_version, **OPTIONS),  # type: ignore[arg-type]
    )
    assert again.selected == 0


def test_cached_units_keep_a_large_re_embed_under_the_store_compaction_threshold(
    sqlite_settings: Settings,
) -> None:
    from types import SimpleNamespace

    ctx = SimpleNamespace(settings=sqlite_settings, summary=SimpleNamespace(batch_size=64))
    unit = local_module.cached_unit
    assert unit(ctx, 20_000) == local_module.CACHED_BATCH  # type: ignore[arg-type]
    assert unit(ctx, 1_000_000) == 125_000  # type: ignore[arg-type]
    files = -(-1_000_000 // unit(ctx, 1_000_000))  # type: ignore[arg-type]
    assert files < sqlite_settings.store_compact_min_shards
    assert unit(ctx, 10**8) == sqlite_settings.store_compact_rows  # type: ignore[arg-type]

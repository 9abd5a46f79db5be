"""A refresh leaves a few compacted store files, not one per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recsys.refresh import RefreshOptions, run_refresh
from tests.refresh.conftest import SqliteCatalog
from tests.refresh.helpers import embedding_rows, oracle, orphan_files, stored


def test_a_refresh_compacts_its_batch_shards(sqlite_catalog: SqliteCatalog) -> None:
    settings = sqlite_catalog.settings.model_copy(
        update={"store_compact_rows": 5, "store_compact_min_shards": 4}
    )
    database, version = sqlite_catalog.database, sqlite_catalog.model_version
    files = {
        v.video_id: sqlite_catalog.corpus.out_dir / v.file for v in sqlite_catalog.corpus.videos
    }

    summary = run_refresh(
        settings, database, RefreshOptions(workers=1, batch_size=1, progress=False)
    )

    assert summary.batches == 12
    assert summary.compaction["shards_before"] == 12
    assert summary.compaction["files_written"] == 3  # 12 rows, 5 per file
    assert summary.compaction["shards_after"] == 3
    shard_files = sorted(Path(settings.embeddings_dir / version).glob("*.npz"))
    assert len(shard_files) == 3
    assert orphan_files(settings, database, version) == []
    assert embedding_rows(database, version) == (12, 12)
    expected = oracle(settings, database, version, files)
    for name, vector in stored(settings, database, version).items():
        np.testing.assert_allclose(vector, expected[name], atol=1e-5)

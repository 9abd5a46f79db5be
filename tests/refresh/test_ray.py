"""The Ray engine on a local Ray instance gives what the local engine gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.db import open_database
from recsys.refresh import RefreshOptions, run_refresh
from recsys.settings import Settings, load_settings
from recsys.synth import CorpusInfo
from tests.refresh.helpers import embedding_rows, ingest, make_model, orphan_files, stored

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _home(path: Path) -> Settings:
    settings = load_settings(path)
    settings.ensure_dirs()
    return settings


def test_ray_engine_matches_local_engine(
    ray_local: None, corpus: CorpusInfo, dims: tuple[int, int], tmp_path: Path
) -> None:
    results = {}
    for engine in ("local", "ray"):
        settings = _home(tmp_path / engine)
        database = open_database(settings)
        try:
            ingest(settings, database, [corpus.manifest])
            version = make_model(settings, database, dims, seed=3)
            cached = 0
            if engine == "ray":
                # Features of 4 videos are cached already: the Ray run mixes hits and misses.
                other = make_model(settings, database, dims, seed=5, activate=False)
                first_four = [v.video_id for v in corpus.videos[:4]]
                run_refresh(
                    settings,
                    database,
                    RefreshOptions(model_version=other, video_ids=first_four, progress=False),
                )
                cached = 4
            summary = run_refresh(
                settings,
                database,
                RefreshOptions(engine=engine, workers=2, batch_size=4, progress=False),
            )
            assert (summary.engine, summary.embedded, summary.failed) == (engine, 12, 0)
            assert (summary.decoded, summary.cache_hits) == (12 - cached, cached)
            assert embedding_rows(database, version) == (12, 12)
            assert orphan_files(settings, database, version) == []
            results[engine] = stored(settings, database, version)
            if engine == "ray":
                # A second version over cached features: Ray embeds without decoding.
                second = make_model(settings, database, dims, seed=4, activate=False)
                again = run_refresh(
                    settings,
                    database,
                    RefreshOptions(
                        model_version=second, engine="ray", batch_size=4, progress=False
                    ),
                )
                assert (again.embedded, again.cache_hits, again.decoded) == (12, 12, 0)
        finally:
            database.dispose()
    assert sorted(results["ray"]) == sorted(results["local"])
    for name, vector in results["local"].items():
        np.testing.assert_allclose(results["ray"][name], vector, atol=1e-5)

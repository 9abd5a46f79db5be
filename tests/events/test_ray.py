"""``--engine ray``: the co-watch counts on Ray Data equal DuckDB's (local engine's) on the same
events, one-shot and incremental, sessions and windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.events import EventOptions, EventStore, count_batch
from recsys.settings import Settings
from recsys.synth.events import write_parquet
from tests.events.logs import at, write_csv
from tests.events.test_aggregate import LOG_A, _random_log, _same

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.parametrize("cowatch", ["session", "window"])
def test_ray_counts_equal_the_local_counts(ray_local: None, cowatch: str, tmp_path: Path) -> None:
    from recsys.events.ray_engine import count_ray

    log = _random_log(4, users=40, events=900)
    log["sid"] = np.full(log["uid"].size, -1, np.int64)
    path = tmp_path / "events.parquet"
    write_parquet(log, "uid, vid, t, watch, sid", path)
    options = EventOptions(cowatch=cowatch, window_s="20m", user_cap=15, min_watch_s=5)  # type: ignore[arg-type]
    local = count_batch(log, options)
    assert local.totals["capped_users"] > 0 and local.pair_a.size > 0
    _same(count_ray([path], options, parts=3), local)


def test_ray_ingest_gives_the_duckdb_graph(
    ray_local: None, sqlite_settings: Settings, tmp_path: Path
) -> None:
    """The store on either engine: same counts and related pairs, a second file included."""
    first = [r for r in LOG_A if r[0] != "u3" and r[2] < at(50)]
    second = [r for r in LOG_A if r not in first] + [("u1", "v5", at(15))]
    files = [write_csv(tmp_path / "one.csv", first), write_csv(tmp_path / "two.csv", second)]
    graphs = {}
    for engine in ("local", "ray"):
        options = EventOptions(source=engine, engine=engine, min_support=1, user_cap=6)  # type: ignore[arg-type]
        with EventStore.open(sqlite_settings, engine) as store:
            for path in files:
                assert store.add_file(path, options).status == "added"
            graphs[engine] = (store.related(options).as_dict(), store.totals())
    assert graphs["ray"] == graphs["local"]
    assert graphs["ray"][0][("v1", "v5")] > 0

"""The co-watch neighbour lists are part of what an index version publishes: written
beside the index, checksummed, loaded with it, renewed by build and update, never served across
versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from index import BuildOptions, build_index, load_active, update_index
from index.cowatch import COWATCH_FILE
from index.errors import IndexLoadError
from index.load import load_index
from index.manifest import MANIFEST_FILE
from recsys.choices import GpuMode
from recsys.db import Database, VideoStatus
from recsys.db.models import RelatedPair
from recsys.settings import Settings
from tests.index.catalog import add_videos, clustered_vectors, make_catalog, set_status

OPTIONS = BuildOptions(gpu=GpuMode.OFF, queries=50, min_recall=0.9)


def _pairs(database: Database, rows: list[tuple[int, int, float, str]]) -> None:
    with database.session() as session:
        session.add_all(
            RelatedPair(video_a=a, video_b=b, weight=w, source=source) for a, b, w, source in rows
        )


def test_no_pairs_no_graph_and_pairs_publish_lists(settings: Settings, database: Database) -> None:
    ids, _ = make_catalog(settings, database, count=300)
    build_index(settings, database, OPTIONS)
    plain = load_active(settings)
    assert plain is not None and plain.cowatch is None
    assert plain.manifest.cowatch_sha256 is None
    a, b, c, d = (int(x) for x in ids[:4])
    # Two sources of the same pair: the larger weight; a failed video's pair is not served.
    _pairs(database, [(a, b, 2.0, "events"), (a, b, 5.0, "curated"), (a, c, 1.0, "events")])
    _pairs(database, [(a, d, 9.0, "events")])
    set_status(database, np.array([d]), VideoStatus.FAILED)
    build_index(settings, database, OPTIONS)
    loaded = load_active(settings)
    assert loaded is not None and loaded.cowatch is not None
    assert (loaded.directory / COWATCH_FILE).is_file()
    partners, weights = loaded.cowatch.of(a)
    assert partners.tolist() == [b, c] and weights.tolist() == [5.0, 1.0]
    assert loaded.cowatch.of(b)[0].tolist() == [a]
    assert loaded.manifest.cowatch_videos == 3 and loaded.manifest.cowatch_pairs == 4


def test_update_publishes_the_current_graph_and_drops_removed_videos(
    settings: Settings, database: Database
) -> None:
    ids, _ = make_catalog(settings, database, count=300)
    a, b, c = (int(x) for x in ids[:3])
    _pairs(database, [(a, b, 1.0, "events"), (a, c, 2.0, "events")])
    build_index(settings, database, OPTIONS)
    new = add_videos(settings, database, clustered_vectors(20, 32, seed=5), start=300)
    _pairs(database, [(a, int(new[0]), 3.0, "events")])
    set_status(database, np.array([c]), VideoStatus.DELETED)
    update_index(settings, database)
    loaded = load_active(settings)
    assert loaded is not None and loaded.cowatch is not None
    assert loaded.cowatch.of(a)[0].tolist() == [int(new[0]), b]


def test_a_tampered_graph_file_is_refused(settings: Settings, database: Database) -> None:
    ids, _ = make_catalog(settings, database, count=300)
    _pairs(database, [(int(ids[0]), int(ids[1]), 1.0, "events")])
    result = build_index(settings, database, OPTIONS)
    loaded = load_active(settings)
    assert loaded is not None
    path = loaded.directory / COWATCH_FILE
    path.write_bytes(path.read_bytes()[:-8] + b"garbage!")
    with pytest.raises(IndexLoadError, match="checksum"):
        load_index(loaded.directory)
    path.unlink()
    with pytest.raises(IndexLoadError, match="missing"):
        load_index(loaded.directory)
    manifest = json.loads((loaded.directory / MANIFEST_FILE).read_text())
    assert manifest["cowatch_sha256"] and result.version == loaded.version

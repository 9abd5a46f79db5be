"""The feature cache: keyed by content hash and extractor version; a hit never decodes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import FeatureCacheEntry
from recsys.features import CacheBatch, ExtractorMismatch, FeatureCache, get_extractor
from recsys.settings import Settings
from tests.disk_log import record_disk_ops
from tests.features.helpers import decoded, solid_frames, tone


def test_put_get_and_vanished_file(settings: Settings, database: Database) -> None:
    cache = FeatureCache(settings, database)
    content, cnn = get_extractor("content"), get_extractor("cnn")
    features = content.extract(decoded(solid_frames((10, 200, 30)), tone(500, 1.0)))
    assert cache.get("ab" * 32, content) is None
    cache.put("ab" * 32, content, features)
    path = cache.put("ab" * 32, content, features)  # idempotent: the row names the latest pack
    hit = cache.get("ab" * 32, content)
    assert hit is not None
    np.testing.assert_array_equal(hit.audio, features.audio)
    assert cache.get("ab" * 32, cnn) is None  # another extractor is another key
    with pytest.raises(ExtractorMismatch, match=content.version):  # never under another key
        cache.put("ab" * 32, cnn, features)
    with database.session() as session:
        rows = session.scalars(select(FeatureCacheEntry)).all()
        assert [(r.extractor, r.extractor_version) for r in rows] == [("content", content.version)]
    path.unlink()
    assert cache.get("ab" * 32, content) is None


def test_get_many_reads_in_bulk_and_keeps_older_npz_entries(
    settings: Settings, database: Database
) -> None:
    cache = FeatureCache(settings, database)
    content = get_extractor("content")
    features = {
        f"{i:02x}" * 32: content.extract(decoded(solid_frames((10 * i, 200, 30)), tone(300 + i)))
        for i in range(1, 5)
    }
    records = [cache.write(h, content, f) for h, f in features.items()]
    assert all(r.relative_path.endswith(".safetensors") for r in records)
    assert cache.get_many(features, content) == {}  # files without rows are not hits yet
    cache.record(content, records)
    cache.record(content, records)  # recording again replaces, never duplicates
    # An entry cached by an older release (zip of .npy members) still reads.
    legacy_hash = "ee" * 32
    legacy = content.extract(decoded(solid_frames((1, 2, 3))))
    legacy.to_npz(settings.features_dir / "legacy.npz")
    with database.session() as session:
        session.add(
            FeatureCacheEntry(
                content_hash=legacy_hash,
                extractor=content.name,
                extractor_version=content.version,
                path="legacy.npz",
                info={},
            )
        )
    hits = cache.get_many([*features, legacy_hash, "ff" * 32], content)
    assert sorted(hits) == sorted([*features, legacy_hash])
    for key, value in features.items():
        np.testing.assert_array_equal(hits[key].visual_seq, value.visual_seq)
        np.testing.assert_array_equal(hits[key].audio_seq, value.audio_seq)
    assert hits[legacy_hash].audio is None
    with database.session() as session:
        assert len(session.scalars(select(FeatureCacheEntry)).all()) == 5


def test_cache_batch_records_rows_per_batch(settings: Settings, database: Database) -> None:
    cache = FeatureCache(settings, database)
    content = get_extractor("content")
    features = content.extract(decoded(solid_frames((5, 5, 5))))
    batch = CacheBatch(cache, content, size=2)
    hashes = [f"{i:02x}" * 32 for i in range(3)]
    for h in hashes:
        batch.add(h, features)
    assert len(cache.get_many(hashes, content)) == 2  # one full batch committed
    batch.flush()
    assert len(cache.get_many(hashes, content)) == 3
    mismatched = CacheBatch(cache, get_extractor("cnn"))
    mismatched.add("aa" * 32, features)  # wrong extractor: logged and skipped, never raised
    mismatched.flush()
    assert mismatched.pending == []


def test_cache_files_are_durable_before_their_row(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FeatureCache(settings, database)
    content = get_extractor("content")
    features = content.extract(decoded(solid_frames((40, 90, 160)), tone(440, 1.0)))
    with record_disk_ops(monkeypatch) as log:
        path = cache.put("cd" * 32, content, features)
    synced_dir = log.assert_published_durably(path)  # file synced, renamed, directory synced
    log.assert_committed_after(synced_dir, path)  # ...all before its row is committed
    # the directories it created are durable too (each new one's parent was synced)
    for new in (path.parent, path.parent.parent):
        assert ("fsync", os.path.realpath(new.parent)) in log.events
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
    # a damaged file is still refused: a miss, recomputed by the caller
    path.write_bytes(path.read_bytes()[:30])
    assert cache.get("cd" * 32, content) is None

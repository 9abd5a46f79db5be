"""The packed feature cache: entries of one batch in one file, read in bulk, crash-safe."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from recsys.db import Database, open_database
from recsys.db.models import FeatureCacheEntry
from recsys.features import CacheBatch, FeatureCache, VideoFeatures, get_extractor
from recsys.features.cache import cached_parts, entry_path
from recsys.features.cache.layout import PACK_DIR
from recsys.features.cache.packs import LazyVideoFeatures, read_pack
from recsys.features.composite import CompositeExtractor
from recsys.features.part import Part
from recsys.settings import Settings
from tests.features.damage import flip_entry_byte
from tests.features.helpers import decoded, solid_frames, tone

CONTENT = "content"
COMPOSITE = "visual=content,audio=content"


def _features(spec: str, count: int, settings: Settings) -> dict[str, VideoFeatures]:
    """Seeded features of ``count`` videos, every third one silent."""
    extractor = get_extractor(spec, settings=settings)
    out = {}
    for i in range(count):
        audio = None if i % 3 == 2 else tone(200 + 50 * i, 1.0)
        video = decoded(solid_frames((20 * i % 255, 100, 30 + i)), audio)
        out[f"{i:02x}" * 32] = extractor.extract(video)
    return out


def _assert_same(got: VideoFeatures, want: VideoFeatures) -> None:
    for name in ("visual", "visual_seq", "audio", "audio_seq"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert got.extractor_version == want.extractor_version


def _rows(database: Database) -> list[tuple[str, str, str, int | None]]:
    with database.session() as session:
        return [
            tuple(r)  # type: ignore[misc]
            for r in session.execute(
                select(
                    FeatureCacheEntry.content_hash,
                    FeatureCacheEntry.extractor,
                    FeatureCacheEntry.path,
                    FeatureCacheEntry.row,
                ).order_by(FeatureCacheEntry.extractor, FeatureCacheEntry.content_hash)
            )
        ]


def _packs(settings: Settings) -> list[Path]:
    return sorted(p for p in settings.features_dir.rglob("*") if p.parent.name == PACK_DIR)


@pytest.mark.parametrize("spec", [CONTENT, COMPOSITE])
def test_packed_round_trip_one_file_per_batch(
    settings: Settings, database: Database, spec: str
) -> None:
    extractor = get_extractor(spec, settings=settings)
    features = _features(spec, 7, settings)
    cache = FeatureCache(settings, database)
    batch = CacheBatch(cache, extractor, size=3)
    for content_hash, value in features.items():
        batch.add(content_hash, value)
    batch.flush()
    parts = 2 if spec == COMPOSITE else 1
    assert len(_packs(settings)) == 3 * parts  # 3 + 3 + 1 entries, per key
    assert {row for *_, row in _rows(database)} == {0, 1, 2}
    hits = FeatureCache(settings, database).get_many([*features, "ff" * 32], extractor)
    assert sorted(hits) == sorted(features)
    for content_hash, value in features.items():
        _assert_same(hits[content_hash], value)
    if spec == CONTENT:
        lazy = FeatureCache(settings, database).get_many(features, extractor, sequences=False)
        for content_hash, value in features.items():
            assert isinstance(lazy[content_hash], LazyVideoFeatures)
            _assert_same(lazy[content_hash], value)
        plain = pickle.loads(pickle.dumps(lazy[next(iter(features))]))  # what Ray ships
        assert type(plain) is VideoFeatures
        _assert_same(plain, next(iter(features.values())))
    else:  # stage-A workers find packed parts without the database
        assert isinstance(extractor, CompositeExtractor)
        for content_hash, value in features.items():
            found = cached_parts(settings.features_dir, extractor, content_hash)
            assert sorted(found) == ["audio", "visual"]
            np.testing.assert_array_equal(found["visual"].seq, value.visual_seq)


def test_stage_a_finds_one_file_parts_of_older_caches_without_the_database(
    settings: Settings,
) -> None:
    extractor = get_extractor(COMPOSITE, settings=settings)
    assert isinstance(extractor, CompositeExtractor)
    content_hash, value = next(iter(_features(COMPOSITE, 1, settings).items()))
    name, version = extractor.keys["visual"]
    path = settings.features_dir / entry_path(content_hash, name, version)
    path.parent.mkdir(parents=True)
    Part(value.visual_seq).save(path)
    found = cached_parts(settings.features_dir, extractor, content_hash)
    assert list(found) == ["visual"]  # the audio part is still to be computed
    np.testing.assert_array_equal(found["visual"].seq, value.visual_seq)


def test_damaged_pack_is_a_logged_miss_and_recomputed_entries_replace_it(
    settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    extractor = get_extractor(CONTENT)
    features = _features(CONTENT, 4, settings)
    cache = FeatureCache(settings, database)
    batch = CacheBatch(cache, extractor, size=2)
    for content_hash, value in features.items():
        batch.add(content_hash, value)
    [first, second] = _packs(settings)
    damaged_hashes = {h for h, _, path, _ in _rows(database) if path.endswith(first.name)}
    data = bytearray(first.read_bytes())
    data[-5] ^= 0xFF  # one flipped bit in a tensor: only the checksum can tell
    first.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="recsys.features.cache"):
        hits = FeatureCache(settings, database).get_many(features, extractor)
    assert set(hits) == set(features) - damaged_hashes
    assert sum("damaged" in r.getMessage() for r in caplog.records) == 1  # once per pack
    second.write_bytes(second.read_bytes()[:100])  # truncated: a miss too
    assert FeatureCache(settings, database).get_many(features, extractor) == {}
    # The caller recomputes and re-caches: the new rows name the new pack.
    again = CacheBatch(cache, extractor)
    for content_hash, value in features.items():
        again.add(content_hash, value)
    again.flush()
    assert len(FeatureCache(settings, database).get_many(features, extractor)) == 4


def test_hand_deleted_pack_drops_its_rows(settings: Settings, database: Database) -> None:
    extractor = get_extractor(CONTENT)
    features = _features(CONTENT, 2, settings)
    cache = FeatureCache(settings, database)
    path = cache.put(next(iter(features)), extractor, next(iter(features.values())))
    path.unlink()
    assert cache.get_many(features, extractor) == {}
    assert _rows(database) == []


def test_old_one_file_entries_read_and_compaction_packs_them(
    settings: Settings, database: Database
) -> None:
    extractor = get_extractor(CONTENT)
    features = _features(CONTENT, 5, settings)
    version = str(extractor.version)
    with database.session() as session:  # what an older release wrote
        for content_hash, value in features.items():
            relative = entry_path(content_hash, extractor.name, version)
            value.save(settings.features_dir / relative)
            session.add(
                FeatureCacheEntry(
                    content_hash=content_hash,
                    extractor=extractor.name,
                    extractor_version=version,
                    path=str(relative),
                    info={},
                )
            )
    cache = FeatureCache(settings, database)
    hits = cache.get_many(features, extractor)
    assert sorted(hits) == sorted(features)
    # a newer pack beside them: compaction merges both kinds
    extra = _features(CONTENT, 7, settings)
    extra_hash, extra_value = list(extra.items())[6]
    cache.put(extra_hash, extractor, extra_value)
    [result] = cache.compact(extractor, min_small=2)
    assert (result.files_written, result.entries_moved, result.files_removed) == (1, 6, 6)
    assert [p.name for p in _packs(settings)] and len(_packs(settings)) == 1
    assert {(path, row is not None) for _, _, path, row in _rows(database)} == {
        (str(_packs(settings)[0].relative_to(settings.features_dir)), True)
    }
    assert not list(settings.features_dir.rglob("*/??/*.safetensors"))  # old files gone
    after = FeatureCache(settings, database).get_many([*features, extra_hash], extractor)
    for content_hash, value in {**features, extra_hash: extra_value}.items():
        _assert_same(after[content_hash], value)


def test_compaction_merges_small_packs_and_collects_old_orphans(
    settings: Settings, database: Database
) -> None:
    extractor = get_extractor(COMPOSITE, settings=settings)
    features = _features(COMPOSITE, 6, settings)
    cache = FeatureCache(settings, database)
    for content_hash, value in features.items():
        cache.put(content_hash, extractor, value)
    assert len(_packs(settings)) == 12  # one per entry and modality
    first = next(iter(features))
    cache.put(first, extractor, features[first])  # replaces two packs: orphans now
    assert cache.compact(extractor, min_small=100)[0].files_written == 0  # too few
    results = cache.compact(extractor, min_small=2, orphan_age_s=0.0)
    assert [r.files_written for r in results] == [1, 1]
    assert len(_packs(settings)) == 2  # the two orphans are gone with the merged packs
    hits = FeatureCache(settings, database).get_many(features, extractor)
    for content_hash, value in features.items():
        _assert_same(hits[content_hash], value)


# Each kill point SIGKILLs a real writer at one step of its order.
KILL_POINTS = {
    "before-rename": "os.replace",  # the pack is written under its temporary name
    "before-commit": "recsys.features.cache.FeatureCache.record",  # renamed, no row yet
}

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import recsys.features.cache as cache_module
    from recsys.db import open_database
    from recsys.features import CacheBatch, FeatureCache, get_extractor
    from recsys.settings import load_settings
    from tests.features.test_cache_packs import _features

    point, home = sys.argv[1], sys.argv[2]

    def dying(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "before-rename":
        os.replace = dying
    else:
        cache_module.FeatureCache.record = dying
    settings = load_settings(home)
    database = open_database(settings)
    extractor = get_extractor("content")
    batch = CacheBatch(FeatureCache(settings, database), extractor)
    for content_hash, value in _features("content", 3, settings).items():
        batch.add("ee" + content_hash[2:], value)
    batch.flush()
    sys.exit(3)  # not reached: the kill point is on the path
    """
)


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_during_a_pack_write_leaves_no_row_on_a_partial_file(
    sqlite_settings: Settings, point: str
) -> None:
    database = open_database(sqlite_settings)
    try:
        extractor = get_extractor(CONTENT)
        features = _features(CONTENT, 3, sqlite_settings)
        cache = FeatureCache(sqlite_settings, database)
        for content_hash, value in features.items():
            cache.put(content_hash, extractor, value)
        before = _rows(database)
    finally:
        database.dispose()
    root = Path(__file__).resolve().parents[2]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, point, str(sqlite_settings.resolved_home)],
        capture_output=True,
        timeout=120,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    database = open_database(sqlite_settings)
    try:
        assert _rows(database) == before  # nothing of the killed batch is named
        left = [p for p in (sqlite_settings.features_dir / "content").rglob("*") if p.is_file()]
        assert len(left) == len(before) + 1  # its pack (or temporary file) is an orphan
        cache = FeatureCache(sqlite_settings, database)
        assert len(cache.get_many(features, extractor)) == 3
        assert cache.compact(extractor, min_small=100, orphan_age_s=0.0)[0].files_removed == 1
        assert cache.get_many(["ee" + h[2:] for h in features], extractor) == {}
    finally:
        database.dispose()


def test_a_packs_entries_read_together_equal_each_one_and_bad_members_are_reported(
    settings: Settings, database: Database
) -> None:
    extractor = get_extractor(CONTENT, settings=settings)
    features = _features(CONTENT, 5, settings)
    records = FeatureCache(settings, database).write_many(extractor, list(features.items()))
    pack = read_pack(settings.features_dir / records[0].relative_path, lazy=True)
    hashes = list(features)
    members = [(i, h) for i, h in enumerate(hashes)] + [(1, hashes[0]), (9, hashes[2])]
    for lazy in (True, False):
        entries, error = pack.entries(members, lazy=lazy)
        assert [h for h, _ in entries] == hashes  # the two bad members are left out
        assert error is not None and f"no entry 1 for {hashes[0]}" in str(error)
        for content_hash, entry in entries:
            assert isinstance(entry, LazyVideoFeatures) == lazy
            assert isinstance(entry, VideoFeatures)
            _assert_same(entry, features[content_hash])
            assert entry.info == features[content_hash].info
    _, error = pack.entries(members[:5], lazy=True)
    assert error is None


def test_a_flipped_byte_in_one_entry_is_that_entrys_logged_miss_read_alone_or_whole(
    settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    extractor = get_extractor(CONTENT)
    features = _features(CONTENT, 12, settings)
    hashes = list(features)
    batch = CacheBatch(FeatureCache(settings, database), extractor)
    for content_hash, value in features.items():
        batch.add(content_hash, value)
    batch.flush()
    [pack_path] = _packs(settings)
    rows = {h: row for h, _, _, row in _rows(database) if row is not None}
    flip_entry_byte(pack_path, "visual_seq", rows[hashes[3]])
    for wanted in ([hashes[3], hashes[5]], hashes):  # a few entries read alone, then all
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="recsys.features.cache"):
            hits = FeatureCache(settings, database).get_many(wanted, extractor)
        assert sorted(hits) == sorted(set(wanted) - {hashes[3]})
        for content_hash, value in hits.items():
            _assert_same(value, features[content_hash])
        [warning] = [r.getMessage() for r in caplog.records]
        assert str(pack_path) in warning and "fails its checksum" in warning


def test_a_pack_without_entry_checksums_of_an_older_release_reads_and_is_verified(
    settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    extractor = get_extractor(CONTENT)
    features = _features(CONTENT, 12, settings)
    batch = CacheBatch(FeatureCache(settings, database), extractor)
    for content_hash, value in features.items():
        batch.add(content_hash, value)
    batch.flush()
    [pack_path] = _packs(settings)
    with safe_open(str(pack_path), framework="numpy") as handle:
        metadata = handle.metadata()
    older = {k: v for k, v in load_file(pack_path).items() if not k.endswith(".sha256")}
    save_file(older, pack_path, metadata=metadata)  # what an older release wrote
    assert not read_pack(pack_path).per_entry
    hashes = list(features)
    hits = FeatureCache(settings, database).get_many(hashes[:2], extractor)
    assert sorted(hits) == sorted(hashes[:2])
    for content_hash, value in hits.items():
        _assert_same(value, features[content_hash])
    rows = {h: row for h, _, _, row in _rows(database) if row is not None}
    flip_entry_byte(pack_path, "visual_seq", rows[hashes[3]])
    with caplog.at_level(logging.WARNING, logger="recsys.features.cache"):
        hits = FeatureCache(settings, database).get_many(hashes[:2], extractor)
    assert hits == {}  # its column fails its checksum: every entry of the pack is a miss
    assert any("fails its checksum" in r.getMessage() for r in caplog.records)

"""The feature cache: keyed by content hash and extractor version; a hit never decodes."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import FeatureCacheEntry, Video
from recsys.features import FeatureCache, extract_cached, get_extractor
from recsys.media import content_hash
from recsys.settings import Settings
from recsys.synth import write_test_video
from tests.features.helpers import decoded, solid_frames, tone


def test_put_get_and_vanished_file(settings: Settings, database: Database) -> None:
    cache = FeatureCache(settings, database)
    content, cnn = get_extractor("content"), get_extractor("cnn")
    features = content.extract(decoded(solid_frames((10, 200, 30)), tone(500, 1.0)))
    assert cache.get("ab" * 32, content) is None
    path = cache.put("ab" * 32, content, features)
    cache.put("ab" * 32, content, features)  # idempotent
    hit = cache.get("ab" * 32, content)
    assert hit is not None
    np.testing.assert_array_equal(hit.audio, features.audio)
    assert cache.get("ab" * 32, cnn) is None  # another extractor is another key
    with database.session() as session:
        rows = session.scalars(select(FeatureCacheEntry)).all()
        assert [(r.extractor, r.extractor_version) for r in rows] == [("content", content.version)]
    path.unlink()
    assert cache.get("ab" * 32, content) is None


def test_extract_cached_decodes_once(settings: Settings, database: Database, tmp_path) -> None:
    path = write_test_video(tmp_path / "clip.mp4", seconds=1.0, width=64, height=48)
    digest = content_hash(path)
    video = Video(video_id="clip", uri=str(path), content_hash=digest)
    extractor = get_extractor("content")
    first = extract_cached(settings, database, video, extractor)
    assert first.visual_seq.shape[0] == settings.frames_per_video
    assert first.audio is not None
    path.unlink()  # a cache hit must not need the file at all
    second = extract_cached(settings, database, video, extractor)
    np.testing.assert_array_equal(first.visual, second.visual)

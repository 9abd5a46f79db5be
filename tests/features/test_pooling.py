"""The ``pool=`` stage-A option: how frame rows become one vector, and views pooled alike
(training views and same-source windows: tests/training/test_view_pooling.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.features import ExtractorUnavailable, FeatureError, get_extractor
from recsys.features.pooling import pool_rows, pool_visual, visual_pooling
from recsys.features.spec import parse_spec
from recsys.media import decode_video
from recsys.settings import Settings
from recsys.synth.writer import write_test_video

LITE0 = "visual=efficientnet-lite:lite0,audio=content"


def test_pool_rows_of_each_kind() -> None:
    rows = np.array([[1.0, -2.0], [3.0, 0.0], [5.0, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(pool_rows(rows, "mean"), [3.0, 0.0])
    np.testing.assert_allclose(pool_rows(rows, "meanmax"), [3.0, 0.0, 5.0, 2.0])
    np.testing.assert_allclose(
        pool_rows(rows, "meanstd"), [3.0, 0.0, np.sqrt(8 / 3), np.sqrt(8 / 3)]
    )
    with pytest.raises(FeatureError, match="mean, meanmax, meanstd"):
        pool_rows(rows, "median")
    with pytest.raises(FeatureError, match="empty"):
        pool_rows(rows[:0], "mean")


def test_spec_option_round_trips_and_bad_values_are_refused() -> None:
    spec = parse_spec(f"{LITE0},pool=meanmax,fps=1")
    assert spec.pooling == "meanmax" and spec.options == {"fps": 1.0}
    assert parse_spec(spec.name) == spec
    assert spec.without("pool").pooling is None and spec.without("fps").pooling == "meanmax"
    assert parse_spec(LITE0).pooling is None
    with pytest.raises(ExtractorUnavailable, match="pool='max'.*mean\\|meanmax\\|meanstd"):
        parse_spec(f"{LITE0},pool=max")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_video(tmp_path_factory.mktemp("pool") / "clip.mp4", seconds=2.0)


def test_lite_pools_the_frame_mean_by_default_and_views_pool_alike(
    clip: Path, sqlite_settings: Settings
) -> None:
    default = get_extractor(LITE0, settings=sqlite_settings)
    legacy = get_extractor(f"{LITE0},pool=meanstd", settings=sqlite_settings)
    assert default.version != legacy.version  # another pooled vector, another version
    decoded = decode_video(clip, num_frames=6, size=256)
    features = default.extract(decoded)
    assert visual_pooling(features) == "mean" and features.visual.shape == (1280,)
    np.testing.assert_allclose(features.visual, features.visual_seq.mean(axis=0), rtol=1e-5)
    assert legacy.extract(decoded).visual.shape == (2560,)
    np.testing.assert_allclose(  # a view of the first frames, pooled as the whole was
        pool_visual(features, features.visual_seq[:2]),
        features.visual_seq[:2].mean(axis=0),
        rtol=1e-6,
    )


def test_descriptors_keep_mean_and_std(clip: Path, sqlite_settings: Settings) -> None:
    """Features made before the option (no pooling recorded) are read as mean+std."""
    content = get_extractor("content", settings=sqlite_settings)
    features = content.extract(decode_video(clip, num_frames=4, size=64))
    assert visual_pooling(features) == "meanstd"
    assert features.visual.shape == (2 * features.visual_seq.shape[1],)

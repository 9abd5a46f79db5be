"""Stage A per video: decode + extract in the killable decode worker, errors as reasons."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.features import get_extractor
from recsys.ids import VideoKey
from recsys.stage_a import FeatureSpec, VideoTask, compute_features, decode_only
from recsys.synth import CorpusInfo


def spec(timeout_s: float | None, version: str | None = None) -> FeatureSpec:
    version = version or get_extractor("content").version
    return FeatureSpec("content", version, 8, 64, 16000, timeout_s)


@pytest.mark.parametrize("timeout_s", [None, 30.0])
def test_features_are_the_same_in_the_decode_worker_and_in_process(
    corpus: CorpusInfo, timeout_s: float | None
) -> None:
    video = corpus.videos[0]
    task = VideoTask(VideoKey(1), video.video_id, str(corpus.out_dir / video.file), "")
    here = compute_features(task, spec(None))
    there = compute_features(task, spec(timeout_s))
    assert here.error is None and there.error is None
    assert here.features is not None and there.features is not None
    np.testing.assert_array_equal(here.features.visual_seq, there.features.visual_seq)
    assert set(there.timings) == {"decode", "extract"}
    floor = decode_only(task, spec(timeout_s))
    assert floor.error is None and floor.features is None and floor.seconds > 0


def test_an_extractor_failure_is_reported_as_such_not_as_a_bad_file(corpus: CorpusInfo) -> None:
    video = corpus.videos[0]
    task = VideoTask(VideoKey(1), video.video_id, str(corpus.out_dir / video.file), "")
    result = compute_features(task, spec(30.0, version="content-0"))
    assert result.features is None
    assert result.error is not None
    assert result.error.startswith("feature extraction failed")
    assert "content-0" in result.error


def test_a_missing_file_fails_with_its_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    task = VideoTask(VideoKey(1), "gone", str(tmp_path / "gone.mp4"), "")
    for fn in (compute_features, decode_only):
        result = fn(task, spec(30.0))
        assert result.error is not None and "gone.mp4" in result.error


def test_a_pool_that_broke_between_waits_hands_back_a_failed_future() -> None:
    """Bug (seen in CI): a worker crash landing between two waits made ``submit`` raise
    BrokenProcessPool out of the refresh instead of rerunning the in-flight videos alone."""
    from concurrent.futures.process import BrokenProcessPool

    from recsys.stage_a.pool import _Pool

    class BrokenExecutor:
        def submit(self, *args: object, **kwargs: object) -> object:
            raise BrokenProcessPool("a child process terminated abruptly")

    pool = _Pool(1)
    pool._executor = BrokenExecutor()  # type: ignore[assignment]
    future = pool.submit(compute_features, None, None)  # type: ignore[arg-type]
    assert future.done() and isinstance(future.exception(), BrokenProcessPool)

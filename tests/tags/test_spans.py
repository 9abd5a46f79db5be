"""Where a category applies: one scene stays one span, a video joined from two scenes is cut at
the join, and the sound of a segment counts as much as its frames for it."""

from __future__ import annotations

import numpy as np

from recsys.features import VideoFeatures
from recsys.tags import TagKind, predict_videos
from recsys.tags.fit import fit_tag_model
from recsys.tags.labels import LabelledVideos
from recsys.tags.spans import best_split, category_segments

#: Segments of every synthetic video (frames; audio windows are as many).
SEGMENTS = 12


def _flicker(seed: int, count: int = 16) -> np.ndarray:
    """(count, 3) log-probabilities favouring class 0 overall, with several segments where a
    look-alike class 1 wins by a little."""
    rng = np.random.default_rng(seed)
    scores = np.log(np.tile([0.6, 0.3, 0.1], (count, 1)))
    odd = rng.choice(count, size=count // 4, replace=False)
    scores[odd] = np.log([0.4, 0.5, 0.1])
    return scores


def test_a_scene_whose_segments_flicker_stays_one_run() -> None:
    for seed in range(5):
        scores = _flicker(seed)
        assert (scores.argmax(axis=1) == 1).any()  # a per-segment argmax would split it
        assert set(category_segments(scores)) == {0}


def test_two_scenes_are_cut_where_they_change() -> None:
    scores = np.vstack([_flicker(1, 10), _flicker(2, 6)[:, [2, 1, 0]]])  # then class 2 leads
    labels = category_segments(scores)
    assert labels.tolist() == [0] * 10 + [2] * 6
    given = best_split(scores[:, [0, 2]])
    assert given.tolist() == [0] * 10 + [1] * 6


def _video(rng: np.random.Generator, sounds: list[int], centres: np.ndarray) -> VideoFeatures:
    """Frames alike for every class; each audio window sounds like its class in ``sounds``."""
    frames = rng.normal(size=(SEGMENTS, 16))
    windows = np.stack([centres[s] + rng.normal(scale=0.6, size=8) for s in sounds])
    return VideoFeatures.from_sequences(
        "test", "1", frames.astype(np.float32), windows.astype(np.float32)
    )


def test_a_video_whose_sound_changes_is_cut_where_it_changes() -> None:
    """The frames say nothing here: only the segments' audio windows can find the join (they
    were always left out before, the segment rows expecting the pooled audio's width)."""
    rng = np.random.default_rng(3)
    centres = np.random.default_rng(7).normal(scale=2.0, size=(3, 8))
    labels = [i % 3 for i in range(30)]
    data = LabelledVideos(
        [_video(rng, [c] * SEGMENTS, centres) for c in labels],
        [f"sound{c}" for c in labels],
        [[] for _ in labels],
    )
    model = fit_tag_model(data, extractor="test", extractor_version="1", seed=0)
    joined = _video(rng, [0] * 8 + [2] * 4, centres)  # 8 s of sound0, then 4 s of sound2
    found = predict_videos(model, [joined], [12.0])[0]
    spans = {p.tag: [s.as_dict() for s in p.spans] for p in found.predictions}
    assert found.segments_disagree and set(found.segment_labels) == {"sound0", "sound2"}
    assert spans["sound0"] == [{"start_s": 0.0, "end_s": 8.0}]
    assert spans["sound2"] == [{"start_s": 8.0, "end_s": 12.0}]
    assert all(p.kind == TagKind.CATEGORY for p in found.predictions)

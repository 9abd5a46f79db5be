"""Predicted tags in the database, on SQLite and on PostgreSQL: a prediction run replaces a
video's predictions, human labels stand beside them, and the predicted-category filter admits
a video by its human category or a confident prediction."""

from __future__ import annotations

import numpy as np
from sqlalchemy import select

from recsys.choices import TagKind
from recsys.db import Database
from recsys.db.models import PredictedTag, TagPredictionState, Video
from recsys.features import VideoFeatures
from recsys.ids import VideoKey
from recsys.tags import TagPrediction, VideoTags, predicted_category_keys, stored_tags
from recsys.tags.labels import MAX_LABEL_LENGTH, LabelledVideos, label_space
from recsys.tags.spans import Span
from recsys.tags.store import write_predictions
from tests.tags.rows import add_labelled_videos

LONG_TAG = "w" * MAX_LABEL_LENGTH  # as wide as the column


def _videos(database: Database) -> dict[str, VideoKey]:
    """Three catalog rows: a human category, no label, a human tag."""
    return add_labelled_videos(
        database, {"news-1": ("news", []), "blank": (None, []), "tagged": (None, ["crowd"])}
    )


def _write(database: Database, video_id: str, found: VideoTags) -> None:
    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == video_id)).one()
        write_predictions(session, video, "tags-test", found)


def _category(tag: str, confidence: float, *spans: Span) -> TagPrediction:
    return TagPrediction(TagKind.CATEGORY, tag, confidence, list(spans))


def test_predictions_are_replaced_and_never_over_human_labels(database: Database) -> None:
    keys = _videos(database)
    _write(
        database,
        "blank",
        VideoTags(
            [
                _category("sport", 0.7, Span(0.0, 4.0)),
                _category("music", 0.3, Span(4.0, 9.5)),
                TagPrediction(TagKind.TAG, LONG_TAG, 0.55, [Span(1.0, 2.0)]),
            ],
            False,
            True,
            ["sport", "music"],
        ),
    )
    # A second run replaces every row of the video, and its state.
    _write(
        database, "blank", VideoTags([_category("music", 0.9, Span(0.0, 9.5))], False, False, [])
    )
    _write(
        database,
        "tagged",
        VideoTags(
            [_category("music", 0.4), TagPrediction(TagKind.TAG, "crowd", 0.99)], True, False, []
        ),
    )
    _write(database, "news-1", VideoTags([_category("music", 0.95)], False, False, []))

    with database.session() as session:
        videos = {v.video_id: v for v in session.scalars(select(Video))}
        blank = stored_tags(session, videos["blank"])
        assert blank.predicted == [
            {
                "tag": "music",
                "kind": "category",
                "confidence": 0.9,
                "spans": [{"start_s": 0.0, "end_s": 9.5}],
                "tags_model": "tags-test",
            }
        ]
        assert (blank.segments_disagree, blank.segment_labels) == (False, [])
        assert (
            session.scalars(select(PredictedTag.tag).where(PredictedTag.tag == LONG_TAG)).all()
            == []
        )
        tagged = stored_tags(session, videos["tagged"])
        assert tagged.given == [{"tag": "crowd", "kind": "tag"}]
        assert [p["tag"] for p in tagged.predicted] == ["music"]  # the human tag stands
        assert tagged.abstained
        news = stored_tags(session, videos["news-1"])
        assert news.given == [{"tag": "news", "kind": "category"}]
        assert [p["tag"] for p in news.predicted] == ["music"]
        assert [(v.category, v.tags) for v in videos.values()] == [
            ("news", []),
            (None, []),
            (None, ["crowd"]),
        ]  # nothing wrote a human label
        assert len(session.scalars(select(TagPredictionState)).all()) == 3

        # Human "news" stays news: the confident "music" of news-1 does not make it music.
        assert predicted_category_keys(session, "music", 0.5) == [keys["blank"]]
        assert predicted_category_keys(session, "music", 0.3) == sorted(
            [keys["blank"], keys["tagged"]]
        )
        assert predicted_category_keys(session, "news", 0.5) == [keys["news-1"]]


def test_a_label_longer_than_a_prediction_can_store_is_not_learned() -> None:
    """Manifest tags have no length limit; a class wider than ``predicted_tags.tag`` would
    make PostgreSQL refuse every prediction of it (and the batch of videos with it)."""
    rng = np.random.default_rng(3)
    too_long = "t" * (MAX_LABEL_LENGTH + 1)
    tags = [[too_long, "y"], [too_long], ["y"], ["z"], ["z"], ["y", LONG_TAG], [LONG_TAG]]
    features = [
        VideoFeatures.from_sequences("test", "1", rng.normal(size=(4, 6)).astype(np.float32), None)
        for _ in tags
    ]
    data = LabelledVideos(features, [None] * len(tags), tags)

    space = label_space(data, TagKind.TAG)

    assert space is not None and space.classes == sorted([LONG_TAG, "y", "z"])
    assert any(f"longer than {MAX_LABEL_LENGTH}" in w for w in data.warnings), data.warnings

"""Tags for untagged videos, end to end on a synthetic catalog: the unlabelled half gets the
right categories, a concatenated video gets the right spans, human labels stay untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.db import Database, open_database
from recsys.db.models import PredictedTag, TagPredictionState, Video, VideoStatus
from recsys.ingest import ingest_paths
from recsys.settings import Settings
from recsys.synth import generate_corpus
from recsys.synth.concat import concatenate_videos
from recsys.tags import TagsError, current_tags_version, stored_tags
from training.tags import TagsOptions, evaluate_tags, tag_catalog, train_tags

#: Share of the unlabelled half that must get its true category (chance: 1 / 4; the corpus
#: makes topics look or sound alike in twos and leaves ~10 % of videos silent, so a few are
#: ambiguous by design).
UNLABELLED_ACCURACY = 0.8
#: Span edges may be off by this many seconds (one segment of the concatenated video).
EDGE_TOLERANCE_S = 0.6


def _catalog(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Database, dict]]:
    """48 videos of 4 topics (3 s); every other video of each topic keeps its category."""
    settings.frames_per_video, settings.frame_size = 12, 48
    corpus = generate_corpus(tmp_path / "c", 48, 4, 3.0, seed=5, width=96, height=72)
    database = open_database(settings)
    assert ingest_paths(settings, database, [corpus.manifest]).ok
    truth = {v.video_id: v.category for v in corpus.videos if v.duplicate_of is None}
    hidden = sorted(truth)[1::2]
    with database.session() as session:
        session.execute(update(Video).where(Video.video_id.in_(hidden)).values(category=None))
    yield settings, database, {"truth": truth, "hidden": hidden, "corpus": corpus}
    database.dispose()


@pytest.fixture
def catalog(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Database, dict]]:
    """The synthetic catalog on SQLite and on PostgreSQL: what is stored, read and never
    overwritten goes through both databases."""
    yield from _catalog(settings, tmp_path)


@pytest.fixture
def sqlite_catalog(
    sqlite_settings: Settings, tmp_path: Path
) -> Iterator[tuple[Settings, Database, dict]]:
    """The synthetic catalog on SQLite only (evaluation stores nothing)."""
    yield from _catalog(sqlite_settings, tmp_path)


def test_the_unlabelled_half_is_tagged_and_human_labels_are_never_overwritten(
    catalog: tuple[Settings, Database, dict],
) -> None:
    settings, database, info = catalog
    with database.session() as session:  # a human tag on one labelled video
        labelled = session.scalars(
            select(Video).where(Video.category.is_not(None)).order_by(Video.id)
        ).first()
        assert labelled is not None
        labelled.tags = ["handpicked"]
        kept_id, kept_category = labelled.video_id, labelled.category
    env = {"RECSYS_DATABASE_URL": settings.database_url or ""}  # the fixture's database
    result = CliRunner(env=env).invoke(
        app, ["tags", "train", "--json", "--home", str(settings.home)]
    )
    assert result.exit_code == 0, result.output
    assert current_tags_version(settings) is not None

    right = 0
    with database.session() as session:
        for video_id in info["hidden"]:
            video = session.scalars(select(Video).where(Video.video_id == video_id)).one()
            assert video.category is None  # the prediction is stored beside, not in the row
            found = stored_tags(session, video)
            categories = [p for p in found.predicted if p["kind"] == "category"]
            if categories and categories[0]["tag"] == info["truth"][video_id]:
                right += 1
        kept = session.scalars(select(Video).where(Video.video_id == kept_id)).one()
        assert (kept.category, kept.tags) == (kept_category, ["handpicked"])
        shown = stored_tags(session, kept)
        assert shown.given[0] == {"tag": kept_category, "kind": "category"}
        assert all(p["tag"] != kept_category for p in shown.predicted)
    assert right / len(info["hidden"]) >= UNLABELLED_ACCURACY, right

    # Predicting again replaces the predictions and still leaves every human label alone.
    before = _labels(database)
    summary = tag_catalog(settings, database)
    assert summary.predicted == summary.selected and not summary.missing
    assert _labels(database) == before


def _labels(database: Database) -> dict[str, tuple[str | None, list[str]]]:
    with database.session() as session:
        return {v.video_id: (v.category, list(v.tags)) for v in session.scalars(select(Video))}


def test_a_concatenated_video_gets_two_spans_at_the_right_times(
    catalog: tuple[Settings, Database, dict], tmp_path: Path
) -> None:
    settings, database, info = catalog
    corpus = info["corpus"]
    first = next(v for v in corpus.videos if v.video_id not in info["hidden"])
    second = next(
        v for v in corpus.videos if v.category != first.category and v.video_id in info["hidden"]
    )
    train_tags(settings, database, predict=False)
    joined = tmp_path / "joined" / "joined.mp4"
    parts = concatenate_videos(
        [corpus.out_dir / first.file, corpus.out_dir / second.file], joined, width=96, height=72
    )
    assert ingest_paths(settings, database, [joined]).ok

    tag_catalog(settings, database, video_ids=["joined"])

    with database.session() as session:
        video = session.scalars(select(Video).where(Video.video_id == "joined")).one()
        found = stored_tags(session, video)
    spans = {p["tag"]: p["spans"] for p in found.predicted if p["kind"] == "category"}
    assert found.segments_disagree and set(found.segment_labels) == {
        first.category,
        second.category,
    }
    for part, category in zip(parts, (first.category, second.category), strict=True):
        assert len(spans[category]) == 1, spans
        span = spans[category][0]
        assert abs(span["start_s"] - part.start_s) <= EDGE_TOLERANCE_S, (category, span, part)
        assert abs(span["end_s"] - part.end_s) <= EDGE_TOLERANCE_S, (category, span, part)


def test_bad_labels_are_refused_or_left_out_with_a_warning(
    catalog: tuple[Settings, Database, dict],
) -> None:
    settings, database, info = catalog
    hidden = info["hidden"]
    with database.session() as session:
        videos = list(session.scalars(select(Video).where(Video.category.is_not(None))))
        one_class = videos[0].category
        for video in videos:  # a single category in the whole catalog
            video.category = one_class
    with pytest.raises(TagsError, match="needs at least 2 categories"):
        train_tags(settings, database)
    assert current_tags_version(settings) is None

    with database.session() as session:  # back to the truth, plus a lone category ...
        for video in session.scalars(select(Video)):
            video.category = None if video.video_id in hidden else info["truth"][video.video_id]
        lone = session.scalars(select(Video).where(Video.video_id == hidden[0])).one()
        lone.category = "lonely"
        failed = session.scalars(select(Video).where(Video.video_id == hidden[1])).one()
        failed.category, failed.status = "ghost", VideoStatus.FAILED.value  # ... and a failed one
    result = train_tags(settings, database)

    assert any("lonely" in w and "fewer than 2" in w for w in result.warnings)
    assert any("failed" in w for w in result.warnings)
    assert "lonely" not in result.heads["category"]["classes"]
    assert "ghost" not in result.heads["category"]["classes"]
    with database.session() as session:
        predicted = {row.video_key for row in session.scalars(select(PredictedTag))} | {
            row.video_key for row in session.scalars(select(TagPredictionState))
        }
        failed_key = session.scalars(select(Video.id).where(Video.video_id == hidden[1])).one()
        assert failed_key not in predicted  # a failed video is not tagged either
        failed_video = session.get(Video, failed_key)
        assert failed_video is not None and failed_video.category == "ghost"  # label kept


def test_eval_reports_cross_validated_figures_beside_the_baselines(
    sqlite_catalog: tuple[Settings, Database, dict],
) -> None:
    settings, database, _ = sqlite_catalog
    report = evaluate_tags(settings, database, TagsOptions(), seeds=range(2))
    figures = report["categories"]
    assert figures["classes"] == 4 and figures["videos"] == 24
    assert figures["top1_accuracy"]["mean"] >= 0.8
    assert figures["top1_accuracy"]["mean"] > figures["majority_accuracy"]["mean"] + 0.3
    assert figures["macro_f1"]["mean"] > figures["random_macro_f1"]["mean"]

"""Matched moments: a video made by concatenating two known clips is matched, for a query that
is one of the clips, in the half that holds it; through the real pipeline (ingest, stage-A
features in the feature cache, a seeded model, a published index)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from recsys.db import Database
from recsys.db.models import FeatureCacheEntry, Video
from recsys.features import VideoFeatures
from recsys.settings import Settings
from recsys.synth import generate_corpus
from recsys.synth.concat import concatenate_videos
from serving import pipeline
from serving.errors import WouldBlock
from serving.moments import SegmentSequences, best_moment, best_moments
from serving.pipeline import run
from serving.plan import ByExamples, ByVideo, QueryPlan, Rerank
from tests.features.damage import flip_entry_byte
from tests.serving.catalog import save_seeded_model
from tests.serving.conftest import serving_state


def _catalog(settings: Settings, database: Database, tmp_path: Path) -> dict[str, float]:
    """Three synthetic clips of different topics and ``ab`` = clip a then clip b, embedded by
    a seeded model and indexed; returns where clip b starts in ``ab`` and the clip ids."""

    from index import BuildOptions, build_index
    from recsys import media
    from recsys.choices import GpuMode
    from recsys.features import get_extractor
    from recsys.ingest import ingest_paths
    from recsys.refresh import RefreshOptions, run_refresh

    info = generate_corpus(tmp_path / "clips", videos=3, topics=3, seconds=3.0, seed=4)
    files = [info.out_dir / v.file for v in info.videos]
    joined = tmp_path / "clips" / "ab.mp4"
    parts = concatenate_videos(files[:2], joined, width=160, height=120)
    assert ingest_paths(settings, database, [*files, joined]).ok
    extractor = get_extractor("content")
    features = [
        extractor.extract(
            media.decode_video(
                path,
                num_frames=settings.frames_per_video,
                size=settings.frame_size,
                sample_rate=settings.audio_sample_rate,
            )
        )
        for path in files
    ]
    version = save_seeded_model(settings, database, extractor, features)
    summary = run_refresh(settings, database, RefreshOptions(model_version=version, workers=1))
    assert summary.embedded == 4
    build_index(settings, database, BuildOptions(model_version=version, gpu=GpuMode.OFF))
    return {"b_starts": parts[1].start_s, "ab_ends": parts[1].end_s}


def test_a_moment_points_at_the_half_of_the_concatenation_that_holds_the_query(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    where = _catalog(settings, database, tmp_path)
    state = serving_state(settings, database)
    every = Rerank(dedup=False)
    for query, low, high in (
        ("syn0000", 0.0, where["b_starts"]),
        ("syn0001", where["b_starts"], where["ab_ends"]),
    ):
        body = run(state, QueryPlan(ByVideo(query), k=3, rerank=every, moments=True))
        moments = {item["video_id"]: item["moment"] for item in body["results"]}
        assert "ab" in moments, body
        moment = moments["ab"]
        assert moment is not None and moment["missing"] is None, moment
        middle = (moment["start_s"] + moment["end_s"]) / 2
        assert low <= middle <= high, (query, moment, where)
        assert 0.0 <= moment["query_start_s"] < moment["query_end_s"] <= 3.5
        assert np.isfinite(moment["similarity"])
    # without a catalog video as the query there is nothing to match: each result says so
    examples = run(state, QueryPlan(ByExamples(("syn0000",)), k=2, moments=True))
    assert all(item["moment"]["missing"] for item in examples["results"])
    plain = run(state, QueryPlan(ByVideo("syn0000"), k=2))
    assert all(item["moment"] is None for item in plain["results"])


def test_a_result_whose_cached_entry_is_damaged_says_so_and_the_others_match(
    settings: Settings, database: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _catalog(settings, database, tmp_path)
    with database.session() as session:
        content_hash = session.scalars(select(Video.content_hash).where(Video.video_id == "ab"))
        [(path, row)] = session.execute(
            select(FeatureCacheEntry.path, FeatureCacheEntry.row).where(
                FeatureCacheEntry.content_hash == content_hash.one()
            )
        ).all()
    assert row is not None  # a packed entry
    pack = settings.features_dir / path
    flip_entry_byte(pack, "visual_seq", row)  # one bit, in place: only its checksum can tell
    state = serving_state(settings, database)
    with caplog.at_level(logging.WARNING, logger="serving.moments"):
        body = run(
            state, QueryPlan(ByVideo("syn0000"), k=3, rerank=Rerank(dedup=False), moments=True)
        )
    moments = {item["video_id"]: item["moment"] for item in body["results"]}
    assert set(moments) == {"ab", "syn0001", "syn0002"}
    assert moments["ab"]["missing"] == "no segment features in the feature cache"
    for video_id in ("syn0001", "syn0002"):  # the other entries of the same pack still read
        assert moments[video_id]["missing"] is None and moments[video_id]["end_s"] > 0
    [warning] = [r.getMessage() for r in caplog.records]
    assert str(pack) in warning and "fails its checksum" in warning


def test_a_worker_keeps_the_sequences_it_compared_and_answers_inline_from_them(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    _catalog(settings, database, tmp_path)
    plan = QueryPlan(ByVideo("syn0000"), k=3, rerank=Rerank(dedup=False), moments=True)
    kept = serving_state(settings, database)
    with pytest.raises(WouldBlock):  # nothing kept yet: on the event loop it would read
        run(kept, plan, inline=True)
    first = run(kept, plan)  # in a thread, as the API does then
    assert run(kept, plan, inline=True) == first  # kept: answered from memory
    assert pipeline._run(kept, plan) == first  # the plain shortcut gave the pipeline's moments
    settings.moments_memory_mb = 0  # a worker that keeps nothing reads every time
    unkept = serving_state(settings, database)
    assert run(unkept, plan)["results"] == first["results"]
    with pytest.raises(WouldBlock):
        run(unkept, plan, inline=True)
    shutil.rmtree(settings.features_dir)  # the cache is gone: only what a worker kept is left
    assert run(kept, plan)["results"] == first["results"]
    again = run(unkept, plan)["results"]
    assert all(item["moment"]["missing"] for item in again)


VISUAL, AUDIO = 24, 8


def _planted(
    rng: np.random.Generator, query: VideoFeatures, count: int, at: int, audio: bool
) -> VideoFeatures:
    """A video of ``count`` random segments whose segments ``at..at+2`` are query segments
    2..4 (slightly perturbed; inside both videos, so the stretch has neighbours on either side),
    with or without audio."""
    visual = rng.normal(size=(count, VISUAL)).astype(np.float32)
    assert query.visual_seq is not None and query.audio_seq is not None
    visual[at : at + 3] = query.visual_seq[2:5] + 0.05 * rng.normal(size=(3, VISUAL))
    sound = None
    if audio:
        sound = rng.normal(size=(count, AUDIO)).astype(np.float32)
        sound[at : at + 3] = query.audio_seq[2:5]
    return VideoFeatures.from_sequences("content", "1", visual, sound)


def _query(rng: np.random.Generator) -> VideoFeatures:
    """An 8-segment query video with audio, for results planted from its segments 2..4."""
    visual = rng.normal(size=(8, VISUAL)).astype(np.float32)
    return VideoFeatures.from_sequences(
        "content", "1", visual, rng.normal(size=(8, AUDIO)).astype(np.float32)
    )


def test_a_page_of_results_of_different_lengths_each_points_at_its_planted_stretch() -> None:
    """Results compared together (padded to one length) match as each would alone."""
    rng = np.random.default_rng(7)
    query = _query(rng)
    layouts = [(12, 7, True), (5, 1, True), (20, 9, False), (6, 2, True), (17, 13, False)]
    others = [(_planted(rng, query, n, at, audio), 2.0 * n) for n, at, audio in layouts]
    moments = best_moments(query, 8.0, others)
    for (_, at, _), (other, duration), moment in zip(layouts, others, moments, strict=True):
        assert moment is not None
        spans = (moment.query_start_s, moment.query_end_s, moment.start_s, moment.end_s)
        # query segment 3 (the middle of 2..4) with the middle of the planted stretch
        assert spans == pytest.approx((3.0, 4.0, 2.0 * (at + 1), 2.0 * (at + 2)))
        alone = best_moment(query, 8.0, other, duration)
        assert alone == moment
        assert moment.similarity > 0.9


@pytest.mark.parametrize("equal_lengths", [True, False])
def test_videos_kept_in_memory_match_as_features_read_from_the_cache(equal_lengths: bool) -> None:
    """Kept videos (:class:`SegmentSequences`) carry their compared rows, made once; a page of
    them, padded or not, gives the moments of the same features read afresh."""
    rng = np.random.default_rng(11)
    query = _query(rng)
    layouts = [(8, 1, True), (8, 4, False), (8, 3, True), (8, 0, True)]
    if not equal_lengths:
        layouts += [(14, 9, True), (5, 1, False)]
    others = [(_planted(rng, query, n, at, audio), 2.0 * n) for n, at, audio in layouts]

    def kept(video: VideoFeatures) -> SegmentSequences:
        return SegmentSequences(np.array(video.visual_seq), video.audio_seq)

    fresh = best_moments(query, 8.0, others)
    remembered = best_moments(kept(query), 8.0, [(kept(v), d) for v, d in others])
    assert remembered == fresh and all(m is not None for m in fresh)

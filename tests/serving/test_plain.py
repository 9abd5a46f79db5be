"""The plain-query shortcut (:mod:`serving.plain`) answers exactly as the general pipeline,
and leaves every list it cannot settle to it: planted near-duplicates, hidden, failed and
deleted videos, short lists, other indexes."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recsys.choices import SimilarSource
from recsys.db import Database
from recsys.settings import Settings
from serving import pipeline, plain
from serving.errors import ServingError
from serving.plan import ByVideo, Filters, QueryPlan, Rerank
from serving.state import ServingState
from tests.serving.catalog import TinyCatalog, build_catalog
from tests.serving.conftest import serving_state

PLAIN_PLANS = [
    QueryPlan(ByVideo("v000")),
    QueryPlan(ByVideo("v000"), k=1),
    QueryPlan(ByVideo("v000"), k=5, source=SimilarSource.CONTENT),
    QueryPlan(ByVideo("v000"), k=7, rerank=Rerank(dedup=False)),
    QueryPlan(ByVideo("v000"), k=4, moments=True),
    QueryPlan(ByVideo("v000"), k=6, explain=True),
    QueryPlan(ByVideo("v000"), k=3, explain=True, moments=True),
]


def _compare_all(state: ServingState, videos: list[str]) -> tuple[int, int]:
    """Every plain plan of every video: the same answer (or the same error) with and without
    the shortcut; (answered by the shortcut, left to the pipeline)."""
    shortcut = fallback = 0
    for video in videos:
        for template in PLAIN_PLANS:
            plan = replace(template, query=ByVideo(video))
            assert plain.covers(state, plan)
            try:
                expected = pipeline._run(state, plan)
            except ServingError as error:
                assert plain.answer(state, plan) is None
                with pytest.raises(type(error)):
                    pipeline.run(state, plan)
                fallback += 1
                continue
            quick = plain.answer(state, plan)
            if quick is None:
                fallback += 1
            else:
                assert quick == expected, (video, plan)
                shortcut += 1
            assert pipeline.run(state, plan) == expected
    return shortcut, fallback


def test_the_shortcut_answers_as_the_pipeline_and_leaves_duplicates_to_it(
    settings: Settings, database: Database
) -> None:
    catalog = build_catalog(
        settings, database, channel_of=lambda i: f"ch{i % 4}", planted=12, index_factory="IVF4,Flat"
    )
    state = serving_state(settings, database)
    videos = sorted(catalog.video_keys)  # served, failed, deleted and not embedded ones
    shortcut, fallback = _compare_all(state, videos)
    assert shortcut > 100 and fallback > 12  # both ways taken
    # an original next to its planted copy is left to the pipeline, which drops the copy
    plan = QueryPlan(ByVideo("v003"))
    assert plain.answer(state, plan) is None
    assert pipeline.run(state, plan)["duplicates_removed"] >= 1


@pytest.mark.parametrize("factory", ["Flat", "IVF4,Flat"])
def test_a_video_hidden_from_search_is_never_answered_nor_returned(
    settings: Settings, database: Database, factory: str
) -> None:
    catalog = build_catalog(settings, database, index_factory=factory)
    state = serving_state(settings, database)
    state.index.remove_ids(np.array([catalog.video_keys["v001"]]))
    shortcut, _ = _compare_all(state, ["v000", "v001", "v002", "v003"])
    assert shortcut > 0
    with pytest.raises(ServingError):
        pipeline.run(state, QueryPlan(ByVideo("v001")))
    for video in ("v000", "v002"):
        answer = pipeline.run(state, QueryPlan(ByVideo(video), k=20))
        assert "v001" not in [item["video_id"] for item in answer["results"]]


@pytest.mark.parametrize("factory", ["Flat", "OPQ4,IVF4,Flat", "IVF4,SQ8"])
def test_other_indexes_read_the_vectors_after_the_search(
    settings: Settings, database: Database, factory: str
) -> None:
    catalog = build_catalog(settings, database, n=300, index_factory=factory)
    state = serving_state(settings, database)
    shortcut, _ = _compare_all(state, sorted(catalog.served)[:20])
    assert shortcut > 0


def test_only_plain_plans_are_covered(catalog: TinyCatalog, state: ServingState) -> None:
    query = ByVideo("v000")
    not_plain = [
        QueryPlan(query, offset=1),
        QueryPlan(query, page_token="x"),
        QueryPlan(query, rerank=Rerank(diversity=0.5)),
        QueryPlan(query, rerank=Rerank(max_per_channel=2)),
        QueryPlan(query, filters=Filters(category="music")),
        QueryPlan(query, filters=Filters(min_score=0.5)),
        QueryPlan(query, source=SimilarSource.HYBRID),
    ]
    assert plain.covers(state, QueryPlan(query))
    assert plain.covers(state, QueryPlan(query, moments=True))
    assert plain.covers(state, QueryPlan(query, explain=True, moments=True))
    assert not any(plain.covers(state, plan) for plan in not_plain)

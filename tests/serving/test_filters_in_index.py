"""Category, channel and duration filters run inside the index (faiss ID selectors): one
shallow search, results equal to brute force over the admitted videos, selectors owned by the
snapshot, and a metadata change reaches the cached filters."""

from __future__ import annotations

import numpy as np

from recsys.db import Database
from recsys.db.models import Video
from recsys.settings import Settings
from serving.catalog import load_catalog
from serving.pipeline import run
from serving.plan import ByVideo, Filters, QueryPlan
from serving.selectors import FilterCodes, admitted_positions
from serving.state import ServingState
from tests.serving.catalog import TinyCatalog, build_catalog
from tests.serving.conftest import serving_state


def ids_of(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [item["video_id"] for item in body["results"]]


def test_a_selective_filter_is_answered_by_one_shallow_search(
    state: ServingState, catalog: TinyCatalog
) -> None:
    # 3 of 60 videos: "sports" (every third) between 20 and 28 seconds
    filters = Filters(category="sports", min_duration=20, max_duration=28)
    for query in ("v000", "v007", "v031"):
        body = run(state, QueryPlan(ByVideo(query), k=3, filters=filters))
        expected = catalog.expected(
            catalog.vectors[query],
            3,
            skip={query},
            category="sports",
            min_duration=20,
            max_duration=28,
        )
        assert ids_of(body) == expected and len(expected) == 3
        # k + the query itself + 1: the first round, no deeper one
        assert body["searched"] == 3 + 2
        assert body["partial"] is False


def test_selector_admits_exactly_the_brute_force_set(
    catalog: TinyCatalog, database: Database
) -> None:
    with database.session() as session:
        snapshot = load_catalog(session)
    codes = FilterCodes(
        category=snapshot.category_code("news"), min_duration=10.0, max_duration=40.0
    )
    selector = snapshot.selectors.selector(snapshot, codes)
    admitted = {
        video_id
        for video_id in catalog.served
        if catalog.categories[video_id] == "news" and 10 <= catalog.durations[video_id] <= 40
    }
    assert selector.count == len(admitted)
    members = {
        snapshot.video_ids[p]
        for p in range(len(snapshot))
        if selector.selector.is_member(int(snapshot.video_keys[p]))
    }
    assert members == admitted
    assert snapshot.selectors.selector(snapshot, codes) is selector  # cached by the snapshot
    with database.session() as session:
        other = load_catalog(session)
    assert not other.selectors.is_cached(other, codes)  # each snapshot has its own
    mask = admitted_positions(snapshot, FilterCodes(category=codes.category))
    assert not mask[snapshot.position("failed1")] and not mask[snapshot.position("deleted1")]


def test_a_category_change_reaches_the_filter(
    state: ServingState, catalog: TinyCatalog, database: Database
) -> None:
    moved = "v001"  # a music clip becomes news
    plan = QueryPlan(ByVideo("v000"), k=30, filters=Filters(category="news"))
    before = run(state, plan)
    assert moved not in ids_of(before)
    with database.session() as session:
        video = session.get(Video, int(catalog.video_keys[moved]))
        assert video is not None
        video.category = "news"
    with database.session() as session:
        assert state.catalog.refresh(session) >= 1
    body = run(state, plan)
    assert moved in ids_of(body)
    assert all(item["category"] == "news" for item in body["results"])
    scores = [item["score"] for item in body["results"]]
    assert scores == sorted(scores, reverse=True) and np.isfinite(scores).all()


def test_an_unknown_category_or_channel_says_so(state: ServingState) -> None:
    body = run(state, QueryPlan(ByVideo("v000"), filters=Filters(category="no-such")))
    assert body["results"] == [] and body["unknown_category"] is True
    body = run(state, QueryPlan(ByVideo("v000"), filters=Filters(channel="no-such")))
    assert body["results"] == [] and body["unknown_channel"] is True
    plain = run(state, QueryPlan(ByVideo("v000")))
    assert plain["unknown_category"] is False and len(plain["results"]) == 10


def test_channel_filters_run_in_the_index(settings: Settings, database: Database) -> None:
    catalog = build_catalog(settings, database, channel_of=lambda i: f"c{i % 5}")
    state = serving_state(settings, database)
    query = catalog.vectors["v002"]
    only = run(state, QueryPlan(ByVideo("v002"), k=8, filters=Filters(channel="c1")))
    admitted = {v for v in catalog.served if catalog.channels[v] == "c1"}
    assert ids_of(only) == catalog.expected(
        query, 8, skip={"v002"} | (set(catalog.served) - admitted)
    )
    assert {item["channel"] for item in only["results"]} == {"c1"}
    without = run(
        state,
        QueryPlan(ByVideo("v002"), k=8, filters=Filters(exclude_channels=("c1", "c2", "nobody"))),
    )
    excluded = {v for v in catalog.served if catalog.channels[v] in ("c1", "c2")}
    assert ids_of(without) == catalog.expected(query, 8, skip={"v002"} | excluded)

"""Issue 16: category and duration filters of GET /similar run inside the index (faiss ID
selectors): one shallow search, results equal to brute force over the admitted videos, and a
metadata change reaches the cached filters."""

from __future__ import annotations

import time

import numpy as np
from fastapi.testclient import TestClient

from api.catalog_cache import load_catalog
from api.filter_selectors import admitted_positions, filter_selector
from recsys.db import Database
from recsys.db.models import Video
from tests.api.catalog import TinyCatalog


def ids_of(body: dict) -> list[str]:
    return [item["video_id"] for item in body["results"]]


def test_a_selective_filter_is_answered_by_one_shallow_search(
    client: TestClient, catalog: TinyCatalog
) -> None:
    # 3 of 60 videos: "sports" (every third) between 20 and 28 seconds
    params = {"k": 3, "category": "sports", "min_duration": 20, "max_duration": 28}
    for query in ("v000", "v007", "v031"):
        body = client.get(f"/similar/{query}", params=params).json()
        expected = catalog.expected(
            catalog.vectors[query],
            3,
            skip={query},
            category="sports",
            min_duration=20,
            max_duration=28,
        )
        assert ids_of(body) == expected and len(expected) == 3
        # k + the query itself + 1: the first round; widening used to go 4x deeper per round
        assert body["searched"] == 3 + 2
        assert body["partial"] is False


def test_selector_admits_exactly_the_brute_force_set(
    catalog: TinyCatalog, database: Database
) -> None:
    with database.session() as session:
        snapshot = load_catalog(session)
    code = snapshot.category_code("news")
    selector = filter_selector(snapshot, code, 10.0, 40.0)
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
    assert filter_selector(snapshot, code, 10.0, 40.0) is selector  # cached per snapshot
    mask = admitted_positions(snapshot, code, None, None)
    assert not mask[snapshot.position("failed1")] and not mask[snapshot.position("deleted1")]


def test_a_category_change_reaches_the_filter(
    client: TestClient, catalog: TinyCatalog, database: Database
) -> None:
    moved = "v001"  # a music clip becomes news
    before = client.get("/similar/v000", params={"k": 30, "category": "news"}).json()
    assert moved not in ids_of(before)
    with database.session() as session:
        video = session.get(Video, int(catalog.video_keys[moved]))
        assert video is not None
        video.category = "news"
    deadline = time.monotonic() + 10
    while True:
        body = client.get("/similar/v000", params={"k": 30, "category": "news"}).json()
        if moved in ids_of(body) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert moved in ids_of(body)
    assert all(item["category"] == "news" for item in body["results"])
    scores = [item["score"] for item in body["results"]]
    assert scores == sorted(scores, reverse=True) and np.isfinite(scores).all()

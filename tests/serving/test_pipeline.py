"""The query pipeline without HTTP: hybrid lists ranked by true scores (the first k a prefix of
any longer list), near-duplicates and channel caps, diversity, and pages that agree with one
request."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from recsys.db import Database
from recsys.events.hybrid import DEFAULT_BLEND
from recsys.ingest import load_related
from recsys.settings import Settings
from serving.errors import StalePageToken
from serving.pipeline import run
from serving.plan import ByExamples, ByVideo, Filters, QueryPlan, Rerank
from serving.rerank import maximal_marginal_relevance
from serving.state import ServingState
from tests.serving.catalog import TinyCatalog, build_catalog, publish
from tests.serving.conftest import serving_state

#: v004's partners: v055 and v041 lie far from v004 in content, v010 near.
PAIRS = [
    ("v004", "v010", 5.0),
    ("v004", "v055", 3.0),
    ("v041", "v004", 1.0),
    ("v004", "v020", 2.0),
    ("v010", "v020", 2.0),
]


def ids_of(body: dict) -> list[str]:  # type: ignore[type-arg]
    return [item["video_id"] for item in body["results"]]


def _with_graph(settings: Settings, database: Database, catalog: TinyCatalog) -> ServingState:
    path = Path(settings.resolved_home) / "pairs.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_a", "video_b", "weight"])
        writer.writerows(PAIRS)
    load_related(settings, database, path, source="events")
    catalog.index_version = publish(settings, database, catalog)
    return serving_state(settings, database)


def test_hybrid_top_k_ranks_by_true_scores_and_is_a_prefix_of_any_longer_list(
    catalog: TinyCatalog, settings: Settings, database: Database
) -> None:
    state = _with_graph(settings, database, catalog)
    lists = {k: ids_of(run(state, QueryPlan(ByVideo("v004"), k=k))) for k in (5, 12, 20)}
    assert lists[5] == lists[12][:5] and lists[12] == lists[20][:12]
    assert lists[20] == [v for v, _ in catalog.blended("v004", PAIRS, DEFAULT_BLEND, 20)]
    body = run(state, QueryPlan(ByVideo("v004"), k=20, explain=True))
    assert body["source"] == "hybrid"
    sources = {item["video_id"]: item["source"] for item in body["results"]}
    assert sources["v010"] in ("both", "collaborative") and sources[lists[20][-1]] is not None
    # a far partner keeps its real (low) content similarity: ranked behind near content
    # neighbours instead of being placed by a similarity of 0
    scores = [item["score"] for item in body["results"]]
    assert scores == sorted(scores, reverse=True)


def test_planted_duplicates_and_a_dominant_channel_give_a_deduplicated_capped_list(
    settings: Settings, database: Database
) -> None:
    # half of the videos on one channel; dup000..dup011 copy v000..v011
    catalog = build_catalog(
        settings,
        database,
        channel_of=lambda i: "big" if i % 2 == 0 else f"small-{i}",
        planted=12,
    )
    state = serving_state(settings, database)
    for query in ("v000", "v003", "v007"):
        plain = run(state, QueryPlan(ByVideo(query), k=10, rerank=Rerank(dedup=False)))
        raw = ids_of(plain)
        assert any(catalog.duplicate_of.get(v) == query for v in raw)  # the planted copy
        body = run(state, QueryPlan(ByVideo(query), k=10, rerank=Rerank(max_per_channel=2)))
        returned = ids_of(body)
        assert len(returned) == 10
        originals = [catalog.duplicate_of.get(v, v) for v in returned]
        assert query not in originals and len(set(originals)) == len(originals)
        channels = [catalog.channels[v] for v in returned]
        assert channels.count("big") == 2
        assert body["duplicates_removed"] >= 1 and body["channel_capped"] >= 1
        # what is left is the plain list with the duplicates and the over-cap videos taken out
        deep = ids_of(run(state, QueryPlan(ByVideo(query), k=60, rerank=Rerank(dedup=False))))
        expected, seen, big = [], {query}, 0
        for video in deep:
            original = catalog.duplicate_of.get(video, video)
            if original in seen:
                continue
            seen.add(original)
            if catalog.channels[video] == "big":
                if big == 2:
                    continue
                big += 1
            expected.append(video)
        assert returned == expected[:10]


def test_the_same_content_hash_is_a_duplicate_however_far_the_embeddings(
    settings: Settings, database: Database
) -> None:
    catalog = build_catalog(settings, database, planted=2)
    state = serving_state(settings, database)
    strict = Rerank(duplicate_similarity=1.1)  # no distance is close enough
    body = run(state, QueryPlan(ByVideo("v000"), k=20, rerank=strict))
    assert "dup000" not in ids_of(body)  # same hash as the query
    examples = run(state, QueryPlan(ByExamples(("v001",)), k=20, rerank=strict))
    assert "dup001" in ids_of(examples)  # a re-encode: its own hash, kept at this threshold
    assert catalog.duplicate_of["dup001"] == "v001"


def test_diversity_zero_is_the_plain_ranking_and_more_diversity_spreads_the_list(
    state: ServingState, catalog: TinyCatalog
) -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(30, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = np.sort(rng.uniform(size=30))[::-1]
    assert maximal_marginal_relevance(relevance, vectors, 0.0, 30).tolist() == list(range(30))
    plain = run(state, QueryPlan(ByVideo("v002"), k=12))
    zero = run(state, QueryPlan(ByVideo("v002"), k=12, rerank=Rerank(diversity=0.0)))
    assert (
        ids_of(zero)
        == ids_of(plain)
        == catalog.expected(catalog.vectors["v002"], 12, skip={"v002"})
    )
    diverse = run(state, QueryPlan(ByVideo("v002"), k=12, rerank=Rerank(diversity=0.7, pool=40)))
    assert len(diverse["results"]) == 12 and diverse["pool"] == 40
    assert ids_of(diverse)[0] == ids_of(plain)[0]  # nothing chosen yet: the most similar

    def spread(ids: list[str]) -> float:
        v = np.stack([catalog.vectors[i] for i in ids])
        gram = v @ v.T
        return float(gram[np.triu_indices(len(ids), 1)].mean())

    assert spread(ids_of(diverse)) < spread(ids_of(plain))
    categories = {catalog.categories[v] for v in ids_of(diverse)}
    assert len(categories) > len({catalog.categories[v] for v in ids_of(plain)[:3]})


@pytest.mark.parametrize(
    "rerank",
    [Rerank(), Rerank(dedup=False), Rerank(max_per_channel=3), Rerank(diversity=0.5, pool=50)],
)
def test_pages_concatenated_equal_one_request(
    settings: Settings, database: Database, rerank: Rerank
) -> None:
    build_catalog(settings, database, channel_of=lambda i: f"c{i % 20}", planted=6)
    state = serving_state(settings, database)
    filters = Filters(min_duration=6)
    whole = ids_of(run(state, QueryPlan(ByVideo("v001"), k=40, filters=filters, rerank=rerank)))
    assert len(whole) == 40
    by_offset = []
    for offset in range(0, 40, 7):
        plan = QueryPlan(ByVideo("v001"), k=7, filters=filters, rerank=rerank, offset=offset)
        by_offset += ids_of(run(state, plan))
    assert by_offset[:40] == whole
    by_token, token = [], None
    while len(by_token) < 40:
        plan = QueryPlan(ByVideo("v001"), k=5, filters=filters, rerank=rerank, page_token=token)
        body = run(state, plan)
        by_token += ids_of(body)
        token = body["next_page_token"]
        assert token is not None
    assert by_token == whole
    assert len(set(whole)) == 40


def test_a_page_token_of_another_index_version_is_refused(
    state: ServingState, catalog: TinyCatalog, settings: Settings, database: Database
) -> None:
    first = run(state, QueryPlan(ByVideo("v001"), k=5))
    token = first["next_page_token"]
    assert token is not None
    catalog.index_version = publish(settings, database, catalog)
    newer = serving_state(settings, database)
    assert newer.index_version != state.index_version
    with pytest.raises(StalePageToken):
        run(newer, QueryPlan(ByVideo("v001"), k=5, page_token=token))
    second = run(state, QueryPlan(ByVideo("v001"), k=5, page_token=token))
    assert second["offset"] == 5


def test_min_score_cuts_the_list(state: ServingState) -> None:
    plain = run(state, QueryPlan(ByVideo("v001"), k=30))
    floor = plain["results"][9]["score"]
    cut = run(state, QueryPlan(ByVideo("v001"), k=30, filters=Filters(min_score=floor)))
    assert ids_of(cut) == ids_of(plain)[:10] and cut["exhausted"] is True
    assert cut["next_page_token"] is None

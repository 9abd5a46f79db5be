"""Time-split evaluation: train on the co-watch before T, score on the co-watch after.

Hand-made graphs with known answers for the metrics and the warm/cold split; a small synthetic
corpus and log through the library; ``recsys eval --events --split-at`` through the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from orchestration.cli.main import app
from recsys.events import CowatchGraph, EventOptions, EventStore
from recsys.features import VideoFeatures, get_extractor
from recsys.media import decode_video
from recsys.settings import Settings
from recsys.synth import generate_corpus, generate_events
from training import TrainConfig
from training.evaluation import retrieval_metrics
from training.timesplit import (
    TimeSplit,
    evaluate_time_split,
    holdout_newest,
    parse_split_time,
    random_expectation,
    ranked_metrics,
    strongest_pairs,
    top_k,
)

CPU = torch.device("cpu")
T = datetime(2024, 1, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[int], list]:
    """24 short videos of 4 topics with content features."""
    out = tmp_path_factory.mktemp("split-corpus")
    info = generate_corpus(out, videos=24, topics=4, seconds=1.0, seed=0, width=96, height=72)
    extractor = get_extractor("content")
    features = [
        extractor.extract(decode_video(out / v.file, num_frames=6, size=64)) for v in info.videos
    ]
    names = sorted({v.category for v in info.videos})
    return (
        [v.video_id for v in info.videos],
        [names.index(v.category) for v in info.videos],
        features,
    )


def test_ranked_metrics_match_the_training_metrics_on_embeddings() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    relevant = [rng.choice(40, size=rng.integers(1, 6), replace=False) for _ in range(40)]
    relevant = [np.setdiff1d(r, [i]) if i in r else r for i, r in enumerate(relevant)]
    relevant = [r if r.size else None for r in relevant]
    ours = ranked_metrics(list(top_k(vectors, 10)), relevant, 39, (5, 10))
    theirs = retrieval_metrics(vectors, relevant, ks=(5, 10))
    for key in ("recall@5", "recall@10", "ndcg@5", "ndcg@10"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-6)
    # The random expectation is what random rankings give on average.
    drawn = [
        ranked_metrics([rng.permutation(39) for _ in range(40)], relevant, 39, (10,))["recall@10"]
        for _ in range(300)
    ]
    expected = random_expectation(relevant, 39, (10,))["recall@10"]
    assert float(np.mean(drawn)) == pytest.approx(expected, abs=0.01)


def test_parse_split_time() -> None:
    assert parse_split_time("2024-01-20") == T
    assert parse_split_time("2024-01-20T02:00:00+02:00") == T
    assert parse_split_time(str(int(T.timestamp()))) == T
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_split_time("next tuesday")


def _graph(pairs: list[tuple[str, str, float]]) -> CowatchGraph:
    return CowatchGraph(
        video_a=[a for a, _, _ in pairs],
        video_b=[b for _, b, _ in pairs],
        weight=np.array([w for _, _, w in pairs]),
    )


def test_warm_and_cold_by_first_event_and_collaborative_knows_only_the_past(
    corpus: tuple[list[str], list[int], list[VideoFeatures]],
) -> None:
    ids, topics, features = corpus
    same = [
        (a, b) for i, a in enumerate(ids) for b in ids[i + 1 :] if topics[ids.index(b)] == topics[i]
    ]
    cold = {ids[0], ids[1]}  # first seen after T
    past = [(a, b, 1.0) for a, b in same if a not in cold and b not in cold]
    future = [(a, b, 1.0) for a, b in same]
    split = TimeSplit(
        video_ids=ids,
        features=features,
        past=_graph(past),
        future=_graph(future),
        first_seen={v: T + (timedelta(days=1) if v in cold else -timedelta(days=5)) for v in ids},
        split_at=T,
    )
    config = TrainConfig(epochs=3, dim=16, hidden=32, batch_size=16, progress=False)
    report = evaluate_time_split(split, config, device=CPU)
    assert report["cold"]["random"]["queries"] == 2
    assert report["warm"]["random"]["queries"] == len(ids) - 2
    # The past graph holds every warm answer but the cold topic-mates (5 mates each, k = 10):
    # collaborative finds exactly those, and nothing for the cold videos; hybrid ranks a cold
    # video by the model alone.
    mates = {
        v: [b for b in ids if b != v and topics[ids.index(b)] == topics[ids.index(v)]] for v in ids
    }
    expected = np.mean([len(set(mates[v]) - cold) / len(mates[v]) for v in ids if v not in cold])
    assert report["warm"]["collaborative"]["recall@10"] == pytest.approx(expected)
    assert report["cold"]["collaborative"]["recall@10"] == 0.0
    assert report["cold"]["hybrid"] == report["cold"]["learned"]
    assert report["warm"]["hybrid"]["recall@10"] >= expected
    assert 0 < report["warm"]["random"]["recall@10"] < report["warm"]["content"]["recall@10"]
    assert set(report["goals"]) >= {
        "warm_hybrid_at_least_best_single",
        "cold_learned_at_least_content_plus_0.1",
    }


@pytest.mark.slow
def test_recsys_eval_events_split_at_through_the_cli(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    """ingest videos -> recsys eval --events LOG --split-at T: the JSON table."""
    corpus = tmp_path / "corpus"
    info = generate_corpus(corpus, videos=16, topics=4, seconds=1.0, seed=1, width=96, height=72)
    names = sorted({v.category for v in info.videos})
    log = generate_events(
        tmp_path / "log",
        [v.video_id for v in info.videos],
        [names.index(v.category) for v in info.videos],
        users=300,
        days=10,
        seed=0,
    )
    env = {"RECSYS_DATABASE_URL": sqlite_settings.database_url or "", "COLUMNS": "200"}
    home = ["--home", str(sqlite_settings.resolved_home)]
    runner = CliRunner()
    ingested = runner.invoke(app, ["ingest", str(info.manifest), *home], env=env)
    assert ingested.exit_code == 0, ingested.output
    split_at = (log.start + timedelta(days=7)).isoformat()
    out = tmp_path / "split.json"
    result = runner.invoke(
        app,
        [
            "eval",
            "--events",
            str(log.path),
            "--split-at",
            split_at,
            "--json",
            "-o",
            str(out),
            *home,
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["videos"] == 16 and report["past_pairs"] > 0
    for group in ("warm", "cold"):
        assert set(report[group]) == {"random", "content", "collaborative", "learned", "hybrid"}
    assert report["files"][0]["status"] == "added"
    with EventStore.open(sqlite_settings, EventOptions().source, create=False) as store:
        assert store.stats()["events"] == log.events  # the store holds the log; pairs untouched
    usage = runner.invoke(app, ["eval", "--events", str(log.path), *home], env=env)
    assert usage.exit_code == 2 and "--split-at" in usage.output


def test_the_newest_past_videos_are_held_out_to_choose_the_epoch() -> None:
    """Epochs are chosen on the newest videos with past co-watch, never on the future."""
    seen: list[datetime | None] = [T - timedelta(days=60 - i) for i in range(60)]
    seen[59] = None  # never seen: not a candidate
    pairs = np.array([(i, i + 1) for i in range(0, 58)] + [(3, 59)], np.int64)
    held = holdout_newest(seen, pairs, 0.25)
    # 59 candidates (58 linked + 3); the newest quarter by first event: 44..58
    assert held.tolist() == list(range(44, 59))
    assert holdout_newest(seen, pairs, 0.0).size == 0
    assert holdout_newest(seen, pairs, 0.1).size == 0  # 6 videos: too few to validate on
    apart = np.array([(i, 59 - i) for i in range(30)], np.int64)  # no pair among the newest
    assert holdout_newest(seen, apart, 0.3).size == 0


def test_the_model_trains_on_each_videos_strongest_partners() -> None:
    """A weak tail of partners would link every two videos of a group within two hops (no
    negatives left inside it); only pairs among either end's top N are trained on."""
    # videos 0-3 and 4-7: two series of one topic, strong inside, weak across
    strong = [(i, j, 10.0 + i + j) for i in range(8) for j in range(i + 1, 8) if i // 4 == j // 4]
    weak = [(i, j, 1.0) for i in range(8) for j in range(i + 1, 8) if i // 4 != j // 4]
    a, b, w = (np.array(x) for x in zip(*(strong + weak), strict=True))
    ka, kb, kw = strongest_pairs(a, b, w, 8, 3)
    assert {(int(x), int(y)) for x, y in zip(ka, kb, strict=True)} == {(i, j) for i, j, _ in strong}
    assert kw.tolist() == [x for *_, x in strong]
    ka, _, _ = strongest_pairs(a, b, w, 8, 0)  # 0: every pair
    assert ka.size == a.size

"""Time-split section of the quality benchmark: prints JSON when run alone.

The synthetic corpus of ``bench/quality.py`` (topics that pair up visually and, differently, by
audio; inside a topic, series that carry a faint watermark) gets a synthetic watch log
(``recsys.synth.generate_events``: drifting topic tastes, sessions that binge a series, Zipf
popularity, videos released over the period, bots). Its co-watch before T trains a late-fusion
model (pairs = related); its co-watch after T is the ground truth. Recall@10 and nDCG@10 of
random, content, collaborative (co-watch before T), learned and hybrid (learned +
collaborative, blended as the API serves), for warm and cold (first seen after T) videos; mean
and spread over seeds (the log and the model change with the seed).

    .venv/bin/python bench/timesplit.py [--videos 320] [--split-users 3000] [--split-seeds 3]

Goals: hybrid >= the best single source on warm; learned >= content + 0.1 recall@10 on cold.
``topic_oracle`` and ``series_oracle`` rank by the corpus's true topic / series (random order
inside one): what a content model reaches by recovering them (popularity is not in the pixels).
The content baseline sees the topics, not the series; the series are what co-watch can teach.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.events import EventOptions, EventStore
from recsys.settings import load_settings
from recsys.synth import generate_events
from recsys.synth.workspace import corpus_features, synthetic_corpus
from training import TrainConfig
from training.timesplit import METHODS, TimeSplit, evaluate_time_split

log = logging.getLogger("bench.timesplit")
ORACLES = ("topic_oracle", "series_oracle")
CPU = torch.device("cpu")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The section's options (shared with bench/quality.py)."""
    parser.add_argument("--split-users", type=int, default=3000, help="Users of the watch log.")
    parser.add_argument("--split-days", type=float, default=30.0)
    parser.add_argument("--split-at-day", type=float, default=20.0)
    parser.add_argument("--split-seeds", type=int, default=3)
    parser.add_argument("--split-epochs", type=int, default=30)
    parser.add_argument(
        "--split-holdout",
        type=float,
        default=0.0,
        help="Share of the newest past videos held out to choose the epoch (0: every epoch).",
    )


def _oracle(groups: list[int], seed: int) -> np.ndarray:
    """One-hot rows of a true grouping (ties broken at random): a ranking that knows it."""
    noise = np.random.default_rng(seed).normal(scale=1e-3, size=(len(groups), max(groups) + 1))
    return np.eye(max(groups) + 1)[groups] + noise


def one_run(
    args: argparse.Namespace,
    video_ids: list[str],
    topics: list[int],
    features: list,
    seed: int,
    series: list[int] | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        info = generate_events(
            Path(scratch),
            video_ids,
            topics,
            users=args.split_users,
            days=args.split_days,
            seed=seed,
            video_series=series,
        )
        settings = load_settings(Path(scratch) / "home")
        options = EventOptions(source="bench")
        split_at = info.start + timedelta(days=args.split_at_day)
        with EventStore.open(settings, "bench") as store:
            store.add_file(info.path, options)
            past = store.related(options, before=split_at)
            future = store.related(options, since=split_at)
            first_seen = store.first_seen()
    split = TimeSplit(
        video_ids=video_ids,
        features=features,
        past=past,
        future=future,
        first_seen=first_seen,
        split_at=split_at,
    )
    config = TrainConfig(
        fusion="late",  # type: ignore[arg-type]
        pairs="related",  # type: ignore[arg-type]
        epochs=args.split_epochs,
        patience=args.split_epochs,  # every epoch runs (kept by training loss or the holdout)
        seed=seed,
        progress=False,
    )
    # Rankings that know the true topics / series (random order inside one): what a content
    # model could reach by recovering them (popularity is not in the pixels).
    references = {"topic_oracle": _oracle(topics, seed)}
    if series is not None:
        references["series_oracle"] = _oracle(series, seed)
    report = evaluate_time_split(
        split, config, device=CPU, references=references, holdout=args.split_holdout
    )
    report["events"] = info.events
    return report


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over seeds of every figure of the warm and cold tables."""
    table: dict[str, Any] = {}
    for group in ("warm", "cold"):
        table[group] = {}
        for method in (*METHODS, *ORACLES):
            if method not in runs[0][group]:
                continue
            figures: dict[str, Any] = {}
            for key in ("recall@10", "ndcg@10"):
                values = [r[group][method].get(key) for r in runs]
                values = [v for v in values if v is not None]
                if values:
                    figures[key] = {
                        "mean": round(float(np.mean(values)), 4),
                        "std": round(float(np.std(values)), 4),
                    }
            figures["queries"] = [int(r[group][method].get("queries", 0)) for r in runs]
            table[group][method] = figures
    warm, cold = table["warm"], table["cold"]

    def mean(group: dict[str, Any], method: str) -> float:
        return float(group[method].get("recall@10", {}).get("mean", 0.0))

    best_single = max(mean(warm, m) for m in ("content", "collaborative", "learned"))
    table["goals"] = {
        "warm_hybrid_minus_best_single": round(mean(warm, "hybrid") - best_single, 4),
        "warm_hybrid_at_least_best_single": bool(mean(warm, "hybrid") >= best_single),
        "cold_learned_minus_content": round(mean(cold, "learned") - mean(cold, "content"), 4),
        "cold_learned_at_least_content_plus_0.1": bool(
            mean(cold, "learned") >= mean(cold, "content") + 0.1
        ),
        "per_seed": [r["goals"] for r in runs],
    }
    return table


def timesplit_section(args: argparse.Namespace, info: Any, features: list) -> dict[str, Any]:
    """The time-split table on the corpus ``info`` (a ``CorpusInfo``) and its features."""
    video_ids = [v.video_id for v in info.videos]
    names = sorted({v.category for v in info.videos})
    topics = [names.index(v.category) for v in info.videos]
    # The corpus's series (channels inside a topic) drive the sessions when it has them.
    series = [v.series for v in info.videos] if info.series_per_topic > 1 else None
    started = time.perf_counter()
    runs = []
    for seed in range(args.split_seeds):
        runs.append(one_run(args, video_ids, topics, features, seed, series))
        log.info("time split seed %d: %s", seed, runs[-1]["goals"])
    summary = summarise(runs)
    first = runs[0]
    return {
        "videos": len(video_ids),
        "users": args.split_users,
        "days": args.split_days,
        "split_at_day": args.split_at_day,
        "events": [r["events"] for r in runs],
        "past_pairs": [r["past_pairs"] for r in runs],
        "train_pairs": [r["train_pairs"] for r in runs],
        "learned_model": [r["learned_model"] for r in runs],
        "future_pairs": [r["future_pairs"] for r in runs],
        "seeds": args.split_seeds,
        "holdout": args.split_holdout,
        "series_per_topic": info.series_per_topic,
        "relevance": "co-watched after T (normalised, min support 2, top 50 partners)",
        "blend": first["blend"],
        "recall@10": {
            group: {
                m: summary[group][m].get("recall@10", {}).get("mean")
                for m in (*METHODS, *ORACLES)
                if m in summary[group]
            }
            for group in ("warm", "cold")
        },
        "table": {group: summary[group] for group in ("warm", "cold")},
        "goals": summary["goals"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=320)
    parser.add_argument("--topics", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/recsys-bench-quality"))
    parser.add_argument("--out", type=Path, default=None)
    add_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    info = synthetic_corpus(
        args.workdir, videos=args.videos, topics=args.topics, seconds=args.seconds
    )
    report = {"time_split": timesplit_section(args, info, corpus_features(info, args.workdir))}
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.out is not None:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

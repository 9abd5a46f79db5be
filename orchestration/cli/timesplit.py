"""``recsys eval --events FILE… --split-at T``: the time-split table (a thin wrapper over
:func:`training.timesplit.evaluate_events`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestration.cli.common import console, fail, print_json
from recsys.db import Database
from recsys.settings import Settings


def time_split_command(
    settings: Settings,
    database: Database,
    events: list[Path],
    split_at: str,
    as_json: bool,
    output: Path | None,
) -> None:
    """Evaluate, print the warm/cold table (or JSON), write the report when asked."""
    from training import TrainConfig
    from training.errors import TrainingError
    from training.timesplit import METHODS, evaluate_events, parse_split_time

    try:
        moment = parse_split_time(split_at)
    except TrainingError as error:
        raise fail(str(error), 2) from None
    config = TrainConfig(pairs="related", progress=not as_json)  # type: ignore[arg-type]
    report: dict[str, Any] = evaluate_events(settings, database, events, moment, config)
    if not as_json:
        console.print(
            f"time split at {report['split_at']}: {report['videos']} videos, "
            f"{report['past_pairs']} co-watch pairs before, {report['future_pairs']} after"
        )
        for group in ("warm", "cold"):
            section = report[group]
            queries = int(section["random"].get("queries", 0))
            console.print(f"{group} videos ({queries} with future co-watch):")
            for method in METHODS:
                figures = section[method]
                if "recall@10" in figures:
                    console.print(
                        f"  {method:>13}: recall@10 {figures['recall@10']:.3f}  "
                        f"nDCG@10 {figures['ndcg@10']:.3f}"
                    )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    if as_json:
        print_json(report)

"""``recsys eval``: score a model on a labelled manifest with the real-av protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from orchestration.cli.common import (
    JsonOption,
    ModelOption,
    console,
    deprecated,
    fail,
    print_json,
    with_database,
)
from recsys.db import Database
from recsys.settings import Settings


class JsonPathCompat(TyperCommand):
    """Until the next release, ``--json PATH`` (the old spelling) means ``--json --output PATH``.

    ``--json`` followed by a word that is not an option was the old report-file argument; every
    other command's ``--json`` is a flag, and so is this one's now.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # ctx: typer's click Context
        rewritten: list[str] = []
        rest = iter(args)
        for arg in rest:
            if arg == "--":
                rewritten += [arg, *rest]
                break
            if arg.startswith("--json="):
                path = arg.removeprefix("--json=")
                deprecated(f"--json={path}", f"--json --output {path}")
                rewritten += ["--json", "--output", path]
                continue
            if arg == "--json":
                following = next(rest, None)
                if following is not None and not following.startswith("-"):
                    deprecated(f"--json {following}", f"--json --output {following}")
                    rewritten += ["--json", "--output", following]
                    continue
                rewritten.append(arg)
                if following is not None:
                    rewritten.append(following)
                continue
            rewritten.append(arg)
        return super().parse_args(ctx, rewritten)


@with_database
def eval_command(
    settings: Settings,
    database: Database,
    manifest: Path | None = typer.Option(
        None, "--manifest", exists=True, dir_okay=False, help="CSV with file and category columns."
    ),
    events: list[Path] = typer.Option(
        [],
        "--events",
        help="Time-split evaluation on this home's catalog: watch-event files (CSV/Parquet) whose "
        "co-watch before --split-at trains a model and after it is the ground truth.",
    ),
    split_at: str | None = typer.Option(
        None, "--split-at", help="With --events: T, ISO 8601 (2024-01-20T00:00:00Z) or epoch s."
    ),
    model: ModelOption = None,
    as_json: JsonOption = False,
    output: Path | None = typer.Option(
        None, "--output", "-o", dir_okay=False, help="Also write the JSON report to this file."
    ),
    report_dir: Path | None = typer.Option(
        None,
        "--report",
        file_okay=False,
        help="Also write an HTML report with plots (precision@k, per category, training "
        "curves, top-5 neighbours) into this directory.",
    ),
    in_home: bool = typer.Option(
        False,
        "--in-home",
        help="Ingest into this home's catalog (features stay cached for the next run) instead "
        "of a temporary one.",
    ),
) -> None:
    """Ingest the manifest's videos, embed them and report precision@1/@5, mAP, same-source;
    or, with --events and --split-at, the time-split evaluation (recall@10, nDCG@10 of future
    co-watch for warm and cold videos)."""
    if events or split_at is not None:
        if manifest is not None or not events or split_at is None:
            raise fail("give --events FILE… with --split-at T (and no --manifest)", 2)
        from orchestration.cli.timesplit import time_split_command

        time_split_command(settings, database, events, split_at, as_json, output)
        return
    if manifest is None:
        raise fail("give --manifest CSV, or --events FILE… --split-at T", 2)
    from training.protocol import evaluate_manifest

    report: dict[str, Any] = evaluate_manifest(
        settings,
        database,
        manifest,
        model_version=model,
        scratch=not in_home,
        report_dir=report_dir,
    )
    # Cold queries first (clips whose pairs and label the training never used): their figures
    # are what a new upload gets; warm ones were trained on.
    for section in ("cold", "warm"):
        part = report.get(section, {})
        if "model" in part:
            console.print(
                f"{section + ' queries':>16}: P@5 model {part['model']['precision@5']:.3f}  "
                f"content {part['content_baseline']['precision@5']:.3f}  random "
                f"{part['random']['precision@5']:.3f}  ({part['queries']} queries)"
            )
    for name in ("model", "content_baseline", "random"):
        figures = report.get(name)
        if figures:
            console.print(
                f"{'all, ' + name:>24}: P@1 {figures['precision@1']:.3f}  "
                f"P@5 {figures['precision@5']:.3f}  mAP {figures['map']:.3f}  "
                f"same-source R@1 {report['same_source'][name]:.3f}"
            )
    if report_dir is not None:
        console.print(f"report: {report['report']}")
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, sort_keys=True))
    if as_json:
        print_json(report)


def register(root: typer.Typer) -> None:
    root.command("eval", cls=JsonPathCompat)(eval_command)

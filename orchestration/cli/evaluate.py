"""``recsys eval``: score a model on a labelled manifest with the real-av protocol."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from orchestration.cli.common import HomeOption, console, database_for, fail, print_json


def eval_command(
    manifest: Path = typer.Option(
        ..., "--manifest", exists=True, dir_okay=False, help="CSV with file and category columns."
    ),
    home: HomeOption = None,
    model: str | None = typer.Option(None, "--model", help="Model version (default: active)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report here."),
    in_home: bool = typer.Option(
        False,
        "--in-home",
        help="Ingest into this home's catalog (features stay cached for the next run) instead "
        "of a temporary one.",
    ),
) -> None:
    """Ingest the manifest's videos, embed them and report precision@1/@5, mAP, same-source."""
    from recsys.models import ModelNotFound
    from training.protocol import evaluate_manifest

    settings, database = database_for(home)
    try:
        report = evaluate_manifest(
            settings, database, manifest, model_version=model, scratch=not in_home
        )
    except (ModelNotFound, ValueError) as error:
        raise fail(str(error)) from None
    finally:
        database.dispose()
    for name in ("model", "content_baseline", "random"):
        figures = report.get(name)
        if figures:
            console.print(
                f"{name:>16}: P@1 {figures['precision@1']:.3f}  P@5 {figures['precision@5']:.3f}"
                f"  mAP {figures['map']:.3f}  same-source R@1 {report['same_source'][name]:.3f}"
            )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, sort_keys=True))
    print_json(report)


def register(root: typer.Typer) -> None:
    root.command("eval")(eval_command)

"""``recsys eval``: score a model on a labelled manifest with the real-av protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from orchestration.cli.common import ModelOption, console, deprecated, print_json, with_database
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
    manifest: Path = typer.Option(
        ..., "--manifest", exists=True, dir_okay=False, help="CSV with file and category columns."
    ),
    model: ModelOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    output: Path | None = typer.Option(
        None, "--output", "-o", dir_okay=False, help="Also write the JSON report to this file."
    ),
    in_home: bool = typer.Option(
        False,
        "--in-home",
        help="Ingest into this home's catalog (features stay cached for the next run) instead "
        "of a temporary one.",
    ),
) -> None:
    """Ingest the manifest's videos, embed them and report precision@1/@5, mAP, same-source."""
    from training.protocol import evaluate_manifest

    report: dict[str, Any] = evaluate_manifest(
        settings, database, manifest, model_version=model, scratch=not in_home
    )
    for name in ("model", "content_baseline", "random"):
        figures = report.get(name)
        if figures:
            console.print(
                f"{name:>16}: P@1 {figures['precision@1']:.3f}  P@5 {figures['precision@5']:.3f}"
                f"  mAP {figures['map']:.3f}  same-source R@1 {report['same_source'][name]:.3f}"
            )
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(report, indent=2, sort_keys=True))
    if as_json:
        print_json(report)


def register(root: typer.Typer) -> None:
    root.command("eval", cls=JsonPathCompat)(eval_command)

"""``recsys demo``: the whole pipeline on a synthetic corpus (or your videos), then serve."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from orchestration.cli.common import (
    JsonOption,
    StageWorkersOption,
    console,
    count_option,
    epochs_option,
    fusion_option,
    host_option,
    old_spelling,
    port_option,
    print_json,
    seconds_option,
    topics_option,
    with_database,
)
from orchestration.demo import DemoOptions, DemoReport
from recsys.choices import Fusion
from recsys.db import Database
from recsys.errors import UserError
from recsys.settings import Settings


@with_database
def demo(
    settings: Settings,
    database: Database,
    ctx: typer.Context,
    videos_dir: Path | None = typer.Option(
        DemoOptions.videos_dir,
        "--videos-dir",
        help="Use your own videos: a directory scanned recursively.",
    ),
    manifest: Path | None = typer.Option(
        DemoOptions.manifest,
        "--manifest",
        help="Use your own videos: a manifest CSV (file,video_id,title,...).",
    ),
    related: Path | None = typer.Option(
        DemoOptions.related,
        "--related",
        help="Co-watch CSV (video_a,video_b,weight); default: beside manifest.",
    ),
    count: int = count_option(DemoOptions.count, 8),
    topics: int = topics_option(DemoOptions.topics, 2),
    seconds: float = seconds_option(DemoOptions.seconds, 0.5),
    seed: int = typer.Option(
        DemoOptions.seed, "--seed", help="Seed of the corpus and the training run."
    ),
    fusion: Fusion = fusion_option(DemoOptions.fusion),
    epochs: int = epochs_option(DemoOptions.epochs),
    workers: StageWorkersOption = DemoOptions.workers,
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the API at the end."),
    host: str = host_option(),
    port: int = port_option(),
    as_json: JsonOption = False,
    old_videos: Path | None = typer.Option(
        None, "--videos", hidden=True, help="Deprecated spelling of --videos-dir."
    ),
) -> None:
    """Synthesise (or take) videos, ingest, train, embed, index, show examples, serve."""
    from orchestration.demo import run_demo

    videos_dir = old_spelling(ctx, "videos_dir", old_videos, "--videos", "--videos-dir") or (
        videos_dir
    )
    if videos_dir is not None and manifest is not None:
        raise UserError("give --videos-dir or --manifest, not both")
    options = DemoOptions(
        videos_dir=videos_dir,
        manifest=manifest,
        related=related,
        count=count,
        topics=topics,
        seconds=seconds,
        seed=seed,
        fusion=fusion,
        epochs=epochs,
        workers=workers,
    )

    def say(message: str) -> None:
        console.print(f"[bold cyan]demo[/] {message}")

    report = run_demo(settings, database, options, say)
    database.dispose()  # serving below opens its own connections
    if as_json:
        print_json(report.as_dict())
    else:
        _show(report)
    if serve:
        from api.uvicorn_runner import run

        say(f"serving on http://{host}:{port}  (web page at /, API docs at /docs; Ctrl-C stops)")
        if report.examples:
            say(f"try: curl http://{host}:{port}/similar/{report.examples[0]['video_id']}?k=5")
        run(settings, host=host, port=port)


def _show(report: DemoReport) -> None:
    evaluation = report.evaluation or {}
    table = Table(title=f"held-out evaluation ({evaluation.get('relevance', 'n/a')})")
    table.add_column("ranking")
    shown = ("precision@1", "precision@5", "recall@10", "map", "ndcg@10")
    model_figures = evaluation.get("model")
    present: dict[str, object] = model_figures if isinstance(model_figures, dict) else {}
    metric_names = [name for name in shown if name in present]
    for name in metric_names:
        table.add_column(name, justify="right")
    for row in ("model", "content_baseline", "random"):
        figures = evaluation.get(row)
        if isinstance(figures, dict):
            table.add_row(row, *(f"{figures.get(n, float('nan')):.3f}" for n in metric_names))
    console.print(table)
    for example in report.examples:
        console.print(
            f"[bold]{example['video_id']}[/] ({example['category']}) → "
            + ", ".join(
                f"{s['video_id']} ({s['category']}, {s['score']})" for s in example["similar"]
            )
        )
    if report.category_match_at_10 is not None:
        console.print(
            f"top-10 neighbours sharing the query's category: "
            f"{report.category_match_at_10:.1%} (chance {report.chance_category_match:.1%})"
        )
    console.print(
        f"model {report.model_version}, index {report.index.get('version')}; "
        f"step seconds {report.seconds}"
    )


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

"""``recsys demo``: the whole pipeline on a synthetic corpus (or your videos), then serve."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from orchestration.cli.common import HomeOption, console, database_for, fail, print_json


def demo(
    home: HomeOption = None,
    videos_dir: Path | None = typer.Option(
        None, "--videos", help="Use your own videos: a directory scanned recursively."
    ),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="Use your own videos: a manifest CSV (file,video_id,title,...)."
    ),
    related: Path | None = typer.Option(
        None, "--related", help="Co-watch CSV (video_a,video_b,weight); default: beside manifest."
    ),
    count: int = typer.Option(240, "--count", min=8, help="Synthetic videos to generate."),
    topics: int = typer.Option(8, "--topics", min=2, help="Synthetic topics (= categories)."),
    seconds: float = typer.Option(3.0, "--seconds", min=0.5, help="Length of each video."),
    seed: int = typer.Option(0, "--seed", help="Seed of the corpus and the training run."),
    fusion: str = typer.Option("late", "--fusion", help="late or early fusion."),
    epochs: int = typer.Option(30, "--epochs", min=1, help="Training epochs (early stopping)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Stage-A workers."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the API at the end."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on."),
    port: int = typer.Option(8000, "--port", help="Port to serve on."),
    as_json: bool = typer.Option(False, "--json", help="Print the pipeline report as JSON."),
) -> None:
    """Synthesise (or take) videos, ingest, train, embed, index, show examples, serve."""
    from orchestration.demo import DemoError, DemoOptions, run_demo

    if videos_dir is not None and manifest is not None:
        raise fail("give --videos or --manifest, not both")
    if fusion not in ("late", "early"):
        raise fail(f"unknown fusion {fusion!r}: use late or early")
    settings, database = database_for(home)
    options = DemoOptions(
        videos_dir=videos_dir,
        manifest=manifest,
        related=related,
        videos=count,
        topics=topics,
        seconds=seconds,
        seed=seed,
        fusion=fusion,
        epochs=epochs,
        workers=workers,
    )

    def say(message: str) -> None:
        console.print(f"[bold cyan]demo[/] {message}")

    try:
        report = run_demo(settings, database, options, say)
    except DemoError as error:
        raise fail(str(error)) from error
    finally:
        database.dispose()
    if as_json:
        print_json(report.as_dict())
    else:
        _show(report)
    if serve:
        from api.server import run

        say(f"serving on http://{host}:{port}  (web page at /, API docs at /docs; Ctrl-C stops)")
        if report.examples:
            say(f"try: curl http://{host}:{port}/similar/{report.examples[0]['video_id']}?k=5")
        run(settings, host=host, port=port)


def _show(report) -> None:  # type: ignore[no-untyped-def]
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

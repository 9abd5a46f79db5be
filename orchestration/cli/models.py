"""``recsys models``: list trained model versions and choose the active one."""

from __future__ import annotations

import typer
from rich.table import Table

from orchestration.cli.common import (
    JsonOption,
    console,
    print_json,
    with_database,
    with_existing_database,
)
from recsys.db import Database
from recsys.settings import Settings

app = typer.Typer(
    help="Trained similarity models (versions, evaluation, active).", no_args_is_help=True
)


def _gate(row: dict) -> str:
    """The model gate's verdict and figures: model vs content baseline on the gate metric."""
    gate = row["metrics"].get("gate")
    if not gate:
        return row.get("status") or ""
    figures = ""
    if gate.get("model") is not None and gate.get("content_baseline") is not None:
        figures = (
            f" {gate['metric']} {gate['model']:.3f} vs {gate['content_baseline']:.3f}"
            f" (+{gate['min_gain']:g})"
        )
    videos = gate.get("held_out_videos")
    held = f"{gate['held_out_pairs']} pairs" + (f" of {videos} held-out videos" if videos else "")
    return f"{row['status']}{figures}, {held}"


def _headline(metrics: dict) -> str:
    """The validation figures worth a column: model vs content baseline vs random."""
    val = metrics.get("validation", {})
    parts = []
    for key in ("model", "content_baseline", "random"):
        figures = val.get(key, {})
        score = figures.get(metrics.get("selection_metric", "recall@10"))
        if score is not None:
            parts.append(f"{key}={score:.3f}")
    return " ".join(parts)


@app.command("list")
@with_existing_database
def list_command(
    settings: Settings,
    database: Database,
    as_json: JsonOption = False,
) -> None:
    """Every model version with its fusion, dimension, gate verdict and figures, evaluation
    figures and active flag."""
    from recsys.models.registry import list_models

    rows = list_models(database)
    if as_json:
        print_json(rows)
        return
    table = Table(title="model versions")
    columns = ("version", "active", "fusion", "dim", "extractor", "pairs", "gate", "validation")
    for column in columns:
        table.add_column(column)
    for row in rows:
        metrics = row["metrics"]
        table.add_row(
            row["version"],
            "*" if row["is_active"] else "",
            f"{row['fusion']}/{row['config'].get('combine', '')}",
            str(row["dim"]),
            row["extractor_version"],
            str(metrics.get("pairs", "")),
            _gate(row),
            _headline(metrics),
        )
    console.print(table) if rows else console.print("no trained models yet: run `recsys train`")


@app.command("activate")
@with_database
def activate_command(
    settings: Settings,
    database: Database,
    version: str,
    force: bool = typer.Option(
        False, "--force", help="Activate even a version the model gate rejected."
    ),
) -> None:
    """Make VERSION the active model (the one `recsys embed` and the API use)."""
    from recsys.models.registry import activate_model

    activate_model(database, version, force=force)
    console.print(f"active model: {version}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="models")

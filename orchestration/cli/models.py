"""``recsys models``: list trained model versions and choose the active one."""

from __future__ import annotations

import typer
from rich.table import Table

from orchestration.cli.common import HomeOption, console, database_for, fail, print_json

app = typer.Typer(
    help="Trained similarity models (versions, evaluation, active).", no_args_is_help=True
)


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
def list_command(
    home: HomeOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Every model version with its fusion, dimension, evaluation figures and active flag."""
    _, database = database_for(home)
    from recsys.models.registry import list_models

    rows = list_models(database)
    if as_json:
        print_json(rows)
        return
    table = Table(title="model versions")
    for column in ("version", "active", "fusion", "dim", "extractor", "pairs", "validation"):
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
            _headline(metrics),
        )
    console.print(table) if rows else console.print("no trained models yet: run `recsys train`")


@app.command("activate")
def activate_command(version: str, home: HomeOption = None) -> None:
    """Make VERSION the active model (the one `recsys embed` and the API use)."""
    from recsys.models.registry import ModelNotFound, activate_model

    _, database = database_for(home)
    try:
        activate_model(database, version)
    except ModelNotFound as error:
        raise fail(str(error)) from None
    console.print(f"active model: {version}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="models")

"""``recsys train``: fit a similarity model on the catalog's cached features."""

from __future__ import annotations

import typer

from orchestration.cli.common import (
    Default,
    StageWorkersOption,
    console,
    print_json,
    with_database,
)
from recsys.choices import Combine, Fusion, Loss, PairSource
from recsys.db import Database
from recsys.settings import Settings

CONFIG = "training.trainer:TrainConfig"


@with_database
def train_command(
    settings: Settings,
    database: Database,
    fusion: Fusion = typer.Option(
        Default(CONFIG, "fusion"),
        "--fusion",
        help="early: concatenate, one tower; late: a tower each.",
    ),
    pairs: PairSource = typer.Option(
        Default(CONFIG, "pairs"),
        "--pairs",
        help="Training signal: the related (co-watch) table, shared categories, or self "
        "(two windows of one video).",
    ),
    epochs: int = typer.Option(
        Default(CONFIG, "epochs"),
        "--epochs",
        min=1,
        help="Maximum epochs (early stopping may end sooner).",
    ),
    dim: int = typer.Option(Default(CONFIG, "dim"), "--dim", min=2, help="Embedding size."),
    extractor: str = typer.Option(
        Default(CONFIG, "extractor"),
        "--extractor",
        help="Stage-A extractor (content, cnn, torchvision:M).",
    ),
    loss: Loss = typer.Option(
        Default(CONFIG, "loss"), "--loss", help="triplet (semi-hard mining) or infonce."
    ),
    combine: Combine = typer.Option(
        Default(CONFIG, "combine"), "--combine", help="How late fusion combines the modalities."
    ),
    batch_size: int = typer.Option(
        Default(CONFIG, "batch_size"), "--batch-size", min=4, help="Items per batch."
    ),
    lr: float = typer.Option(Default(CONFIG, "lr"), "--lr", help="AdamW learning rate."),
    margin: float = typer.Option(Default(CONFIG, "margin"), "--margin", help="Triplet margin."),
    temperature: float = typer.Option(
        Default(CONFIG, "temperature"), "--temperature", help="InfoNCE temperature."
    ),
    patience: int = typer.Option(
        Default(CONFIG, "patience"),
        "--patience",
        min=0,
        help="Epochs without improvement before stopping.",
    ),
    seed: int = typer.Option(Default(CONFIG, "seed"), "--seed", help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's checkpoint."),
    activate: bool | None = typer.Option(
        None,
        "--activate/--no-activate",
        help="Make the new model active, or never. Default: only when no model is active yet "
        "(the first model trained becomes active).",
        show_default=False,
    ),
    workers: StageWorkersOption = None,
    as_json: bool = typer.Option(False, "--json", help="Print the run's metrics as JSON."),
) -> None:
    """Train, evaluate (vs content baseline and random) and register a model; prints its version."""
    from training import TrainConfig, train_model

    config = TrainConfig(
        fusion=fusion,
        combine=combine,
        pairs=pairs,
        epochs=epochs,
        dim=dim,
        extractor=extractor,
        loss=loss,
        batch_size=batch_size,
        lr=lr,
        margin=margin,
        temperature=temperature,
        patience=patience,
        seed=seed,
        resume=resume,
        activate=activate,
        feature_workers=workers,
    )
    result = train_model(settings, database, config)
    validation = result.metrics.get("validation", {})
    metric = result.metrics["selection_metric"]
    for name in ("model", "content_baseline", "random"):
        if name in validation:
            console.print(f"validation {metric} {name}: {validation[name][metric]:.3f}")
    console.print(f"run metrics: {result.run_dir / 'metrics.json'}")
    if result.active:
        console.print(f"active model: {result.version} ({result.activation})")
        console.print("next: recsys embed, then recsys index build")
    else:
        console.print(f"not activated: {result.activation}")
        console.print(
            f"next: recsys models activate {result.version} to serve it, then recsys embed "
            "and recsys index build"
        )
    if as_json:
        print_json({"version": result.version, **result.metrics})
    else:
        typer.echo(result.version)


def register(root: typer.Typer) -> None:
    root.command("train")(train_command)

"""``recsys train``: fit a similarity model on the catalog's cached features."""

from __future__ import annotations

import typer

from orchestration.cli.common import HomeOption, console, database_for, fail, print_json

FUSIONS = ("early", "late")
PAIRS = ("related", "categories", "self")
LOSSES = ("triplet", "infonce")
COMBINES = ("sum", "concat", "product")


def train_command(
    home: HomeOption = None,
    fusion: str = typer.Option("late", help="early (concat, one tower) or late (tower each)."),
    pairs: str = typer.Option(
        "categories", help="related (co-watch table), categories, or self (two windows)."
    ),
    epochs: int = typer.Option(20, min=1, help="Maximum epochs (early stopping may end sooner)."),
    dim: int = typer.Option(256, min=2, help="Embedding size."),
    extractor: str = typer.Option(
        "content", help="Stage-A extractor (content, cnn, torchvision:M)."
    ),
    loss: str = typer.Option("triplet", help="triplet (semi-hard mining) or infonce."),
    combine: str = typer.Option("sum", help="Late fusion combination: sum, concat or product."),
    batch_size: int = typer.Option(64, min=4, help="Items per batch."),
    lr: float = typer.Option(2e-3, help="AdamW learning rate."),
    margin: float = typer.Option(0.2, help="Triplet margin."),
    temperature: float = typer.Option(0.1, help="InfoNCE temperature."),
    patience: int = typer.Option(5, min=0, help="Epochs without improvement before stopping."),
    seed: int = typer.Option(0, help="Random seed."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run's checkpoint."),
    activate: bool = typer.Option(False, "--activate", help="Make the new model active."),
    workers: int | None = typer.Option(
        None, min=1, help="Decode processes for videos not in the feature cache. Default: per core."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the run's metrics as JSON."),
) -> None:
    """Train, evaluate (vs content baseline and random) and register a model; prints its version."""
    from training import TrainConfig, train_model

    for value, allowed, name in (
        (fusion, FUSIONS, "--fusion"),
        (pairs, PAIRS, "--pairs"),
        (loss, LOSSES, "--loss"),
        (combine, COMBINES, "--combine"),
    ):
        if value not in allowed:
            raise fail(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    settings, database = database_for(home)
    config = TrainConfig(
        fusion=fusion,  # type: ignore[arg-type]
        combine=combine,  # type: ignore[arg-type]
        pairs=pairs,  # type: ignore[arg-type]
        epochs=epochs,
        dim=dim,
        extractor=extractor,
        loss=loss,  # type: ignore[arg-type]
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
    try:
        result = train_model(settings, database, config)
    except (ValueError, LookupError, RuntimeError) as error:
        raise fail(str(error)) from None
    finally:
        database.dispose()
    validation = result.metrics.get("validation", {})
    metric = result.metrics["selection_metric"]
    for name in ("model", "content_baseline", "random"):
        if name in validation:
            console.print(f"validation {metric} {name}: {validation[name][metric]:.3f}")
    console.print(f"run metrics: {result.run_dir / 'metrics.json'}")
    if activate:
        console.print(f"activated {result.version}")
    if as_json:
        print_json({"version": result.version, **result.metrics})
    else:
        typer.echo(result.version)


def register(root: typer.Typer) -> None:
    root.command("train")(train_command)

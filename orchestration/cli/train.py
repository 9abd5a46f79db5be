"""``recsys train``: fit a similarity model on the catalog's cached features."""

from __future__ import annotations

import typer

from orchestration.cli.common import (
    Default,
    JsonOption,
    StageWorkersOption,
    console,
    epochs_option,
    fusion_option,
    print_json,
    with_database,
)
from recsys.choices import Combine, Fusion, Loss, PairSource, Tower
from recsys.db import Database
from recsys.settings import Settings

CONFIG = "training.config:TrainConfig"


@with_database
def train_command(
    settings: Settings,
    database: Database,
    fusion: Fusion = fusion_option(Default(CONFIG, "fusion")),
    pairs: PairSource = typer.Option(
        Default(CONFIG, "pairs"),
        "--pairs",
        help="Training signal: the related (co-watch) table, shared categories, or self "
        "(two windows of one video).",
    ),
    epochs: int = epochs_option(Default(CONFIG, "epochs")),
    dim: int = typer.Option(Default(CONFIG, "dim"), "--dim", min=2, help="Embedding size."),
    tower: Tower = typer.Option(
        Default(CONFIG, "tower"),
        "--tower",
        help="residual: start from the content features' geometry (PCA skip path, the untrained "
        "model ranks like the content baseline); mlp: random initialisation.",
    ),
    extractor: str = typer.Option(
        Default(CONFIG, "extractor"),
        "--extractor",
        help="Stage-A spec: content, cnn, torchvision:M, or one encoder per modality, e.g. "
        "visual=open_clip:ViT-B-32,audio=vggish (see `recsys weights list`).",
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
    self_weight: float = typer.Option(
        Default(CONFIG, "self_weight"),
        "--self-weight",
        min=0.0,
        help="Weight of a self-supervised loss (two windows of one video) over every catalog "
        "video, added to the pair loss: it lets videos without pairs (cold ones) shape the "
        "towers; 0.5 with --pairs related gave the real-clip cold-start gain (README).",
    ),
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
    min_gain: float = typer.Option(
        Default(CONFIG, "min_gain"),
        "--min-gain",
        help="The model gate: activate only when the held-out videos' metric is at least the "
        "content baseline's plus this.",
    ),
    val_fraction: float = typer.Option(
        Default(CONFIG, "val_fraction"),
        "--val-fraction",
        min=0.0,
        max=0.9,
        help="Share of the videos with a signal (related pairs, a category) held out with all "
        "their pairs and labels: early stopping and the model gate score them as never-seen "
        "uploads against the whole catalog.",
    ),
    refit: bool = typer.Option(
        Default(CONFIG, "refit"),
        "--refit/--no-refit",
        help="Gate, then refit: unless the gate rejects the model (or no epoch beat the "
        "content features), retrain on all the signal, held-out videos included, for the gated "
        "run's best epoch + 1 epochs, same seed and settings, and register that model (its "
        "metrics keep the gate's held-out figures, refit true and the epochs). --no-refit "
        "registers the gated model itself.",
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Activate even when the validation split is too small to gate (a rejected model "
        "is never activated).",
    ),
    workers: StageWorkersOption = None,
    as_json: JsonOption = False,
) -> None:
    """Train, evaluate (vs content baseline and random) and register a model; prints its version.

    The model gate: the model is activated (--activate, or as the first model) only when it
    ranks videos held out of training at least as well as the content baseline (+ --min-gain)
    and some epoch beat the untrained model; otherwise it is registered as rejected and the
    command exits 1.
    """
    from recsys.models import ModelRejected
    from training import TrainConfig, train_model
    from training.errors import TrainingError

    config = TrainConfig(
        fusion=fusion,
        combine=combine,
        pairs=pairs,
        epochs=epochs,
        dim=dim,
        tower=tower,
        extractor=extractor,
        loss=loss,
        batch_size=batch_size,
        lr=lr,
        self_weight=self_weight,
        margin=margin,
        temperature=temperature,
        patience=patience,
        seed=seed,
        resume=resume,
        activate=activate,
        min_gain=min_gain,
        val_fraction=val_fraction,
        refit=refit,
        force=force,
        feature_workers=workers,
    )
    result = train_model(settings, database, config)
    validation = result.metrics.get("validation", {})
    metric = result.metrics["selection_metric"]
    for name in ("model", "content_baseline", "random"):
        if name in validation:
            console.print(f"held-out {metric} {name}: {validation[name][metric]:.3f}")
    console.print(f"run metrics: {result.run_dir / 'metrics.json'}")
    if result.gate is not None:
        console.print(f"model gate: {result.gate.reason}")
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
    if result.rejected:
        raise ModelRejected(f"model {result.version} registered as rejected: {result.activation}")
    if activate and not result.active:
        raise TrainingError(f"model {result.version} was not activated: {result.activation}")


def register(root: typer.Typer) -> None:
    root.command("train")(train_command)
